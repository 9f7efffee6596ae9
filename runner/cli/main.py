"""The `mcp-runner` command: serve, check, token, schema here; init, list, call, install in runner/cli/commands/."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from pathlib import Path

from runner.auth.defaults import STATE_DIR
from runner.build.resolve import Abort, ctrl_c_aborts
from runner.build.server import build
from runner.cli import commands as more_commands
from runner.loglevel import quiet_deprecation
from runner.manifest.config import Overrides, binding
from runner.manifest.errors import ManifestError, Problem
from runner.manifest.model import LOCAL_APP_ID, load
from runner.manifest.schema import json_schema
from runner.observe import logs
from runner.serve.progress import Progress
from runner.speed.engine import LOOPS, PARSERS, Unavailable, choose
from runner.version import RUNNER_VERSION
from runner.words import plural

EXIT_INVALID = 2
DEFAULT_MANIFEST = "mcp-runner.yaml"  # what `mcp-runner init` writes
DEFAULT_HELP = f"the manifest (default: {DEFAULT_MANIFEST}, as `mcp-runner init` writes it)"


CORE = ("serve", "check", "token", "schema", "nginx")  # parsed without runner/commands' parsers


DESCRIPTION = "Serve a YAML manifest as an MCP server protected by MCP SignIn, with live reload."


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; for a `command` in CORE, without the parsers of runner/commands, which import
    those commands' modules (an MCP client, the client configs): not what `serve` should start up with."""
    parser = argparse.ArgumentParser(prog="mcp-runner", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"mcp-runner {RUNNER_VERSION}")
    # Without runner/commands' parsers, usage lines still name every command, as the full parser does.
    every = ",".join([*CORE[:4], *more_commands.COMMANDS, *CORE[4:]])
    metavar = None if command not in CORE else "{" + every + "}"
    commands = parser.add_subparsers(dest="command", required=True, metavar=metavar)

    serve = commands.add_parser("serve", help="serve a manifest")
    serve.add_argument("manifest", type=Path, nargs="?", default=Path(DEFAULT_MANIFEST), help=DEFAULT_HELP)
    serve.add_argument("--host", help="bind address (default: the manifest's server.host, else 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, help="port (default: the manifest's server.port, else 8000; 0 = any free port)"
    )
    serve.add_argument("--path", type=_path, help="MCP endpoint path (default: the manifest's server.path, else /mcp)")
    serve.add_argument(
        "--transport",
        choices=["streamable-http", "stdio"],
        default="streamable-http",
        help="streamable-http (the default): serve HTTP on --host/--port; stdio: talk MCP on stdin/stdout, "
        "for a client that starts the server itself (no port, no token)",
    )
    serve.add_argument("--no-reload", action="store_true", help="do not watch the manifest and modules (production)")
    serve.add_argument(
        "--poll",
        type=_positive,
        nargs="?",
        const=1.0,
        metavar="SECONDS",
        help="watch by polling every SECONDS (default 1) instead of file-system events (server.poll_interval)",
    )
    serve.add_argument(
        "--reload-timeout",
        type=_positive,
        metavar="SECONDS",
        help="abandon a reload that takes longer (default: server.reload_timeout, else 30)",
    )
    serve.add_argument(
        "--tool-threads",
        type=_count,
        metavar="N",
        help="threads for sync tools, resources and prompts (default: server.tool_threads, else 40)",
    )
    serve.add_argument(
        "--stateless",
        action="store_true",
        help="no server-side sessions: any replica answers any request (server.stateless; docs/deployment.md)",
    )
    serve.add_argument(
        "--replica-id",
        type=_replica_id,
        metavar="ID",
        help="this replica's name in its session ids, for the load balancer (default: server.replica_id, "
        "else <hostname>-<port>)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=_positive,
        metavar="SECONDS",
        help="on SIGTERM or Ctrl-C, how long calls in flight may finish (default: server.drain_timeout, else 10)",
    )
    serve.add_argument(
        "--bus", metavar="URL", help="redis://host:port/db: events across replicas (default: the manifest's server.bus)"
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        type=_proxies,
        metavar="LIST",
        help="comma-separated proxies (addresses, networks, '*') whose X-Forwarded-For is believed "
        "(default: server.forwarded_allow_ips, else none)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error", "critical"])
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="json: one JSON object per line (default: $MCP_RUNNER_LOG_FORMAT, else server.log_format, else text)",
    )
    serve.add_argument(
        "--log-arguments", action="store_true", help="log tool and prompt arguments in audit lines (secrets redacted)"
    )
    serve.add_argument(
        "--metrics",
        type=_metrics_address,
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics on this separate address (default: server.metrics, else off; host 127.0.0.1)",
    )
    serve.add_argument("--loop", choices=LOOPS, help="event loop (default: uvloop; asyncio: the standard library's)")
    serve.add_argument("--http", choices=PARSERS, help="HTTP/1.1 parser (default: httptools; h11: pure Python)")

    check = commands.add_parser("check", help="validate a manifest (imports included) without serving")
    check.add_argument("manifest", type=Path, nargs="?", default=Path(DEFAULT_MANIFEST), help=DEFAULT_HELP)
    check.add_argument(
        "--offline",
        action="store_true",
        help="do not reach the manifest's upstreams (MCP servers) nor fetch `openapi:` specs given as URLs",
    )

    token = commands.add_parser("token", help="print a token from the local issuer (app_id: local)")
    # Which server the token is for (its audience): by default the running server of this manifest,
    # recorded in .mcp-runner/, else the manifest's server: block.
    token.add_argument("manifest", type=Path, nargs="?", default=Path(DEFAULT_MANIFEST), help=DEFAULT_HELP)
    token.add_argument(
        "--host", help="the server's host (default: the running server of the manifest, else its server.host)"
    )
    token.add_argument(
        "--port", type=_port, help="the server's port (default: the running server of the manifest, else server.port)"
    )
    token.add_argument("--scope", action="append", default=[], help="a scope to grant (repeatable)")
    token.add_argument(
        "--ttl", type=int, help="lifetime in seconds (default 3600; at most the manifest's signin.max_token_lifetime)"
    )
    token.add_argument("--subject", default="local-user", help="the token's sub claim")

    commands.add_parser("schema", help="print the manifest's JSON Schema")
    if command not in CORE:
        more_commands.add_parsers(commands)

    nginx = commands.add_parser(
        "nginx", help="print an nginx configuration for several replicas (sticky sessions; docs/deployment.md)"
    )
    nginx.add_argument(
        "--replica", action="append", required=True, metavar="ID=HOST:PORT", help="a replica (repeat for each)"
    )
    nginx.add_argument("--listen", default="127.0.0.1:8080", help="nginx's listen address (default 127.0.0.1:8080)")
    nginx.add_argument("--path", type=_path, default="/mcp", help="the MCP endpoint path (default /mcp)")
    nginx.add_argument(
        "--full",
        type=Path,
        metavar="DIR",
        help="print a complete nginx.conf keeping pid, logs and temp files in DIR (else: an http{} block)",
    )
    return parser


