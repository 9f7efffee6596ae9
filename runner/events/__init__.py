"""Server-to-client events: resource subscriptions, list changes, and their fan-out (across replicas too).

Inside a tool, resource or prompt, use the SDK's context: `await ctx.notify_resource_updated(uri)`.
Outside any request (a background thread or asyncio task of your module), use:

    from runner.events import resource_updated

    resource_updated("greeting://ann")  # thread-safe, never blocks, returns at once

It reaches every session subscribed to that exact URI, in both protocol generations,
on every replica when `server.bus` is set. It keeps working across reloads: it
targets whatever server this process serves, not the module that called it.
"""

from __future__ import annotations

from typing import Literal

from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)

from runner.events.hub import EventHub, running_hubs

__all__ = ["EventHub", "list_changed", "resource_updated"]


_LISTS: dict[str, ServerEvent] = {
    "tools": ToolsListChanged(),
    "resources": ResourcesListChanged(),
    "prompts": PromptsListChanged(),
}


def resource_updated(uri: str) -> bool:
    """Tell the subscribers of `uri` that it changed. From any thread or task; False if nothing is being served."""
    event = ResourceUpdated(uri=str(uri))
    return any([hub.emit_threadsafe(event) for hub in running_hubs()])


def list_changed(kind: Literal["tools", "resources", "prompts"]) -> bool:
    """Tell listening clients that a list changed (the runner does this itself on reload). Any thread."""
    event: ServerEvent = _LISTS[kind]
    return any([hub.emit_threadsafe(event) for hub in running_hubs()])
