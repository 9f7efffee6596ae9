"""`mcp-runner serve`: bind, build, print the start-up block, run uvicorn until Ctrl-C."""

from __future__ import annotations

import dataclasses
import errno
import logging
import re
import shlex
import socket
import sys
from pathlib import Path
from typing import TextIO

import anyio
import uvicorn

from runner.auth.defaults import STATE_DIR, jwks_url
from runner.build.pool import ToolPool
from runner.build.resolve import ctrl_c_aborts
from runner.build.server import Built, build, exposure_problems
from runner.deploy.drain import DrainingServer, StreamCloser
from runner.deploy.identity import session_prefix
from runner.deploy.replica import Replica, state_warnings
from runner.events.bus import attach_bus
from runner.http import redact
from runner.http.limits import Limits, effective, protocol_class, raise_open_file_limit
from runner.http.proxies import trusted_proxies, uvicorn_options
from runner.http.streams import default_total
from runner.manifest.config import Binding, Overrides, Transport, binding, runtime
from runner.manifest.errors import ManifestError
from runner.manifest.model import LOCAL_APP_ID, Manifest, entry_name, load
from runner.manifest.source import manifest_folder
from runner.observe.access import AccessLog
from runner.observe.setup import Flags
from runner.observe.setup import start as start_observing
from runner.openapi.mount import close_all
from runner.reload.reloader import Reloader
from runner.reload.unwatched import unwatched_lines
from runner.serve.live import Record, announce, holder
from runner.serve.progress import Progress
from runner.speed.engine import Engine, parser_of, running_loop
from runner.tasks.attach import attach_tasks

logger = logging.getLogger("runner")


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before building, so that port 0 resolves to the real port the URLs and tokens name."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it, a pre-bound socket handed to uvicorn
    # meets Nagle + delayed ACK: measured 48 ms per tools/call instead of 3 ms (bench/throughput.py).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def port_taken(manifest_path: Path, port: int) -> str:
    """The next step when `port` is in use: which recorded server holds it (runner/serve/live.py), and the ways out."""
    found = holder(manifest_folder(manifest_path) / STATE_DIR, port)
    elsewhere = "serve on another port: --port 0 (any free port) or --port N"
    if found is None:
        return (
            f"  another program holds port {port} (`ss -ltnp 'sport = :{port}'` shows which): stop it, or {elsewhere}"
        )
    pid, url = found.get("pid"), found.get("url")
    if found.get("manifest") == str(manifest_path.resolve()):
        return (
            f"  {manifest_path} is already served there, by PID {pid} ({url}): use that server (list and call "
            f"find it), stop it (kill {pid}), or {elsewhere}"
        )
    return f"  the server of {found.get('manifest')} holds it (PID {pid}, {url}): stop it (kill {pid}), or {elsewhere}"


def client_name(server_name: str, manifest_file: str) -> str:
    """The name `claude mcp add` registers: from the manifest's `name`, so two servers never share one."""
    for text in (server_name, Path(manifest_file).stem):
        slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64].strip("-")
        if slug:
            return slug
    return "mcp-runner"


def stdio_notes(manifest: Manifest) -> list[str]:
    """Over stdio there is no token: say what becomes of `scopes:` and `bind:`."""
    entries = [*manifest.tools, *manifest.resources, *manifest.prompts]
    lines = []
    if (manifest.signin and manifest.signin.scopes) or any(e.scopes for e in entries):
        lines.append(
            "  scopes:    not checked over stdio (no token): every tool, resource and prompt is listed and usable"
        )
    bound = [entry_name(t) for t in manifest.tools if t.bind]
    if bound:
        lines.append(
            f"  bind:      {', '.join(bound)}: every call is a tool error over stdio (no token to take claims from)"
        )
    return lines


