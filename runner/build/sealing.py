"""How the server seals the `requestState` of multi-round calls (2026-07-28), and how a reload changes it.

A tool that asks the user (the SDK's `Resolve(Elicit(...))`) answers a 2026-07-28 client
`input_required` with a `requestState` the SDK seals (AES-GCM) and the client echoes on its retry.
Without `server.request_state_keys` the key is the process's own, so a retry that a load balancer
sends to another replica is refused (`-32602 Invalid or expired requestState`). With them, every
replica that has the same keys and the same server name (the state's audience) accepts it.

A reload builds a new server with a new `RequestStateSecurity`; the live server takes its
boundary only when the sealing changed (keys, TTL or name). Otherwise it keeps its own, so a
process-local key survives reloads and calls between rounds are not broken by an unrelated edit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from mcp.server.lowlevel.server import Server
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity

from runner.manifest.settings import ServerSettings


@dataclass(frozen=True)
class Sealing:
    """What decides whether two builds seal alike; holds a digest of the keys, never a key."""

    keys_sha256: str | None = field(repr=False)  # None: a key of this process only
    ttl: float
    keys: int = 0  # how many keys unseal

    @property
    def shared(self) -> bool:
        return self.keys_sha256 is not None


def sealing(settings: ServerSettings) -> tuple[RequestStateSecurity, Sealing]:
    """The SDK's policy for the manifest's `server:` block, and what identifies it."""
    ttl = float(settings.request_state_ttl)
    if not settings.request_state_keys:
        return RequestStateSecurity.ephemeral(ttl=ttl), Sealing(None, ttl)
    secrets = [key.get_secret_value() for key in settings.request_state_keys]
    digest = hashlib.sha256(b"\0".join(hashlib.sha256(s.encode()).digest() for s in secrets)).hexdigest()
    return RequestStateSecurity(keys=secrets, ttl=ttl), Sealing(digest, ttl, len(secrets))


def swap_boundary(live: Server[Any], new: Server[Any]) -> None:
    """Put `new`'s request-state boundary in place of `live`'s (both lowlevel `Server`s).

    `Server.middleware` is the SDK's public list; it is read on every request, so replacing one
    item is atomic for requests: each sees the old boundary or the new one.
    """
    chain = live.middleware
    for index, middleware in enumerate(chain):
        if isinstance(middleware, RequestStateBoundary):
            chain[index] = next(m for m in new.middleware if isinstance(m, RequestStateBoundary))
            return
    raise RuntimeError("the live server has no request-state boundary")  # the SDK always installs one
