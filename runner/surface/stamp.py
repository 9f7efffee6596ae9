"""The 2026-07-28 `serverInfo` stamp, kept in step with a reload's new identity.

Why: the SDK stamps every 2026-07-28 result with `serverInfo` (`_meta`), from a dump it
makes once per low-level server and keeps (`Server._server_info_stamp_source`, a
`functools.cached_property`: "identity is fixed at construction"). The runner's live
server outlives its definitions: a reload's swap sets a new title, description, icons,
website and version (the default version carries the manifest's hash, so every manifest
edit changes it) on the same server, and without this every later result would still
carry the identity of the first definition.

The SDK offers no public way to forget that dump, so this is the one place that reaches
for it; `forget` raises if the SDK stops keeping it that way (tests/test_list_cache.py
reloads a served manifest and checks the stamp).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

_KEPT = "_server_info_stamp_source"


def forget(lowlevel: Any) -> None:
    """Drop the kept `serverInfo` dump of `lowlevel` so the next result is stamped from its attributes now."""
    if not isinstance(getattr(type(lowlevel), _KEPT, None), cached_property):
        raise RuntimeError(f"mcp SDK changed: {type(lowlevel).__name__}.{_KEPT} is no longer a cached_property")
    vars(lowlevel).pop(_KEPT, None)
