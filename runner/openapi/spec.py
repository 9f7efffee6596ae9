"""Reading an OpenAPI 3.0 / 3.1 document: from a file, a URL or inline, with its local `$ref`s resolved.

Every problem is a SpecProblem carrying a JSON pointer into the document, so the manifest's error names
both the `openapi:` entry (file:line:col) and the place in the spec. Only local references (`#/...`)
are followed: a reference to another file or URL is a problem, never a fetch. A reference cycle
(a tree of nodes, say) is cut where it closes: that spot accepts any value (`{}`), with a
description naming the schema, because a tool's input schema must be self-contained.

Resolving is bounded: without a cycle, references can still fan out (`S1: {a: $ref S2, b: $ref S2}`, ...,
or YAML aliases): a 2 KB document 30 levels deep expands to 2^30 nodes. Each target is resolved once
(memoized) and the nodes the expansion produces are counted: past MAX_NODES it is a located problem.

A URL spec is a third party's document: it is fetched without redirects, without the environment's
proxies or netrc, within a total deadline, and its URL is shown without query or userinfo (`shown`),
where keys to private specs sit.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when built: some 10 times faster
MAX_SPEC_BYTES = 16 * 1024 * 1024  # a spec larger than this is refused, from a file or a URL
MAX_NODES = 500_000  # schema nodes resolving a document's parameters and bodies may produce (Petstore 3: ~1 000)


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


def shown(url: str) -> str:
    """A URL as messages and logs show it: no userinfo, query or fragment (where keys to private specs sit)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        hidden = "?..." if parts.query or parts.fragment or "@" in parts.netloc else ""
        return urlunsplit((parts.scheme, netloc, parts.path, "", "")) + hidden
    except ValueError:
        return "(a URL that does not parse)"


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
            raise SpecProblem("", f"{shown(spec)} was not fetched")
        return Raw(fetched, shown(spec), None, hashlib.sha256(fetched.encode()).hexdigest())
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
    """A URL spec's text (GET, bounded in size and in total time); SpecProblem when it cannot be had.

    httpx2's timeout is per read: a host sending a byte a second would hold a start or a reload forever.
    So the fetch runs in a thread that this one waits for `timeout` seconds at most; past that the thread
    stops at its next chunk (or read timeout) and its result is dropped."""
    done: list[str | SpecProblem] = []
    worker = threading.Thread(target=_fetch_into, args=(url, timeout, done), name="openapi-fetch", daemon=True)
    worker.start()
    worker.join(timeout)
    if not done:
        raise SpecProblem("", f"fetching {shown(url)}: no complete answer within {timeout:g} s")
    if isinstance(done[0], SpecProblem):
        raise done[0]
    return done[0]


def _fetch_into(url: str, timeout: float, done: list[str | SpecProblem]) -> None:
    try:
        done.append(_fetch(url, timeout, time.monotonic() + timeout))
    except SpecProblem as exc:
        done.append(exc)


def _fetch(url: str, timeout: float, deadline: float) -> str:
    import httpx2

    where = shown(url)
    try:
        # No redirects (one could lead to another host, or from https to http), no proxy or netrc from the
        # environment: the manifest alone says where requests go, as for calls.
        with httpx2.stream("GET", url, timeout=timeout, follow_redirects=False, trust_env=False) as response:
            if 300 <= response.status_code < 400:
                message = (
                    f"fetching {where}: HTTP {response.status_code}: redirects are not followed (give the final URL)"
                )
                raise SpecProblem("", message)
            if response.status_code != 200:
                raise SpecProblem("", f"fetching {where}: HTTP {response.status_code}")
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_SPEC_BYTES:
                    raise SpecProblem("", f"{where} is larger than {MAX_SPEC_BYTES // 1024 // 1024} MiB")
                if time.monotonic() > deadline:
                    raise SpecProblem("", f"fetching {where}: no complete answer within {timeout:g} s")
    except httpx2.HTTPError as exc:  # the type only: an exception's text can carry the URL
        raise SpecProblem("", f"cannot fetch {where}: {type(exc).__name__}") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecProblem("", f"{where} is not UTF-8 text") from None


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


@dataclass
class Budget:
    """Schema nodes resolving may still produce for one document, and the targets resolved so far."""

    left: int = MAX_NODES
    done: dict[tuple[Any, tuple[str, ...]], tuple[Any, int]] = field(default_factory=dict)  # by $ref or id()
    kept: list[Any] = field(default_factory=list)

    def spend(self, nodes: int, at: str) -> None:
        self.left -= nodes
        if self.left < 0:
            raise SpecProblem(at, f"expands to more than {MAX_NODES} schema nodes ($refs or YAML aliases fanning out)")


def resolve(data: dict[str, Any], node: Any, at: str, seen: tuple[str, ...] = (), budget: Budget | None = None) -> Any:
    """`node` with every local `$ref` in it replaced by its target, recursively; cycles cut, work bounded
    (module docstring). Pass one `budget` for all of a document's calls."""
    return _resolve(data, node, at, seen, budget or Budget())[0]


def _resolve(data: dict[str, Any], node: Any, at: str, seen: tuple[str, ...], budget: Budget) -> tuple[Any, int]:
    """(the resolved node, how many nodes it holds)."""
    if isinstance(node, list):
        items = [_resolve(data, item, f"{at}/{i}", seen, budget) for i, item in enumerate(node)]
        return _spent([item for item, _ in items], 1 + sum(n for _, n in items), at, budget)
    if not isinstance(node, dict):
        return _spent(node, 1, at, budget)
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen:
            return _spent(
                {"description": f"(recursive: {ref.rsplit('/', 1)[-1]}; any value accepted here)"}, 2, at, budget
            )
        key = (ref, seen)
        if key in budget.done:  # the same target again: shared, but its nodes count again (they are served again)
            target, size = budget.done[key]
            budget.spend(size, at)
        else:
            target, size = budget.done[key] = _resolve(
                data, lookup(data, ref, f"{at}/$ref"), ref[1:], (*seen, ref), budget
            )
        resolved = {k: _resolve(data, v, f"{at}/{escape(k)}", seen, budget) for k, v in node.items() if k != "$ref"}
        siblings = {k: v for k, (v, _) in resolved.items()}
        more = sum(n for _, n in resolved.values())
        if siblings and isinstance(target, dict):  # 3.1 allows keywords beside $ref: both apply
            merged = {"allOf": [target, siblings]} if set(siblings) & set(target) else {**target, **siblings}
            return merged, size + more + 1
        return target, size
    same = (id(node), seen)  # a YAML alias is the very same object again: resolved once, counted each time
    if same in budget.done:
        mapping, size = budget.done[same]
        budget.spend(size, at)
        return mapping, size
    resolved = {k: _resolve(data, v, f"{at}/{escape(k)}", seen, budget) for k, v in node.items()}
    budget.kept.append(node)  # alive while its id() is a key: no other object can take that id
    budget.done[same] = found = _spent(
        {k: v for k, (v, _) in resolved.items()}, 1 + sum(n for _, n in resolved.values()), at, budget
    )
    return found


def _spent(node: Any, nodes: int, at: str, budget: Budget) -> tuple[Any, int]:
    """`node`, having counted the one node it adds (its children counted themselves)."""
    budget.spend(1, at)
    return node, nodes
