"""Which watched resources a reload changed, so their subscribers hear it without any user code.

A resource's content comes from its function. After a reload the function is a
new object exactly when its module was imported again, which the reload does
when that module, or any user module it depends on, changed on disk
(runner/reload/modules.py). So a resource counts as updated when the function
behind it is a different object, or when what clients see of it (mime type,
description...) changed, or when it is new (a static resource can take over a
URI a template served). A template's update reaches every watched URI it serves.

Each replica applies its own reloads, so these events are delivered to this
process's subscribers only (`EventHub.deliver`), when the new code is live here:
sent over the bus, they would reach clients of replicas that have not reloaded yet.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from mcp.shared.subscriptions import ResourceUpdated

from runner.events.handlers import serves

if TYPE_CHECKING:
    from runner.attach import LiveServer

Functions = dict[str, Any]  # resource key (URI or URI template) -> the user's function behind it


def functions(server: LiveServer) -> Functions:
    """The user function behind every resource (unwrapped from the tool pool's and pydantic's wrappers)."""
    manager = server._resource_manager
    found: Functions = {}
    for resource in manager.list_resources():
        fn = getattr(resource, "fn", None)
        found[str(resource.uri)] = inspect.unwrap(fn) if fn is not None else resource
    for template in manager.list_templates():
        found[template.uri_template] = inspect.unwrap(template.fn)
    return found


def updates(
    before: Functions, after: Functions, listed: set[str], server: LiveServer, watched: set[str]
) -> list[ResourceUpdated]:
    """One event per watched URI whose resource's code or listing changed (`listed`: keys added or changed)."""
    changed = {key for key, fn in after.items() if before.get(key) is not fn} | listed
    events = []
    for uri in sorted(watched):
        key = serves(server, uri)
        if key is not None and key in changed:
            events.append(ResourceUpdated(uri=uri))
    return events
