"""What a reload changed, and telling connected clients about it.

Clients are told only when a list really changed (a schema change counts),
never on a save that changed nothing they can see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ServerEvent, ToolsListChanged

Snapshot = dict[str, dict[str, Any]]  # category -> key -> what clients see of it
CATEGORIES = ("tools", "resources", "prompts")


async def snapshot(server: MCPServer) -> Snapshot:
    dump: Callable[[Any], Any] = lambda item: item.model_dump(mode="json", by_alias=True, exclude_none=True)  # noqa: E731
    resources = {str(r.uri): dump(r) for r in await server.list_resources()}
    resources.update({t.uri_template: dump(t) for t in await server.list_resource_templates()})
    return {
        "tools": {t.name: dump(t) for t in await server.list_tools()},
        "resources": resources,
        "prompts": {p.name: dump(p) for p in await server.list_prompts()},
    }


@dataclass
class Diff:
    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    changed: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def between(cls, old: Snapshot, new: Snapshot) -> Diff:
        diff = cls()
        for category in CATEGORIES:
            before, after = old.get(category, {}), new.get(category, {})
            diff.added[category] = sorted(after.keys() - before.keys())
            diff.removed[category] = sorted(before.keys() - after.keys())
            diff.changed[category] = sorted(k for k in after.keys() & before.keys() if after[k] != before[k])
        return diff

    def touched(self) -> list[str]:
        return [c for c in CATEGORIES if self.added[c] or self.removed[c] or self.changed[c]]

    def describe(self, nothing: str = "no visible change") -> str:
        parts = []
        for category in self.touched():
            items = [f"+{n}" for n in self.added[category]] + [f"-{n}" for n in self.removed[category]]
            items += [f"~{n}" for n in self.changed[category]]
            parts.append(f"{category} {' '.join(items)}")
        return "; ".join(parts) or nothing


_EVENTS: dict[str, ServerEvent] = {
    "tools": ToolsListChanged(),
    "resources": ResourcesListChanged(),
    "prompts": PromptsListChanged(),
}


def list_events(categories: list[str]) -> list[ServerEvent]:
    """The list-changed events for the touched categories (runner/events delivers them to both generations)."""
    return [_EVENTS[category] for category in categories]
