"""Serve options: the manifest's `server:` block, overridden by command-line flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from runner.http.security import is_loopback_address
from runner.manifest.model import Manifest


@dataclass(frozen=True)
class Binding:
    """Where the server listens; decided by the manifest's `server:` block and CLI flags."""

    host: str
    port: int
    path: str
    host_flag: bool = False  # the host came from `--host`: problems with it are the flag's, not the manifest's

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + self.path

    @property
    def self_origin(self) -> str:
        """How this process reaches itself (for the local issuer's JWKS)."""
        host = "[::1]" if ":" in self.host and is_loopback_address(self.host) else "127.0.0.1"
        return f"http://{host}:{self.port}"


Transport = Literal["streamable-http", "stdio"]


@dataclass(frozen=True)
class Overrides:
    host: str | None = None
    port: int | None = None
    path: str | None = None
    reload_timeout: float | None = None
    tool_threads: int | None = None
    poll_interval: float | None = None
    stateless: bool = False  # --stateless; the manifest's server.stateless also turns it on
    replica_id: str | None = None
    drain_timeout: float | None = None
    bus: str | None = None  # --bus: events across replicas (runner/events/bus.py)
    forwarded_allow_ips: tuple[str, ...] | None = None  # --forwarded-allow-ips (runner/http/proxies.py)


@dataclass(frozen=True)
class Runtime:
    """The settings that a reload applies without a restart."""

    reload_timeout: float
    tool_threads: int
    poll_interval: float | None  # None: file-system events


def binding(manifest: Manifest, overrides: Overrides) -> Binding:
    settings = manifest.server
    return Binding(
        host=overrides.host or settings.host,
        port=settings.port if overrides.port is None else overrides.port,
        path=overrides.path or settings.path,
        host_flag=overrides.host is not None,
    )


def runtime(manifest: Manifest, overrides: Overrides) -> Runtime:
    settings = manifest.server
    return Runtime(
        reload_timeout=overrides.reload_timeout or settings.reload_timeout,
        tool_threads=overrides.tool_threads or settings.tool_threads,
        poll_interval=overrides.poll_interval or settings.poll_interval,
    )
