"""Routing headers (SEP-2243): tool parameters mirrored into `Mcp-Param-<Name>` HTTP headers.

A 2026-07-28 client copies each argument whose input-schema property carries `x-mcp-header: Name`
into an `Mcp-Param-Name` header, so a load balancer or gateway can route on it without reading
the body. The SDK's 2026-07-28 HTTP path (`mcp.server._streamable_http_modern`) already holds every
`tools/call` to that promise before the tool runs: a header that is missing while the argument is
present, present while the argument is absent, carries a malformed `=?base64?…?=` value, or differs
from the argument is refused with HTTP 400 and JSON-RPC -32020 (HeaderMismatch). So all the runner
has to do is put the annotation into the schema it serves, and refuse a declaration no client could
honour at load time, at its own `file:line:col`, instead of letting clients drop the tool (the SDK's
client drops a tool whose annotation is invalid, as the spec says it MUST).

Two ways to declare one, both ending as the same `x-mcp-header` annotation in `tools/list`:
- `headers: {region: Region}` on a tool entry: for a signature-derived schema (or a declared one);
- `x-mcp-header: Region` on a property of a declared `input_schema`, as the spec writes it.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from mcp.shared.inbound import X_MCP_HEADER_KEY, find_invalid_x_mcp_header

from runner.manifest.errors import Problem
from runner.manifest.source import Source

HEADER_TYPES = ("string", "integer", "boolean")  # the spec's; `number` is excluded (float text is not portable)


class HeaderProblem(ValueError):
    """A `headers:` entry that cannot be served, for the parameter `name` (located at `headers.<name>`)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def with_headers(schema: dict[str, Any], headers: dict[str, str], function: str) -> dict[str, Any]:
    """A copy of `schema` whose top-level properties named in `headers` carry `x-mcp-header`.

    HeaderProblem when a named parameter is not a property, its property is no plain string,
    integer or boolean, or the annotated schema breaks the spec's rules (a duplicate name).
    """
    annotated = copy.deepcopy(schema)
    properties = annotated.get("properties")
    for name, header in headers.items():
        prop = properties.get(name) if isinstance(properties, dict) else None
        if not isinstance(prop, dict):
            takes = ", ".join(repr(p) for p in properties) if isinstance(properties, dict) and properties else "none"
            raise HeaderProblem(name, f"headers: {name!r} is not a parameter of {function}() (its parameters: {takes})")
        if prop.get("type") not in HEADER_TYPES:
            raise HeaderProblem(name, f"headers: {name!r} {_type_hint(prop)}")
        existing = prop.get(X_MCP_HEADER_KEY)
        if existing is not None and existing != header:
            raise HeaderProblem(name, f"headers: {name!r} already has x-mcp-header {existing!r} in input_schema")
        prop[X_MCP_HEADER_KEY] = header
    if (reason := find_invalid_x_mcp_header(annotated)) is not None:
        culprit = next(iter(headers))
        for name, header in headers.items():
            if repr(name) in reason or repr(header) in reason:
                culprit = name
        raise HeaderProblem(culprit, f"headers: {reason}")
    return annotated


def _type_hint(prop: dict[str, Any]) -> str:
    kind = prop.get("type")
    if kind is None and ("anyOf" in prop or "oneOf" in prop):
        return (
            "must be a string, integer or boolean parameter, not a union: an optional parameter "
            '(str | None = None) has no single type; give it a plain default instead (region: str = "")'
        )
    return f"must be a string, integer or boolean parameter (its schema's type is {kind!r})"


def header_problems(source: Source, manifest: Any) -> list[Problem]:
    """What can be told before any import: header names clash, a bound parameter, or a declared schema's rules."""
    problems: list[Problem] = []
    for i, tool in enumerate(manifest.tools):
        problems += _tool_problems(source, i, tool)
    return problems


def _tool_problems(source: Source, i: int, tool: Any) -> list[Problem]:
    headers: dict[str, str] = tool.headers
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for name, header in headers.items():
        where = source.locate(("tools", i, "headers", name))
        if header.lower() in seen:
            message = f"headers: {header!r} is also the header of {seen[header.lower()]!r} (names are case-insensitive)"
            problems.append(Problem(where, message))
        seen[header.lower()] = name
        if name in tool.bind:
            problems.append(
                Problem(where, f"headers: {name!r} is filled by bind: from the token, so no client sends it")
            )
    if problems or tool.input_schema is None:
        return problems
    if (reason := find_invalid_x_mcp_header(tool.input_schema)) is not None:
        return [
            Problem(source.locate(("tools", i, "input_schema", *_annotation_path(reason))), f"input_schema: {reason}")
        ]
    if headers:
        try:
            with_headers(tool.input_schema, headers, tool.function.rpartition(":")[2])
        except HeaderProblem as exc:
            problems.append(Problem(source.locate(("tools", i, "headers", exc.name)), str(exc)))
    return problems


def _annotation_path(reason: str) -> tuple[str, ...]:
    """Where inside the schema the SDK's reason points (`property 'a.b'`), as a path to its `x-mcp-header`."""
    found = re.search(r"property '([^']*)'", reason)
    if found is None:
        return ()
    path: tuple[str, ...] = ()
    for part in found.group(1).split("."):
        path += ("properties", part)
    return (*path, X_MCP_HEADER_KEY)
