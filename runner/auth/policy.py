"""Per-entry authorization: which scopes each tool, resource and prompt needs.

One Policy per built definition, read on every request: by the bearer gate
(to answer a call the token may not make with HTTP 403 `insufficient_scope`,
so clients can step up) and by the server's list handlers (to show a caller
only what its scopes allow).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp.shared.uri_template import UriTemplate

Scopes = tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    tools: Mapping[str, Scopes] = field(default_factory=dict)
    prompts: Mapping[str, Scopes] = field(default_factory=dict)
    resources: Mapping[str, Scopes] = field(default_factory=dict)  # static URI -> scopes
    templates: tuple[tuple[UriTemplate, Scopes], ...] = ()

    @classmethod
    def build(
        cls,
        tools: Iterable[tuple[str, Iterable[str]]] = (),
        prompts: Iterable[tuple[str, Iterable[str]]] = (),
        resources: Iterable[tuple[str, Iterable[str]]] = (),
    ) -> Policy:
        statics: dict[str, Scopes] = {}
        templates: list[tuple[UriTemplate, Scopes]] = []
        for uri, scopes in resources:
            if scopes := tuple(scopes):
                if UriTemplate.is_template(uri):
                    templates.append((UriTemplate.parse(uri), scopes))
                else:
                    statics[uri] = scopes
        return cls(
            tools={name: tuple(s) for name, s in tools if s},
            prompts={name: tuple(s) for name, s in prompts if s},
            resources=statics,
            templates=tuple(templates),
        )

    def __bool__(self) -> bool:
        return bool(self.tools or self.prompts or self.resources or self.templates)

    def for_resource(self, uri: str) -> Scopes:
        if uri in self.resources:
            return self.resources[uri]
        for template, scopes in self.templates:
            if template.match(uri) is not None:
                return scopes
        return ()

    def for_message(self, message: Any) -> Scopes:
        """The entry scopes a JSON-RPC request needs (none for anything but a call, a read or a get)."""
        if not isinstance(message, dict):
            return ()
        params = message.get("params")
        if not isinstance(params, dict):
            return ()
        method = message.get("method")
        if method == "tools/call" and isinstance(params.get("name"), str):
            return self.tools.get(params["name"], ())
        if method == "prompts/get" and isinstance(params.get("name"), str):
            return self.prompts.get(params["name"], ())
        if method == "resources/read" and isinstance(params.get("uri"), str):
            return self.for_resource(params["uri"])
        return ()


def missing(needed: Iterable[str], granted: Iterable[str]) -> list[str]:
    have = set(granted)
    return [scope for scope in needed if scope not in have]
