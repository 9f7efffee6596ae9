"""The `openapi:` entries -> tools, with each API's HTTP client kept across reloads.

The build cache holds two things per entry: its tools (keyed by the entry's settings and the
document's digest: an unchanged entry and document are not parsed again) and its `Api`, whose
client depends only on `base_url`, `headers` and `timeout` (so editing `overrides` keeps the open
connections). After a reload's swap, an `Api` the new definition does not use retires: it closes
once its calls in flight end (`close_dropped`); every client closes when the server stops (`close_all`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from runner.http.busy import caller
from runner.manifest.errors import Location, Problem
from runner.manifest.located import unknown_hint
from runner.manifest.model import Manifest, OpenAPIEntry
from runner.manifest.settings import MAX_UPSTREAM_CALLS_PER_CLIENT
from runner.manifest.source import Source
from runner.openapi.call import Api, send, tls
from runner.openapi.operations import Operation, json_schema, operations
from runner.openapi.spec import Document, Raw, SpecProblem, escape, fetch, is_url, parse_document, read_raw, shown
from runner.surface.models import mcp_icons
from runner.surface.schemas import SchemaProblem, compile_schema, violation

logger = logging.getLogger("runner")
# Bounds on what an entry's document may cost to build (docs/openapi.md "The document"); the Petstore's largest
# tool schema holds 56 nodes, all 19 of its tools 358.
MAX_SCHEMA_NODES = 10_000  # in one tool's input schema
MAX_ENTRY_SCHEMA_NODES = 50_000  # in all of an entry's tools
Cache = dict[tuple[Any, ...], Any]


class OperationTool(Tool):
    """A tool that sends its operation's request: arguments checked against the input schema first."""

    operation: Any = Field(default=None, exclude=True)
    api: Any = Field(default=None, exclude=True)
    validator: Any = Field(default=None, exclude=True)

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        problem = violation(self.validator, arguments)
        if problem is not None:
            raise ToolError(f"Error executing tool {self.name}: arguments do not match the input schema {problem}")
        try:
            return await send(self.api, self.operation, arguments, caller(context), per_client(context))
        except ToolError as exc:  # the API's answer: exactly the text docs/openapi.md shows, as an upstream's is
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        except Exception as exc:  # noqa: BLE001 - a case send does not foresee: one line, not a traceback per call
            logger.warning("openapi %r: %s failed: %s", self.api.name, self.name, type(exc).__name__)
            message = f"{self.api.name}: the call failed: {type(exc).__name__}"
            return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def per_client(context: Any) -> int:
    """`server.max_upstream_calls_per_client` of the server serving the call, read at each call (as the upstreams'
    bound is), so that a reload applies a new value: a cached tool outlives the build that made it."""
    try:
        server = context.mcp_server
    except (AttributeError, ValueError):  # no server context (a call from inside the process)
        return MAX_UPSTREAM_CALLS_PER_CLIENT
    return int(getattr(server, "upstream_calls_per_client", MAX_UPSTREAM_CALLS_PER_CLIENT))


@dataclass
class Mounted:
    """One entry, built: its API (and client), its tools, and each tool's scopes."""

    api: Api
    tools: list[Tool] = field(default_factory=list)
    scopes: dict[str, list[str]] = field(default_factory=dict)


async def _operation() -> None:
    """Never called: OperationTool.run sends the request."""


