"""`mcp-runner install CLIENT MANIFEST`: add this manifest's server to an MCP client's config.

The transport decides what the user has to keep alive. The default is stdio for a manifest
with no auth or with the local issuer: the client launches `mcp-runner serve MANIFEST
--transport stdio` itself, so there is no port to keep free and no token that expires an hour
later. A manifest protected by an MCP SignIn app gets an HTTP entry by default (that server is
meant to be reached over the network); its Authorization header names an environment variable
(or, in VS Code, an input the editor asks for), never the token itself, so a config file never
holds a secret and never goes stale.

The file is merged, never clobbered: other servers and other top-level keys are kept, an
entry of the same name is refused unless `--force`, and the new file replaces the old in one
rename. A file that is not a JSON object (VS Code allows comments; this does not parse them) is
refused with the entry printed, for pasting by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from runner.cli.commands.clients import CLIENTS, Entry, default_config, http_entry, stdio_entry, supports_http
from runner.cli.commands.exits import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CommandError
from runner.cli.commands.target import DEFAULT_MANIFEST, is_url, no_manifest, origin, own_origins, served_url
from runner.manifest.model import LOCAL_APP_ID, load

MAX_CONFIG_BYTES = 16 * 1024 * 1024


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser("install", help="add the manifest's server to an MCP client's config")
    p.add_argument("client", choices=CLIENTS)
    p.add_argument(
        "manifest",
        type=Path,
        nargs="?",
        default=Path(DEFAULT_MANIFEST),
        help=f"the manifest (default: {DEFAULT_MANIFEST})",
    )
    p.add_argument("--name", help="the entry's name (default: from the manifest's name)")
    p.add_argument("--transport", choices=["stdio", "http"], help="default: stdio, or http for an MCP SignIn app")
    p.add_argument("--url", help="for http: the server's URL (default: its running server, else its server:)")
    p.add_argument("--token-env", default="MCP_TOKEN", metavar="VAR", help="for http: the variable holding the token")
    p.add_argument("--config", type=Path, help="the client's config file (default: the client's own place)")
    p.add_argument("--print", dest="print_only", action="store_true", help="print the entry; write nothing")
    p.add_argument("--force", action="store_true", help="replace an entry of the same name")


def main(args: argparse.Namespace) -> int:
    try:
        entry, notes = _entry(args)
        if args.print_only:
            print(json.dumps(entry.document(), indent=2))
            return EXIT_OK
        path = args.config or default_config(args.client)
        status = _merge(path, entry, args.force)
        print(f"mcp-runner: {path}: {status}", file=sys.stderr)
        for note in notes:
            print(f"  {note}", file=sys.stderr)
        return EXIT_OK
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return exc.code


def _entry(args: argparse.Namespace) -> tuple[Entry, list[str]]:
    from runner.serve.run import client_name

    manifest_path: Path = args.manifest
    if not manifest_path.is_file():
        raise CommandError(no_manifest(manifest_path, f"install {args.client}"), EXIT_USAGE)
    manifest, _ = load(manifest_path, client=True)
    name = args.name or client_name(manifest.name, str(manifest_path))
    signin_app = manifest.signin is not None and manifest.signin.app_id != LOCAL_APP_ID
    transport = args.transport or ("http" if signin_app else "stdio")
    if transport == "stdio":
        command = [*runner_command(), "serve", str(manifest_path.resolve()), "--transport", "stdio"]
        notes = [f"the client starts the server itself: {' '.join(command)}"]
        return stdio_entry(args.client, name, command), notes
    if not supports_http(args.client):
        raise CommandError(
            "mcp-runner: Claude Desktop's config file takes local (stdio) servers only; add an HTTP server "
            "in the app (Settings > Connectors), or install with --transport stdio",
            EXIT_USAGE,
        )
    if args.url is not None and not is_url(args.url):
        raise CommandError(f"mcp-runner: --url must be an http:// or https:// URL, got {args.url!r}", EXIT_USAGE)
    url = args.url or served_url(manifest_path, manifest)
    token_env = args.token_env if manifest.signin is not None and args.token_env else None
    notes = []
    # `mcp-runner token` mints for the manifest's own server: never advise sending it to a --url naming another
    local = manifest.signin is not None and not signin_app
    foreign = local and args.url is not None and origin(url) not in own_origins(manifest_path, manifest)
    source = "a token from your MCP SignIn app" if signin_app else f"`mcp-runner token {manifest_path}` (valid 1 hour)"
    if foreign:
        source = f"a token that {url} accepts, from its issuer (`mcp-runner token` is for {manifest_path}'s own server)"
    if token_env is not None and args.client == "vscode":
        notes.append(f"VS Code asks for the token when it starts the server: paste {source}")
    elif token_env is not None:
        own = not signin_app and not foreign
        how = f"export {token_env}=$(mcp-runner token {manifest_path})" if own else f"export {token_env}=..."
        notes.append(f"the client sends ${token_env} as the bearer token: {how} before starting it")
        if foreign:
            notes.append(f"${token_env} must hold {source}")
        elif not signin_app:
            notes.append("a local-issuer token lasts 1 hour (--ttl up to signin.max_token_lifetime); stdio needs none")
    return http_entry(args.client, name, url, token_env), notes


def runner_command() -> list[str]:
    """The absolute command that runs this very mcp-runner, so the client need not share our PATH."""
    script = Path(sys.executable).parent / ("mcp-runner.exe" if sys.platform == "win32" else "mcp-runner")
    if script.is_file():
        return [str(script)]
    found = shutil.which("mcp-runner")
    return [str(Path(found).resolve())] if found else [sys.executable, "-m", "runner.cli"]


def _merge(path: Path, entry: Entry, force: bool) -> str:
    """Add `entry` to the JSON file at `path`, keeping everything else; returns what was done."""
    document = _read(path, entry)
    servers = document.setdefault(entry.servers_key, {})
    if not isinstance(servers, dict):
        raise CommandError(f"mcp-runner: {path}: {entry.servers_key!r} is not a JSON object; not changed", EXIT_USAGE)
    if servers.get(entry.name) == entry.server and _has_inputs(document, entry):
        return f"already has {entry.name!r} as it would be written; not changed"
    if entry.name in servers and not force:
        raise CommandError(
            f"mcp-runner: {path} already has a server named {entry.name!r}; not changed "
            "(--force replaces it, --name picks another name)",
            EXIT_REFUSED,
        )
    replaced = entry.name in servers
    servers[entry.name] = entry.server
    if entry.inputs:
        inputs = document.setdefault("inputs", [])
        if not isinstance(inputs, list):
            raise CommandError(f"mcp-runner: {path}: 'inputs' is not a JSON array; not changed", EXIT_USAGE)
        ids = {item.get("id") for item in entry.inputs}
        inputs[:] = [item for item in inputs if not (isinstance(item, dict) and item.get("id") in ids)]
        inputs.extend(entry.inputs)
    _write(path, document)
    return f"{'replaced' if replaced else 'added'} {entry.name!r}"


def _has_inputs(document: dict[str, Any], entry: Entry) -> bool:
    inputs = document.get("inputs", [])
    return all(item in inputs for item in entry.inputs) if isinstance(inputs, list) else not entry.inputs


def _read(path: Path, entry: Entry) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"mcp-runner: cannot read {path}: {exc.strerror}", EXIT_USAGE) from None
    if not data.strip():
        return {}
    try:
        if len(data) > MAX_CONFIG_BYTES:
            raise ValueError(f"larger than {MAX_CONFIG_BYTES} bytes")
        document = json.loads(data)
    except ValueError as exc:
        raise CommandError(
            f"mcp-runner: {path} is not plain JSON ({exc}); not changed. Add this by hand:\n"
            + json.dumps(entry.document(), indent=2),
            EXIT_USAGE,
        ) from None
    if not isinstance(document, dict):
        raise CommandError(f"mcp-runner: {path} is not a JSON object; not changed", EXIT_USAGE)
    return document


def _write(path: Path, document: dict[str, Any]) -> None:
    """Write next to the file, then rename over it: a crash leaves the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # it holds no secret
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
