"""Serve options: the manifest's `server:` block, overridden by command-line flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from runner.build import Binding
from runner.manifest import Manifest

Transport = Literal["streamable-http", "stdio"]


@dataclass(frozen=True)
class Overrides:
    host: str | None = None
    port: int | None = None
    path: str | None = None


def binding(manifest: Manifest, overrides: Overrides) -> Binding:
    settings = manifest.server
    return Binding(
        host=overrides.host or settings.host,
        port=settings.port if overrides.port is None else overrides.port,
        path=overrides.path or settings.path,
        host_flag=overrides.host is not None,
    )