def banner(
    built: Built,
    where: Binding,
    manifest_file: str,
    transport: Transport,
    reload: bool,
    manifest: Manifest | None = None,
    replica: Replica | None = None,
    engine: str = "",
    warnings: list[str] | None = None,
) -> str:
    server = built.server
    tools = [t.name for t in server._tool_manager.list_tools()]
    resources = [str(r.uri) for r in server._resource_manager.list_resources()]
    resources += [t.uri_template for t in server._resource_manager.list_templates()]
    prompts = [p.name for p in server._prompt_manager.list_prompts()]
    lines = [f'mcp-runner: serving "{server.name}" from {manifest_file}']
    if transport == "stdio":
        lines.append("  transport: stdio (no HTTP, so no bearer auth: the client that starts the process owns it)")
    else:
        lines.append(f"  URL:       {where.url}")
    guard = server.guard
    if transport == "stdio":
        pass
    elif guard is None:
        lines.append("  auth:      NONE (no signin block; allowed on loopback only)")
    elif built.issuer is not None:
        if guard.resource.rstrip("/") != where.url.rstrip("/"):
            lines.append(
                f"  note:      signin.resource is {guard.resource} but this server is at {where.url}; tokens "
                f"name the former (set MCP_APP_RESOURCE={where.url} to serve under the latter)"
            )
        lines.append(
            f"  auth:      local issuer (keys in {STATE_DIR}/, JWKS at {jwks_url(where.self_origin, LOCAL_APP_ID)})"
        )
    else:
        lines.append(f"  auth:      MCP SignIn, issuer {built.issuer_url}, audience {guard.resource}")
    lines.append(f"  tools:     {', '.join(tools) or '-'}")
    lines.append(f"  resources: {', '.join(resources) or '-'}")
    lines.append(f"  prompts:   {', '.join(prompts) or '-'}")
    if server.mounts:  # their entries appear as each connects (runner/upstreams): /healthz shows how each is doing
        mounted = ", ".join(f"{m.name} ({'stdio' if m.command else 'http'})" for m in server.mounts)
        lines.append(f"  upstreams: {mounted}: connecting in the background; /healthz shows each one's state")
    if transport == "stdio" and manifest is not None:
        lines.extend(stdio_notes(manifest))
    if built.issuer is not None and transport != "stdio":
        token = built.mint()
        valid = "1 hour" if built.token_ttl == 3600 else f"{built.token_ttl // 60} minutes"
        assert guard is not None
        scopes = f", scope {' '.join(guard.required_scopes)}" if guard.required_scopes else ""
        lines.append(f"  token:     {token}")
        lines.append(f"             (valid {valid}{scopes}; more with: mcp-runner token {manifest_file} [--scope S])")
        # No token in this line: pasted into a client's config, a one-hour token would stop working within the
        # hour (README `install`). `install` writes an entry that needs none (stdio) or names $MCP_TOKEN (http).
        lines.append(
            f"  connect:   mcp-runner install claude-code {shlex.quote(manifest_file)}   (or claude-desktop, cursor, "
            "vscode; the client then starts the server itself, over stdio, with no token to renew)"
        )
    lines.append(f"  reload:    {'watching ' + manifest_file + ' and its modules' if reload else 'off'}")
    if reload:
        lines.extend(unwatched_lines(manifest_folder(manifest_file)))
    if replica is not None:
        sessions = "stateless (no sessions)" if replica.stateless else f"session ids {session_prefix(replica.id)}<id>"
        sealing = server.sealing
        keys = f", requestState keys: {sealing.keys}" if sealing is not None and sealing.shared else ""
        lines.append(f"  replica:   {replica.id}, {sessions}, drain {replica.drain_timeout:g} s on SIGTERM{keys}")
    lines.extend(f"  warning:   {warning}" for warning in warnings or ())
    if engine:
        lines.append(f"  engine:    {engine}")
    return "\n".join(lines)


async def _serve_stdio(
    manifest_path: Path,
    where: Binding,
    overrides: Overrides,
    built: Built,
    manifest: Manifest,
    digest: str,
    reload: bool,
    pool: ToolPool,
) -> None:
    reloader = await Reloader.start(manifest_path, where, overrides, built, manifest, digest, pool)
    logger.info("event loop: %s", running_loop())  # the start-up block was printed before the loop ran
    try:
        async with anyio.create_task_group() as tasks:
            if reload:
                tasks.start_soon(reloader.watcher().run)
                tasks.start_soon(reloader.settler.run)
            await built.server.run_stdio_async()
            tasks.cancel_scope.cancel()
    finally:
        await close_all(reloader.current.cache)  # the `openapi:` APIs' HTTP clients


