"""What to say when a token lacks a scope: which scope, and how to get a token that has it.

The server hides from tools/list what the caller's scopes do not allow (runner/auth/policy.py),
so `call --arg` (which reads the tool's schema from tools/list) met "no tool 'x'" for a tool that
exists, and `call --args` a bare "HTTP 403: Missing scope". The manifest is on this machine: it
says which scopes an entry needs, so the CLI can name them and the command that mints such a token.
The token's own scopes are read from its payload only to name the missing ones; it is never
verified here (the server does that), and never printed.
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
from pathlib import Path

from runner.cli.commands.target import Target
from runner.manifest.errors import ManifestError
from runner.manifest.model import LOCAL_APP_ID, Manifest, OpenAPIEntry, UpstreamEntry, entry_name, load


def hidden_tool(target: Target, tool: str) -> str | None:
    """Why the server lists no tool `tool` that the manifest has, when its scopes are why; else None."""
    manifest = _manifest(target)
    if manifest is None:
        return None
    held = token_scopes(target.token)
    for source, needed in _candidates(manifest, tool):
        lacking = needed if held is None else [scope for scope in needed if scope not in held]
        if lacking:
            return (
                f"mcp-runner: tool {tool!r}{source} needs scope {' '.join(lacking)}, which the token lacks "
                f"(the server lists only what a token's scopes allow); {how_to_get(target, needed)}"
            )
    return None


def tool_scopes(manifest: Manifest, tool: str) -> list[str]:
    """The scopes a call of `tool` needs on top of `signin.scopes`, by the manifest: those of every entry that may
    serve it. A token the CLI mints for `call` carries these, not every scope of the manifest (commands/target.py)."""
    return list(dict.fromkeys(scope for _, needed in _candidates(manifest, tool) for scope in needed))


def _candidates(manifest: Manifest, tool: str) -> list[tuple[str, list[str]]]:
    """What may serve `tool` with scopes, by the manifest: a tool entry, or an upstream or API whose served names
    (prefix + name, include/exclude; runner/upstreams/served.py, runner/openapi/mount.py) it fits, with the scopes
    each needs. The manifest does not list an upstream's or an API's names (they come from the upstream or the
    document, which a client does not read): a name that fits is one it may serve."""
    found = [("", list(t.scopes)) for t in manifest.tools if entry_name(t) == tool and t.scopes]
    mounts: list[tuple[str, UpstreamEntry | OpenAPIEntry]] = [("upstream", up) for up in manifest.upstreams]
    mounts += [("openapi", api) for api in manifest.openapi]
    for kind, entry in mounts:
        prefix = entry.served_prefix
        name = tool[len(prefix) :]
        if not tool.startswith(prefix) or not name or name in entry.exclude:
            continue
        if entry.include is not None and name not in entry.include:
            continue
        override = entry.overrides.get(tool)
        needed = [*entry.scopes, *(override.scopes if override else [])]
        if needed:
            found.append((f" (from {kind} {entry.name!r})", needed))
    return found


def how_to_get(target: Target, scopes: list[str]) -> str:
    """The next step for a token with `scopes`: the `token` command for the local issuer, else the issuer."""
    manifest = _manifest(target)
    if target.manifest is None or manifest is None or manifest.signin is None:
        return f"get a token with scope {' '.join(scopes)} from its issuer and pass it with --token or MCP_TOKEN"
    if manifest.signin.app_id != LOCAL_APP_ID:
        return (
            f"ask MCP SignIn (app {manifest.signin.app_id!r}) for a token with scope {' '.join(scopes)} "
            "and pass it with --token or MCP_TOKEN"
        )
    extra = [scope for scope in scopes if scope not in manifest.signin.scopes]  # signin.scopes come anyway
    flags = "".join(f" --scope {shlex.quote(scope)}" for scope in extra)
    return (
        f"get a token with it: `mcp-runner token {shlex.quote(str(target.manifest))}{flags}` "
        "(pass it with --token or MCP_TOKEN; with neither, the CLI mints one with the scopes the manifest names for it)"
    )


def token_scopes(token: str | None) -> set[str] | None:
    """The `scope`/`scp` claim of a JWT, unverified (for advice only); None when it is no readable JWT."""
    if not token:
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(claims, dict):
        return None
    scope, scp = claims.get("scope"), claims.get("scp")
    if isinstance(scope, str):
        return set(scope.split())
    if isinstance(scp, list):
        return {s for s in scp if isinstance(s, str)}
    return set()


def _manifest(target: Target) -> Manifest | None:
    if target.manifest is None:
        return None
    try:
        return load(Path(target.manifest), client=True)[0]
    except ManifestError:  # changed since the command started: no advice rather than a second error
        return None