def served(name: str) -> str:
    """An operationId as a tool name: characters MCP does not allow in names become `_`."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def spec_files(manifest: Manifest, root: Path) -> list[Path]:
    """The spec files the entries read: watched for reloads."""
    return [(root / e.spec).resolve() for e in manifest.openapi if isinstance(e.spec, str) and not is_url(e.spec)]


def mount_scopes(manifest: Manifest) -> list[str]:
    found = {
        s: None for e in manifest.openapi for s in [*e.scopes, *(x for o in e.overrides.values() for x in o.scopes)]
    }
    return list(found)


def mount_apis(
    manifest: Manifest,
    source: Source,
    root: Path,
    previous: Cache,
    used: Cache,
    problems: list[Problem],
    taken: dict[str, str],
    *,
    online: bool = True,
) -> list[Mounted]:
    """Every entry's tools; located problems go to `problems`. `online=False` skips URL specs (check --offline).

    `taken` maps each tool name served already to who serves it; an entry's tool with such a name is a
    located problem at its `name:` (the operations are known at load, unlike an upstream's tools)."""
    mounted: list[Mounted] = []
    if manifest.openapi:
        tls()  # made here, off the serving loop, not on the first call
    names: dict[str, int] = {}
    for i, entry in enumerate(manifest.openapi):
        if entry.name in names:
            earlier = source.locate(("openapi", names[entry.name])).line
            message = f"duplicate openapi name {entry.name!r} (first at line {earlier})"
            problems.append(Problem(source.locate(("openapi", i, "name")), message))
            continue
        names[entry.name] = i
        settings = entry.model_dump_json()
        try:
            text = None
            if isinstance(entry.spec, str) and is_url(entry.spec):
                if not online:
                    continue
                fetched_key = ("openapi-fetched", settings)
                text = used[fetched_key] = previous.get(fetched_key) or fetch(entry.spec, float(entry.timeout))
            raw = read_raw(entry.spec, root, fetched=text)
        except SpecProblem as exc:
            problems.append(_spec_problem(source, i, entry, exc, None))
            continue
        key = ("openapi", settings, raw.digest)
        if key in previous:  # unchanged entry and document: its tools and its client, as they are
            found: Mounted = previous[key]
        else:
            try:
                found = _mount(entry, parse_document(raw), source, i, problems, previous)
            except SpecProblem as exc:
                problems.append(_spec_problem(source, i, entry, exc, raw))
                continue
            except RecursionError:
                problems.append(_spec_problem(source, i, entry, SpecProblem("", "nested too deeply"), raw))
                continue
        used[key] = found
        used[_api_key(found.api)] = found.api
        problems += _clashes(entry, found.tools, taken, source.locate(("openapi", i, "name")))
        taken.update({tool.name: f"openapi {entry.name!r}" for tool in found.tools})
        if manifest.signin is None and found.scopes and any(found.scopes.values()):
            message = "scopes need a signin block: without auth there is no token to take them from"
            problems.append(Problem(source.locate(("openapi", i, "scopes"), key=True), message))
        mounted.append(found)
    return mounted


def _clashes(entry: OpenAPIEntry, tools: list[Tool], taken: dict[str, str], where: Location) -> list[Problem]:
    """The entry's tool names another entry serves already: one problem per other entry, with the fix."""
    clashing: dict[str, list[Tool]] = {}
    for tool in tools:
        if tool.name in taken:
            clashing.setdefault(taken[tool.name], []).append(tool)
    problems = []
    for other, found in clashing.items():
        shown = ", ".join(repr(t.name) for t in found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        own = ", ".join(t.operation.name for t in found if isinstance(t, OperationTool))
        message = f"openapi {entry.name!r} would serve tools already served by {other} ({shown}): "
        problems.append(Problem(where, message + f"set its prefix:, or exclude: [{own}]"))
    return problems


def _api_key(api: Api) -> tuple[Any, ...]:
    """What an API's client depends on: an edit of anything else (overrides, include...) keeps the client."""
    return ("openapi-api", api.name, api.base_url, tuple(sorted(api.headers.items())), api.timeout)


def _mount(
    entry: OpenAPIEntry, doc: Document, source: Source, i: int, problems: list[Problem], previous: Cache
) -> Mounted:
    warned: list[str] = []
    version = str(doc.data["openapi"])
    ops = operations(doc.data, frozenset(h.lower() for h in entry.headers), warned)
    for line in warned:
        logger.warning("openapi %r: %s", entry.name, line)
    base = entry.base_url or _server_url(doc.data)
    if base is None:
        raise SpecProblem("/servers", "no absolute servers URL in the document: set base_url")
    if entry.base_url is None and entry.headers and isinstance(entry.spec, str) and is_url(entry.spec):
        _same_origin(base, entry.spec)
    api = Api(entry.name, base, dict(entry.headers), float(entry.timeout))
    api = previous.get(_api_key(api), api)  # the same client, with its open connections
    names = {op.name: op for op in ops}
    for key in ("include", "exclude"):
        for j, wanted in enumerate(getattr(entry, key) or []):
            if wanted not in names:
                hint = unknown_hint(wanted, list(names)).replace("its parameters", "its operations")
                message = f"{key}: no operation {wanted!r} in {doc.where}{hint}"
                problems.append(Problem(source.locate(("openapi", i, key, j)), message))
    chosen = [op for op in ops if (entry.include is None or op.name in entry.include) and op.name not in entry.exclude]
    mounted = Mounted(api)
    if sum(_schema_nodes(op) for op in chosen) > MAX_ENTRY_SCHEMA_NODES:  # counted before any is checked
        message = f"its tools' input schemas hold more than {MAX_ENTRY_SCHEMA_NODES} nodes in all: choose with include:"
        raise SpecProblem("/paths", message)
    for op in chosen:
        name = entry.served_prefix + served(op.name)
        tool = _tool(entry, op, name, version, api)
        mounted.tools.append(tool)
        override = entry.overrides.get(name)
        mounted.scopes[name] = [*entry.scopes, *(override.scopes if override else [])]
    known = [t.name for t in mounted.tools]
    for name in entry.overrides:
        if name not in known:
            hint = unknown_hint(name, known).replace("its parameters", "its tools")
            message = f"overrides: {name!r} is not a tool of openapi {entry.name!r}{hint}"
            problems.append(Problem(source.locate(("openapi", i, "overrides", name), key=True), message))
    return mounted


def _schema_nodes(op: Operation) -> int:
    """How many nodes `op`'s input schema holds (shared parts counted each time: each is served and checked),
    refused past MAX_SCHEMA_NODES: checking a schema costs some 0.1 ms a node (jsonschema's check_schema),
    and 2 KB of fanning-out $refs make millions."""
    count, stack = 0, [op.schema]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_SCHEMA_NODES:
            raise SpecProblem(op.pointer, f"{op.name}: its input schema holds more than {MAX_SCHEMA_NODES} nodes")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def _tool(entry: OpenAPIEntry, op: Operation, name: str, version: str, api: Api) -> Tool:
    schema = json_schema(op.schema, version)
    try:
        validator = compile_schema(schema)
    except SchemaProblem as exc:
        where = "/".join(str(p) for p in exc.path)
        raise SpecProblem(op.pointer, f"{op.name}: its arguments' schema is not valid ({where}): {exc}") from None
    override = entry.overrides.get(name)
    hints: dict[str, Any] = {"readOnlyHint": True} if op.method in ("GET", "HEAD") else {}
    if override is not None and override.annotations is not None:
        hints.update(override.annotations.model_dump(exclude_none=True))
    base = Tool.from_function(
        _operation,
        name=name,
        title=(override.title if override and override.title else op.title),
        description=(override.description if override and override.description else op.description),
        annotations=ToolAnnotations.model_validate(hints) if hints else None,
        icons=mcp_icons(override.icons) if override else None,
        meta=override.meta if override else None,
        structured_output=False,
    )
    update = {"parameters": schema, "operation": op, "api": api, "validator": validator}
    return OperationTool.model_construct(**{**dict(base), **update})


def _server_url(data: dict[str, Any]) -> str | None:
    """The first servers URL with its variables at their defaults, each checked (docs/openapi.md "Where
    requests go"): a default must be one of its `enum`, and plain text for where it sits, so that a
    variable in the host (`{tenant}.vendor.example`) cannot become another host, port or path."""
    servers = data.get("servers") or []
    first = servers[0] if isinstance(servers, list) and servers and isinstance(servers[0], dict) else {}
    url = first.get("url")
    if not isinstance(url, str) or not is_url(url):
        return None
    variables = first.get("variables") or {}
    if not isinstance(variables, dict):
        raise SpecProblem("/servers/0/variables", "server variables must be a mapping")
    authority = url.find("/", url.find("://") + 3) % (len(url) + 1)  # where the host and port end
    for var, spec in variables.items():
        at = f"/servers/0/variables/{escape(str(var))}"
        spec = spec if isinstance(spec, dict) else {}
        value = str(spec.get("default", ""))
        enum = spec.get("enum")
        if isinstance(enum, list) and enum and value not in [str(e) for e in enum]:
            raise SpecProblem(f"{at}/default", f"server variable {var!r}: its default {value!r} is not in its enum")
        in_host = 0 <= url.find("{" + str(var) + "}") < authority
        if not re.fullmatch(r"[A-Za-z0-9._~-]*" if in_host else r"[A-Za-z0-9._~/-]*", value):
            where = "host" if in_host else "path"
            message = f"server variable {var!r}: {value!r} is not plain {where} text (letters, digits, . _ ~ -)"
            raise SpecProblem(f"{at}/default", message)
        url = url.replace("{" + str(var) + "}", value)
    return url


def _same_origin(base: str, spec: str) -> None:
    """A fetched document must not decide where the entry's headers (its credentials) go: without base_url,
    its servers URL must have the spec URL's own scheme, host and port (docs/openapi.md "Where requests go")."""
    try:
        origin, target = httpx2.URL(spec), httpx2.URL(base)
    except httpx2.InvalidURL:
        raise SpecProblem("/servers/0/url", "the servers URL is not a valid URL: set base_url") from None
    if (target.scheme, target.host, target.port) != (origin.scheme, origin.host, origin.port):
        message = (
            f"the document's servers URL ({shown(base)}) is not on the host it was fetched from "
            f"({shown(spec)}): the entry's headers would go where a fetched document says; set base_url"
        )
        raise SpecProblem("/servers/0/url", message)


def _spec_problem(source: Source, i: int, entry: OpenAPIEntry, exc: SpecProblem, raw: Raw | None) -> Problem:
    if isinstance(entry.spec, dict):  # inline: the very line in the manifest
        parts = [p.replace("~1", "/").replace("~0", "~") for p in exc.pointer.split("/")[1:]]
        path: tuple[str | int, ...] = ("openapi", i, "spec", *(int(p) if p.isdigit() else p for p in parts))
        return Problem(source.locate(path), f"openapi {entry.name!r}: {exc}")
    where = raw.where if raw is not None else shown(entry.spec) if is_url(entry.spec) else entry.spec
    at = f"{where}#{exc.pointer}" if exc.pointer else where
    return Problem(source.locate(("openapi", i, "spec")), f"openapi {entry.name!r}: {at}: {exc}")


async def close_dropped(old: Cache, new: Cache) -> None:
    """Retire the clients the new definition no longer uses: each closes once its calls in flight are done."""
    kept = {id(v) for v in new.values() if isinstance(v, Api)}
    for value in list(old.values()):
        if isinstance(value, Api) and id(value) not in kept:
            await value.retire()


async def close_all(cache: Cache) -> None:
    for value in list(cache.values()):
        if isinstance(value, Api):
            await value.aclose()