def _port(text: str) -> int:
    """`--port`, checked like the manifest's `server.port`, so a bad one is the flag's error, not a traceback."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 65535, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 65535, got {port}")
    return port


def _metrics_address(text: str) -> tuple[str, int]:
    """`--metrics 9464`, `--metrics 0.0.0.0:9464` or `--metrics [::1]:9464`."""
    host, colon, port = text.rpartition(":")
    host = host.strip("[]") if colon else "127.0.0.1"
    if not host:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {text!r}")
    return host, _port(port)


def _path(text: str) -> str:
    """`--path`, checked like the manifest's `server.path`."""
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"must start with '/', got {text!r}")
    return text


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _proxies(text: str) -> tuple[str, ...]:
    """`--forwarded-allow-ips`, checked like the manifest's `server.forwarded_allow_ips`; empty: none."""
    from runner.http.proxies import trusted_proxy

    try:
        return tuple(trusted_proxy(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _replica_id(text: str) -> str:
    """`--replica-id`, checked like the manifest's `server.replica_id`."""
    from runner.deploy.identity import valid

    if not valid(text):
        raise argparse.ArgumentTypeError(
            f"must be 1-63 letters, digits, '-' or '_', starting with a letter or digit, got {text!r}"
        )
    return text


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1024, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv[0] if argv else None).parse_args(argv)
    if args.command != "serve":
        gc.enable()  # paused for the imports (runner/cli/launch.py); `serve` resumes it after the first build
    logging.basicConfig(
        level=getattr(args, "log_level", "warning").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if getattr(args, "log_format", None) or os.environ.get(logs.ENV):
        if problem := logs.env_problem():
            print(f"mcp-runner: {problem}", file=sys.stderr)
            return EXIT_INVALID
        logs.configure(logs.chosen(args.log_format))  # before anything logs; the manifest may say json later
    # One line per reload is ours to log; watchfiles' own "N changes detected" is noise.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per key-set fetch is noise
    quiet_deprecation()  # `ctx.info()` is deprecated at 2026-07-28: said once, not per call site and reload
    if args.command in ("serve", "check", "token") and not args.manifest.exists():
        from runner.cli.commands.target import no_manifest

        print(no_manifest(args.manifest, args.command), file=sys.stderr)  # not "[Errno 2] No such file"
        return EXIT_INVALID
    try:
        if args.command == "schema":
            print(json.dumps(json_schema(), indent=2))
            return 0
        if args.command == "check":
            return _check(args.manifest, offline=args.offline)
        if args.command == "token":
            return _token(args)
        if args.command in more_commands.COMMANDS:
            return more_commands.main(args)
        if args.command == "nginx":
            return _nginx(args)
        from runner.observe.setup import Flags
        from runner.serve.run import serve

        try:
            engine = choose(args.loop, args.http)
        except Unavailable as exc:
            print(f"mcp-runner: {exc}", file=sys.stderr)
            return EXIT_INVALID
        code = serve(
            args.manifest,
            Overrides(
                args.host,
                args.port,
                args.path,
                args.reload_timeout,
                args.tool_threads,
                args.poll,
                stateless=args.stateless,
                replica_id=args.replica_id,
                drain_timeout=args.drain_timeout,
                bus=args.bus,
                forwarded_allow_ips=args.forwarded_allow_ips,
            ),
            args.transport,
            args.log_level,
            sys.stderr,
            reload=not args.no_reload,
            observe=Flags(args.metrics, args.log_format, args.log_arguments),
            engine=engine,
        )
        from runner.deploy.drain import ctrl_c

        return 130 if ctrl_c.is_set() else code
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        where = getattr(args, "manifest", None) or getattr(args, "target", "")
        print(f"mcp-runner: {plural(len(exc.problems), 'problem')} in {where}", file=sys.stderr)
        return EXIT_INVALID
    except (KeyboardInterrupt, Abort):
        return 130


def _check(path: Path, *, offline: bool = False) -> int:
    try:
        manifest, source = load(path)
    except ManifestError as exc:  # with every reference that does not resolve either: all problems in one run
        problems = [*exc.problems, *_unresolved(path)]
        here = str(path)  # the manifest's problems in file order; those located in a module after them
        raise ManifestError(sorted(problems, key=lambda p: (p.location.file != here, p.location.line))) from None
    where = binding(manifest, Overrides())
    with ctrl_c_aborts(), Progress("checking") as progress:
        built = build(manifest, source, where, progress=progress, online=not offline)
    server = built.server
    if server.guard is None:
        auth = "no auth"
    elif built.issuer is not None:
        auth = "local issuer"
    else:
        auth = f"MCP SignIn app {manifest.signin.app_id if manifest.signin else ''!r}"
    resources = len(server._resource_manager.list_resources()) + len(server._resource_manager.list_templates())
    reached = ""
    if manifest.upstreams and not offline:  # each upstream reached once (runner/upstreams/probe.py)
        import anyio

        from runner.upstreams.probe import reach

        taken = {str(r.uri) for r in server._resource_manager.list_resources()}
        taken |= {t.uri_template for t in server._resource_manager.list_templates()}
        from runner.openapi.mount import OperationTool

        names = {  # who serves each name already: an upstream serving it too is a located problem
            "tools": {
                t.name: f"openapi {t.api.name!r}" if isinstance(t, OperationTool) else "the manifest's tools"
                for t in server._tool_manager.list_tools()
            },
            "prompts": {p.name: "the manifest's prompts" for p in server._prompt_manager.list_prompts()},
        }
        problems, tools = anyio.run(reach, manifest.upstreams, source, taken, names)
        if problems:
            raise ManifestError(problems)
        reached = f", {plural(len(manifest.upstreams), 'upstream')} reached ({plural(tools, 'tool')})"
    elif manifest.upstreams:
        reached = f", {plural(len(manifest.upstreams), 'upstream')} (not reached: --offline)"
    print(
        f'{path}: ok: "{server.name}" at {where.url}: {plural(len(server._tool_manager.list_tools()), "tool")}, '
        f"{plural(resources, 'resource')}, {plural(len(server._prompt_manager.list_prompts()), 'prompt')}, {auth}"
        f"{reached}"
    )
    return 0


def _unresolved(path: Path) -> list[Problem]:
    """The import problems of a manifest that did not validate (runner/build/refs.py); none if it does not parse."""
    from runner.build.refs import unresolved
    from runner.manifest.source import manifest_folder, parse

    try:
        source = parse(path.read_bytes().decode("utf-8"), str(path), os.environ)
    except (ManifestError, OSError, UnicodeDecodeError):
        return []
    with ctrl_c_aborts():
        return unresolved(source, manifest_folder(path))


def _nginx(args: argparse.Namespace) -> int:
    from runner.deploy.nginx import Upstream, full_config, http_block

    try:
        upstreams = [Upstream.parse(text) for text in args.replica]
        if args.full is None:
            print(http_block(upstreams, listen=args.listen, path=args.path), end="")
        else:
            print(full_config(upstreams, listen=args.listen, path=args.path, prefix=args.full.resolve()), end="")
    except ValueError as exc:
        print(f"mcp-runner: --replica: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return 0


def _token(args: argparse.Namespace) -> int:
    from runner.cli.tokens import TokenRefused, mint

    manifest, _ = load(args.manifest, client=True)
    if manifest.signin is None:
        print(f"mcp-runner: {args.manifest} has no signin block: its server takes no token", file=sys.stderr)
        return EXIT_INVALID
    if manifest.signin.app_id != LOCAL_APP_ID:
        print(
            f"mcp-runner: tokens for app {manifest.signin.app_id!r} come from MCP SignIn; "
            "`token` mints only for the local issuer (app_id: local)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    limit = manifest.signin.max_token_lifetime
    ttl = min(3600, limit) if args.ttl is None else args.ttl
    if ttl <= 0:
        print("mcp-runner: --ttl must be positive", file=sys.stderr)
        return EXIT_INVALID
    if ttl > limit:
        print(
            f"mcp-runner: --ttl {ttl} is longer than signin.max_token_lifetime ({limit} s) of {args.manifest}: "
            "the server would refuse the token",
            file=sys.stderr,
        )
        return EXIT_INVALID
    if args.port == 0:
        print(
            "mcp-runner: token --port 0 names no server (0 tells `serve` to take any free port): pass the port "
            f"the server printed, or no --port while it runs (`token` finds it in {args.manifest.parent / STATE_DIR})",
            file=sys.stderr,
        )
        return EXIT_INVALID
    try:
        token = mint(
            manifest,
            args.manifest,
            host=args.host,
            port=args.port,
            scopes=args.scope,
            ttl=ttl,
            subject=args.subject,
        )
    except TokenRefused as exc:
        print(f"mcp-runner: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(token)
    return 0
