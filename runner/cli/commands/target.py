"""Which server a client command talks to, and with which token.

The server: `--url`, else the live server of the manifest (its record in
`.mcp-runner/serving-*.json`, written by every HTTP `serve`), else the manifest's
`server:` block. The token: `--token` or `MCP_TOKEN`, else, for `app_id: local`, one
minted on the fly exactly as `mcp-runner token` mints it (runner/cli/tokens.py), short-lived
and carrying the scopes the command needs: for `call`, `signin.scopes` and those the manifest
names for the tool (runner/cli/commands/scopes.py `tool_scopes`); else every scope the manifest
names, since `list` shows what they allow, and a URI or prompt name may be served by a template,
an upstream or an API whose scopes the manifest gives per mount, not per name (the CLI acts as
the manifest's owner, who holds the local issuer's key anyway). A manifest without `signin:` needs no token. When the
token is sent (at once, or only when the server asks): runner/cli/commands/bearer.py.

A minted token is valid at the manifest's own server, so it goes to that server only: a `--url`
naming anything else (a staging box, a typo, a hostile server) could replay it there. Such a
`--url` needs `--token` or `MCP_TOKEN`: the CLI then does not mint (`own_origins`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from runner.auth.defaults import STATE_DIR
from runner.cli.commands.exits import EXIT_UNREACHABLE, EXIT_USAGE, CommandError
from runner.manifest.config import Overrides, binding
from runner.manifest.model import LOCAL_APP_ID, Manifest, all_scopes, load
from runner.serve.live import servers

DEFAULT_MANIFEST = "mcp-runner.yaml"  # every command's default, as `mcp-runner init` writes it (starter.MANIFEST)
MINTED_TTL = 300  # seconds: one command's worth, never stored anywhere
CLI_SUBJECT = "mcp-runner-cli"


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None
    manifest: Path | None
    mode: str = "auto"  # the SDK Client's mode: auto, legacy, or a 2026-era version
    upfront: bool = False  # the token goes with the first request; else only once the server asks (commands/bearer.py)


def is_url(text: str) -> bool:
    return urlsplit(text).scheme in ("http", "https")


def no_manifest(path: Path, command: str, other: str = "your manifest") -> str:
    """The message for a manifest that is not there (the default one included): the next step, not an errno."""
    where = f" in {Path.cwd()}" if not path.parent.parts else ""
    return (
        f"mcp-runner: {path}: no such manifest{where}: create a starter with `mcp-runner init`, "
        f"or name {other}: `mcp-runner {command} path/to/manifest.yaml ...`"
    )


def resolve(
    target: str,
    url: str | None,
    token: str | None,
    *,
    command: str = "list",
    needs: Callable[[Manifest], list[str]] | None = None,
) -> Target:
    """`target` is a manifest path or a server URL; `url` and `token` are the flags; `needs` gives the scopes
    (beyond `signin.scopes`) a minted token carries, by the manifest: None for every scope it names."""
    token = token or os.environ.get("MCP_TOKEN") or None
    if is_url(target):
        if url is not None:
            raise CommandError("mcp-runner: give a manifest or --url, not two URLs", EXIT_USAGE)
        return Target(target, token, None)
    path = Path(target)
    if not path.is_file():
        raise CommandError(no_manifest(path, command, "your manifest or its server's URL"), EXIT_USAGE)
    manifest, _ = load(path, client=True)  # a ManifestError is reported, located, by the CLI
    own = url is None  # the manifest's own server: what its signin: says holds for it
    if url is None:
        url = served_url(path, manifest)
    elif not is_url(url):
        raise CommandError(f"mcp-runner: --url must be an http:// or https:// URL, got {url!r}", EXIT_USAGE)
    if token is None and manifest.signin is not None:
        if manifest.signin.app_id != LOCAL_APP_ID:
            raise CommandError(
                f"mcp-runner: {target} is protected by MCP SignIn app {manifest.signin.app_id!r}: "
                "pass a token with --token or MCP_TOKEN",
                EXIT_UNREACHABLE,
            )
        if not own and origin(url) not in (origins := own_origins(path, manifest)):
            raise CommandError(
                f"mcp-runner: --url {url} is not the server of {target} ({', '.join(origins) or 'none known'}), "
                "and a token minted for that server must not go anywhere else: pass a token for this URL with "
                f"--token or MCP_TOKEN, or drop --url to talk to {target}'s own server",
                EXIT_USAGE,
            )
        scopes = all_scopes(manifest) if needs is None else needs(manifest)
        return Target(url, _mint(path, manifest, url, scopes), path, upfront=own)
    return Target(url, token, path, upfront=own and manifest.signin is not None)


def served_url(path: Path, manifest: Manifest) -> str:
    running = servers(path.resolve().parent / STATE_DIR, path)
    urls = sorted({where.url for where in running})
    if len(urls) == 1:
        return urls[0]
    if len(urls) > 1:
        raise CommandError(f"mcp-runner: {path} is served at {', '.join(urls)}: choose one with --url", EXIT_USAGE)
    where = binding(manifest, Overrides())
    if where.port == 0:
        raise CommandError(
            f"mcp-runner: no server of {path} is running (and server.port: 0 names none): "
            f"start `mcp-runner serve {path}`, or pass --url",
            EXIT_UNREACHABLE,
        )
    return where.url


def origin(url: str) -> str:
    """scheme://host:port, lower-cased, the default port written out: two spellings of one origin compare equal."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    host = (parts.hostname or "").lower()
    return urlunsplit((parts.scheme.lower(), f"[{host}]:{port}" if ":" in host else f"{host}:{port}", "", "", ""))


WILDCARDS = ("0.0.0.0", "::", "")


def own_origins(path: Path, manifest: Manifest) -> list[str]:
    """The origins a token minted for this manifest is meant for: its `signin.resource`'s (the audience), each
    running server's its record names (and 127.0.0.1 for one listening on every address), and, with no
    `signin.resource` and none running, its `server:` block's (the audience then). Nothing merely named."""
    assert manifest.signin is not None
    found = [origin(manifest.signin.resource)] if manifest.signin.resource else []
    running = servers(path.resolve().parent / STATE_DIR, path)
    for where in running:
        found.append(origin(where.url))
        if where.host in WILDCARDS:
            found.append(origin(where.self_origin))
    where = binding(manifest, Overrides())
    if not running and manifest.signin.resource is None and where.port != 0:
        found.append(origin(where.url))
    return list(dict.fromkeys(found))


def _mint(path: Path, manifest: Manifest, url: str, scopes: list[str]) -> str:
    from runner.cli.tokens import TokenRefused, mint

    assert manifest.signin is not None
    parts = urlsplit(url)
    ttl = min(MINTED_TTL, manifest.signin.max_token_lifetime)
    try:
        return mint(
            manifest,
            path,
            host=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 80),
            scopes=scopes,
            ttl=ttl,
            subject=CLI_SUBJECT,
        )
    except TokenRefused as exc:
        raise CommandError(f"mcp-runner: {exc}", EXIT_UNREACHABLE) from None
