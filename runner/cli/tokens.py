"""`mcp-runner token`: a local-issuer token that the server the user means accepts.

The `iss` is the local issuer's key URN, the same on every port. The audience
is what the server checks: `signin.resource` (which the server's environment may
set differently from ours), else the served URL, which only the running server
may know (`--port 9000` given to `serve` alone, `--port 0`). So the live server
of this manifest, found by its record in `.mcp-runner/` (runner/serve/live.py), comes
first, and is asked for its audience; then `--host`/`--port`; then the
manifest's `server:` block. The scopes are `signin.scopes`, which every
request needs, plus the ones asked for.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from urllib.parse import urlsplit

from runner.auth.local_issuer import STATE_DIR, LocalIssuer
from runner.build.server import local_audience, local_issuer_id
from runner.manifest.config import Binding, Overrides, binding
from runner.manifest.model import Manifest
from runner.manifest.source import manifest_folder
from runner.serve.live import servers

MAX_BODY = 64 * 1024


class TokenRefused(Exception):
    """No token could name the intended server; the message says what to do instead."""


def mint(
    manifest: Manifest,
    manifest_path: Path,
    *,
    host: str | None,
    port: int | None,
    scopes: list[str],
    ttl: int,
    subject: str,
) -> str:
    assert manifest.signin is not None
    root = manifest_folder(manifest_path)
    issuer = LocalIssuer.open(root)
    audience = _audience(manifest, manifest_path, root, host, port)
    granted = list(dict.fromkeys([*manifest.signin.scopes, *scopes]))
    iss = local_issuer_id(manifest, issuer)
    return issuer.mint(issuer=iss, audience=audience, subject=subject, scopes=granted, ttl=ttl)


def _audience(manifest: Manifest, manifest_path: Path, root: Path, host: str | None, port: int | None) -> str:
    """The audience of the live servers of this manifest that match the flags, else the flags' and the manifest's."""
    assert manifest.signin is not None
    running = [
        where
        for where in servers(root / STATE_DIR, manifest_path)
        if (host is None or where.host == host) and (port is None or where.port == port)
    ]
    if not running:
        where = binding(manifest, Overrides(host, port))
        if where.port == 0 and manifest.signin.resource is None:
            raise TokenRefused(
                f"{manifest_path} serves on any free port (server.port: 0) and no server of it is running: "
                f"start `mcp-runner serve {manifest_path}` first, or pass the port it printed with --port"
            )
        return local_audience(manifest, where)
    audiences = {where.url: served_audience(where) or local_audience(manifest, where) for where in running}
    if len(set(audiences.values())) > 1:
        raise TokenRefused(
            f"{len(audiences)} servers of {manifest_path} are running ({', '.join(sorted(audiences))}) "
            "with different audiences: pass --port to choose one"
        )
    return next(iter(audiences.values()))


def served_audience(where: Binding) -> str | None:
    """The audience the running server checks now, as its RFC 9728 metadata says.

    The server's environment (`MCP_APP_RESOURCE` set for `serve` only) or a reload
    can make it differ from what this process reads in the manifest: the server is
    the authority. None when it does not answer; the manifest's value is used then.
    """
    origin = where.self_origin
    status, headers, _ = _get(origin + where.path)  # no token: a 401 naming the metadata
    found = re.search(r'resource_metadata="([^"]+)"', headers.get("WWW-Authenticate", "")) if status == 401 else None
    if found is None:
        return None
    status, _, body = _get(origin + urlsplit(found.group(1)).path)  # on this very server, whatever its public name
    try:
        resource = json.loads(body).get("resource") if status == 200 else None
    except (ValueError, AttributeError):
        return None
    return resource if isinstance(resource, str) else None


def _get(url: str) -> tuple[int, Message, bytes]:
    """GET on loopback: no proxy, no redirect worth following, a bounded body; (0, {}, b"") when unreachable."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.headers, response.read(MAX_BODY)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read(MAX_BODY)
    except OSError:
        return 0, Message(), b""
