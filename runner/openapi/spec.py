"""Reading an OpenAPI 3.0 / 3.1 document: from a file, a URL or inline, with its local `$ref`s resolved.

Every problem is a SpecProblem carrying a JSON pointer into the document, so the manifest's error names
both the `openapi:` entry (file:line:col) and the place in the spec. Only local references (`#/...`)
are followed: a reference to another file or URL is a problem, never a fetch. A reference cycle
(a tree of nodes, say) is cut where it closes: that spot accepts any value (`{}`), with a
description naming the schema, because a tool's input schema must be self-contained.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when built: some 10 times faster
MAX_SPEC_BYTES = 16 * 1024 * 1024  # a spec larger than this is refused, from a file or a URL


class SpecProblem(ValueError):
    """A document that cannot be served, at `pointer` (a JSON pointer, "" for the whole document)."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(message)
        self.pointer = pointer


@dataclass(frozen=True)
class Document:
    data: dict[str, Any]
    where: str  # the file path, the URL, or "inline": for messages
    file: Path | None  # watched for reloads when the spec is a file
    digest: str  # of the text (or the inline mapping): an unchanged spec reuses its tools


def is_url(spec: str) -> bool:
    return spec.lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class Raw:
    """A document as read, not yet parsed: its digest decides whether the last build's tools still fit."""

    content: str | dict[str, Any]  # the text, or the inline mapping
    where: str
    file: Path | None
    digest: str


def read_raw(spec: str | dict[str, Any], root: Path, *, fetched: str | None = None) -> Raw:
    """The document `spec` names, unparsed; `fetched` is a URL spec's text already fetched (see `fetch`)."""
    if isinstance(spec, dict):
        data = json.loads(json.dumps(spec))  # plain data (substituted strings are a str subclass)
        return Raw(data, "inline", None, hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest())
    if is_url(spec):
        if fetched is None:
            raise SpecProblem("", f"{spec} was not fetched")
        return Raw(fetched, spec, None, hashlib.sha256(fetched.encode()).hexdigest())
    file = (root / spec).resolve()
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise SpecProblem("", f"cannot read {spec}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecProblem("", f"{spec} is larger than {MAX_SPEC_BYTES // 1024 // 1024} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecProblem("", f"{spec} is not UTF-8 text") from None
    return Raw(text, spec, file, hashlib.sha256(raw).hexdigest())


def parse_document(raw: Raw) -> Document:
    data = raw.content if isinstance(raw.content, dict) else _parse(raw.content, raw.where)
    return _checked(data, raw.where, raw.file, raw.digest)


def read(spec: str | dict[str, Any], root: Path, *, fetched: str | None = None) -> Document:
    """The document `spec` names, parsed and checked."""
    return parse_document(read_raw(spec, root, fetched=fetched))


def fetch(url: str, timeout: float) -> str:
    """A URL spec's text (GET, bounded in size); SpecProblem when it cannot be had."""
    import httpx2

    try:
        with httpx2.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise SpecProblem("", f"fetching {url}: HTTP {response.status_code}")
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_SPEC_BYTES:
                    raise SpecProblem("", f"{url} is larger than {MAX_SPEC_BYTES // 1024 // 1024} MiB")
    except httpx2.HTTPError as exc:
        raise SpecProblem("", f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecProblem("", f"{url} is not UTF-8 text") from None


def _parse(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_LOADER)  # JSON is YAML too
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not YAML or JSON"
        raise SpecProblem("", f"{where} does not parse{at}: {problem}") from None


def _checked(data: Any, where: str, file: Path | None, digest: str) -> Document:
    if not isinstance(data, dict):
        raise SpecProblem("", "an OpenAPI document is a mapping")
    version = data.get("openapi")
    if version is None:
        if "swagger" in data:
            raise SpecProblem("/swagger", "Swagger 2.0 is not supported (convert it to OpenAPI 3)")
        raise SpecProblem("", "no `openapi:` version: not an OpenAPI 3 document")
    if not isinstance(version, str) or not version.startswith(("3.0.", "3.1.")) and version not in ("3.0", "3.1"):
        raise SpecProblem("/openapi", f"OpenAPI {version!r} is not supported (3.0.x or 3.1.x)")
    if not isinstance(data.get("paths", {}), dict):
        raise SpecProblem("/paths", "paths must be a mapping")
    return Document(data, where, file, digest)


def escape(part: str | int) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def pointer(*parts: str | int) -> str:
    return "".join(f"/{escape(p)}" for p in parts)


def lookup(data: dict[str, Any], ref: str, at: str) -> Any:
    """The node a local `$ref` names."""
    if not ref.startswith("#"):
        raise SpecProblem(at, f"$ref {ref!r}: only references inside the document (#/...) are supported")
    node: Any = data
    for raw in ref[1:].split("/")[1:] if ref != "#" else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise SpecProblem(at, f"$ref {ref!r} does not resolve")
    return node


def resolve(data: dict[str, Any], node: Any, at: str, seen: tuple[str, ...] = ()) -> Any:
    """`node` with every local `$ref` in it replaced by its target, recursively; cycles cut (module docstring)."""
    if isinstance(node, list):
        return [resolve(data, item, f"{at}/{i}", seen) for i, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen:
            return {"description": f"(recursive: {ref.rsplit('/', 1)[-1]}; any value accepted here)"}
        target = resolve(data, lookup(data, ref, f"{at}/$ref"), ref[1:], (*seen, ref))
        siblings = {k: resolve(data, v, f"{at}/{escape(k)}", seen) for k, v in node.items() if k != "$ref"}
        if siblings and isinstance(target, dict):  # 3.1 allows keywords beside $ref: both apply
            return {"allOf": [target, siblings]} if set(siblings) & set(target) else {**target, **siblings}
        return target
    return {k: resolve(data, v, f"{at}/{escape(k)}", seen) for k, v in node.items()}