def serve(
    manifest_path: Path,
    overrides: Overrides,
    transport: Transport,
    log_level: str,
    out: TextIO,
    reload: bool = True,
    observe: Flags | None = None,
    engine: Engine | None = None,
) -> int:
    """Returns the process exit code; raises ManifestError for a broken manifest."""
    engine = engine or Engine()
    manifest, source = load(manifest_path)
    where = binding(manifest, overrides)
    try:
        observed = start_observing(manifest, observe or Flags())
    except OSError as exc:
        print(f"mcp-runner: {exc}", file=sys.stderr)
        return 1
    pool = ToolPool(runtime(manifest, overrides).tool_threads)  # one per process: reloads resize it
    if transport == "stdio":
        sys.dont_write_bytecode = True
        with ctrl_c_aborts(), Progress("starting") as progress:
            built = build(manifest, source, where, pool=pool, progress=progress)
        attach_bus(built.server, manifest, overrides)
        attach_tasks(built.server, manifest, overrides)
        observed.attach(built.server, str(manifest_path), source.digest)
        observed.announce(banner(built, where, str(manifest_path), transport, reload, manifest), sys.stderr)
        engine.run(_serve_stdio, manifest_path, where, overrides, built, manifest, source.digest, reload, pool)
        return 0
    exposure = exposure_problems(manifest, source, where)
    if exposure:
        raise ManifestError(exposure)
    open_files = raise_open_file_limit()  # 1,024 is a common soft limit; connections need file descriptors
    try:
        sock = bind_socket(where.host, where.port)
    except OSError as exc:
        print(f"mcp-runner: cannot listen on {where.host}:{where.port}: {exc.strerror}", file=sys.stderr)
        if exc.errno == errno.EADDRINUSE:
            print(port_taken(manifest_path, where.port), file=sys.stderr)
        return 1
    # User modules are re-imported on reload; .pyc files would only add a staleness risk.
    sys.dont_write_bytecode = True
    record: Record | None = None
    try:
        where = dataclasses.replace(where, port=sock.getsockname()[1])
        with ctrl_c_aborts(), Progress("starting") as progress:
            built = build(manifest, source, where, pool=pool, progress=progress)
        attach_bus(built.server, manifest, overrides)  # fixed for the process's lifetime (runner/events/bus.py)
        observed.attach(built.server, str(manifest_path), source.digest)
        # `mcp-runner token`, `list` and `call` find this server, whatever port it took.
        record = announce(manifest_folder(manifest_path) / STATE_DIR, manifest_path, where)

        replica = Replica.of(manifest, overrides, where.port)
        attach_tasks(built.server, manifest, overrides, replica)  # fixed too (runner/tasks/attach.py)
        streams = StreamCloser()

        async def main() -> None:
            reloader = await Reloader.start(manifest_path, where, overrides, built, manifest, source.digest, pool)
            reloader.replica = replica
            settings = manifest.server
            wanted = Limits(
                settings.header_timeout, settings.body_timeout, settings.max_connections, settings.max_head_size
            )
            limits = effective(wanted, open_files)
            app = built.server.streamable_http_app(
                streamable_http_path=where.path,
                host=where.host,
                extra_routes=reloader.routes(),
                background=[
                    *([reloader.watcher().run, reloader.settler.run] if reload else []),
                    *([record.hold] if record else []),
                ],
                session_idle_timeout=settings.session_idle_timeout,
                max_sessions=settings.max_sessions,
                max_sessions_per_client=settings.max_sessions_per_client,
                max_sessions_per_subject=settings.max_sessions_per_subject,
                max_streams=settings.max_streams or default_total(limits.max_connections),
                max_streams_per_client=settings.max_streams_per_client,
                max_streams_per_subject=settings.max_streams_per_subject,
                stateless_http=replica.stateless,
                replica_id=replica.id,
                streams=streams,
                access_log=True,  # wrapped in AccessLog below
            )
            # log_config=None: uvicorn's own config would send access lines to stdout and the rest to
            # stderr; without it they reach the root logger the CLI set up, so every log line goes
            # to stderr, in one format, and stdout stays free for what commands print.
            config = uvicorn.Config(
                AccessLog(app),  # the access line, written by the runner at a third of uvicorn's cost
                http=protocol_class(limits, engine.http),
                h11_max_incomplete_event_size=limits.max_head_size,  # httptools: counted by its protocol
                ws="none",  # no WebSocket routes; an upgrade would also leave the connection bound
                log_level=log_level.lower(),
                log_config=None,
                access_log=False,  # AccessLog writes it (runner/observe/access.py)
                lifespan="on",
                timeout_graceful_shutdown=max(1, round(replica.drain_timeout)),
                **uvicorn_options(trusted_proxies(settings.forwarded_allow_ips, overrides.forwarded_allow_ips)),
            )
            config.load()  # so that the start-up block names the parser uvicorn really got
            running = f"{running_loop()} + {parser_of(config.http_protocol_class)}"
            observed.announce(
                banner(
                    built,
                    where,
                    str(manifest_path),
                    transport,
                    reload,
                    replica=replica,
                    engine=running,
                    warnings=state_warnings(manifest, overrides),
                ),
                out,
            )
            redact.install()  # after uvicorn configured its logging: no token reaches any handler
            try:
                await DrainingServer(config, replica, streams).serve(sockets=[sock])
            finally:
                await close_all(reloader.current.cache)  # the `openapi:` APIs' HTTP clients

        engine.run(main)
    finally:
        sock.close()
        if record is not None:
            record.close()
    return 0
