"""The `openapi` block of /healthz: per entry, how many operations it serves, where its spec comes
from, and how its last call ended.

/healthz answers without a token, so this says kinds only (as runner/upstreams/connection.py
`public()` does for upstreams): the spec's source kind (`file`, `url`, `inline`), never its path or
URL; a call's outcome kind (`ok`, `http 503`, `connect error`, `timed out`, `too large`,
`transport error`), never the base URL, a header, an argument or a body. The details are in the
log and in the failed call's answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from runner.manifest.model import OpenAPIEntry
from runner.openapi.mount import OperationTool
from runner.openapi.spec import is_url


def public(entries: Iterable[OpenAPIEntry], tools: Iterable[Any]) -> dict[str, Any]:
    """Each served entry's state, by name, from the tools the server serves now."""
    served: dict[str, list[OperationTool]] = {}
    for tool in tools:
        if isinstance(tool, OperationTool):
            served.setdefault(tool.api.name, []).append(tool)
    found: dict[str, Any] = {}
    for entry in entries:
        own = served.get(entry.name, [])
        last = own[0].api.last if own else None
        found[entry.name] = {
            "operations": len(own),
            "spec": _source(entry),
            "last_call": None
            if last is None
            else {"outcome": last[0], "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last[1]))},
        }
    return found


def _source(entry: OpenAPIEntry) -> str:
    if isinstance(entry.spec, dict):
        return "inline"
    return "url" if is_url(entry.spec) else "file"
