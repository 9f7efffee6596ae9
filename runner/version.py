"""Versions: mcp-runner's own (`mcp-runner --version`) and the one a served manifest reports.

`serverInfo.version` is what a client shows next to the server's name. The manifest's
`version:` key sets it. Without one, it is mcp-runner's version with the manifest's short
sha256 as build metadata (`0.1.0+3f2a9c1b`): never empty, and it changes exactly when the
served manifest does, with the same prefix `/healthz` shows as `manifest_sha256`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution


def _runner_version() -> str:
    try:
        dist = distribution("mcp-runner")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
    # `dist.version` parses all of METADATA with the email parser, the README (its long description)
    # included: ~7 ms of every start-up. The Version header comes before the first blank line.
    for line in (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").splitlines():
        if not line:
            break
        if line.startswith("Version:"):
            return line.partition(":")[2].strip()
    return dist.version


RUNNER_VERSION = _runner_version()


def server_version(declared: str | None, digest: str) -> str:
    """The manifest's `version:`, else mcp-runner's version plus the manifest's short hash."""
    if declared:
        return declared
    return f"{RUNNER_VERSION}+{digest[:8]}" if digest else RUNNER_VERSION
