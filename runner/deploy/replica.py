"""One replica's deployment settings and its drain state, read by /healthz, /readyz and the drain."""

from __future__ import annotations

from dataclasses import dataclass

from runner.deploy.identity import default_replica_id
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
