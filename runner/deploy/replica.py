"""One replica's deployment settings and its drain state, read by /healthz, /readyz and the drain."""

from __future__ import annotations

from dataclasses import dataclass

from runner.deploy.identity import default_replica_id
from runner.events.bus import bus_url
from runner.manifest.config import Overrides
from runner.manifest.model import Manifest


@dataclass
class Replica:
    id: str
    stateless: bool
    drain_timeout: float
    draining: bool = False  # set by SIGTERM: /readyz answers 503 from then on

    @classmethod
    def of(cls, manifest: Manifest, overrides: Overrides, port: int) -> Replica:
        """Flags over the manifest's `server:` block; the id defaults to `<hostname>-<port>` (identity.py)."""
        settings = manifest.server
        return cls(
            id=overrides.replica_id or settings.replica_id or default_replica_id(port),
            stateless=overrides.stateless or settings.stateless,
            drain_timeout=overrides.drain_timeout or settings.drain_timeout,
        )


UNSHARED_STATE = (
    "multi-round calls (tools that ask the user) fail when a 2026-07-28 client's retry reaches another "
    "replica: give every replica the same server.request_state_keys (docs/deployment.md)"
)


def state_warnings(manifest: Manifest, overrides: Overrides) -> list[str]:
    """The start-up warning of a replica (a replica id, a bus, or stateless) whose `requestState` only it can unseal.

    Without `server.request_state_keys` each process seals with a key of its own (runner/build/sealing.py).
    """
    settings = manifest.server
    replicated = (
        overrides.replica_id
        or settings.replica_id
        or bus_url(manifest, overrides)
        or overrides.stateless
        or settings.stateless
    )
    return [UNSHARED_STATE] if replicated and not manifest.server.request_state_keys else []
