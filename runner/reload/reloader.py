"""Hot reload: rebuild off to the side, swap atomically, keep the last good definition on failure.

A reload re-runs the very pipeline `serve` ran at start-up (manifest text ->
validated model -> built server) in a worker thread, with the user's changed
modules (and their importers) forgotten so they import fresh. Only a complete
success is swapped into the live server (`FastMCPSignInWrapper.adopt`);
sessions, the HTTP app and in-flight requests are untouched. Then clients are
told what changed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from opentelemetry.trace import StatusCode
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runner.auth.defaults import jwks_url
from runner.auth.gate import Guard
from runner.build.pool import ToolPool
from runner.build.server import Built, build
from runner.build.wrapper import FastMCPSignInWrapper
from runner.deploy.replica import Replica
from runner.events import reload as events
from runner.events.bus import bus_restart_notes
from runner.http.public import exception_kind, public_summary
from runner.manifest.config import Binding, Overrides, binding, runtime
from runner.manifest.errors import ManifestError
from runner.manifest.model import LOCAL_APP_ID, Manifest, load
from runner.manifest.settings import STARTUP_LIMITS
from runner.manifest.source import manifest_folder
from runner.observe import metrics
from runner.observe.tracing import tracer
from runner.openapi.health import public as openapi_public
from runner.openapi.mount import close_dropped, spec_files
from runner.reload.changes import Diff, Snapshot, list_events, snapshot
from runner.reload.memory import Settler, freeze_first
from runner.reload.modules import user_modules
from runner.reload.summary import describe, visible
from runner.reload.unwatched import Unwatched
from runner.reload.watcher import Baseline, Watcher
from runner.reload.worker import BuildThread, Crashed, Overdue

logger = logging.getLogger("runner.reload")


@dataclass
class ReloadResult:
    at: float
    ok: bool
    duration_ms: float
    changes: str = ""
    error: str | None = None
    stale: list[str] = field(default_factory=list)  # unreloadable modules whose file changed (unwatched.py)

    @property
    def outcome(self) -> str:
        """`ok`, `failed`, or `stale`: swapped in, but some module still runs code older than its file."""
        return "failed" if not self.ok else "stale" if self.stale else "ok"


@dataclass
class Reloader:
    manifest_path: Path
    binding: Binding  # what the process is bound to; fixed for its lifetime
    overrides: Overrides
    live: FastMCPSignInWrapper  # the server the app serves: the start-up one, whose definition reloads swap
    current: Built  # the latest good build, whose definition `live` serves
    manifest: Manifest
    manifest_hash: str
    view: Snapshot = field(default_factory=dict)
    view_changes: int = 0  # the live server's `changed_lists` when `view` was taken (runtime changes since: re-read)
    last: ReloadResult | None = None
    reloads: int = 0
    settler: Settler = field(default_factory=Settler)
    _dirty: set[Path] = field(default_factory=set)
    _reimported: list[str] = field(default_factory=list)  # the last build's modules imported again, for its log line
    _lock: anyio.Lock = field(default_factory=anyio.Lock)
    worker: BuildThread = field(default_factory=BuildThread)
    pool: ToolPool = field(default_factory=ToolPool)
    baseline: Baseline = field(init=False)
    unwatched: Unwatched = field(init=False)
    _watcher: Watcher | None = None
    replica: Replica | None = None  # set by `serve` over HTTP: /healthz names it, /readyz follows its drain

    def __post_init__(self) -> None:
        self.baseline = Baseline(self.manifest_path, self.module_files)
        self.baseline.capture()
        self.unwatched = Unwatched(self.root)
        self.unwatched.scan()

    @classmethod
    async def start(
        cls,
        manifest_path: Path,
        where: Binding,
        overrides: Overrides,
        built: Built,
        manifest: Manifest,
        digest: str,
        pool: ToolPool | None = None,
    ) -> Reloader:
        reloader = cls(manifest_path, where, overrides, built.server, built, manifest, digest, pool=pool or ToolPool())
        reloader.view, reloader.view_changes = await snapshot(built.server), built.server.changed_lists
        freeze_first()  # the first definition is live: out of the collector's way from now on
        return reloader

    @property
    def root(self) -> Path:
        return manifest_folder(self.manifest_path)

    async def reload(self, changed: frozenset[Path] | set[Path] = frozenset()) -> ReloadResult:
        with tracer.start_as_current_span("mcp-runner reload") as span:
            result = await self._reload(changed)
            span.set_attributes(
                {
                    "mcp_runner.reload.result": result.outcome,
                    "mcp_runner.reload.duration_ms": round(result.duration_ms, 1),
                    "mcp_runner.reload.changes": result.changes if result.ok else "",
                    "mcp_runner.reload.files": sorted(str(p.name) for p in changed),
                    "mcp_runner.manifest.sha256": self.manifest_hash,
                }
            )
            if not result.ok:
                span.set_status(StatusCode.ERROR, result.error or "reload failed")
        metrics.reloaded(result.ok, result.duration_ms / 1000)
        if result.ok:
            metrics.manifest(str(self.manifest_path), self.manifest_hash, self.live.name)
            metrics.served(self.view)  # series of removed names go (runner/observe/metrics.py)
        return result

    async def _reload(self, changed: frozenset[Path] | set[Path]) -> ReloadResult:
        async with self._lock:
            self._dirty |= {p for p in changed if p.suffix == ".py"}
            started = time.perf_counter()
            if self.worker.busy:  # an abandoned import still holds its module lock and sys.modules
                running = f"{self.worker.running_for:.0f} s"
                error = f"the previous reload is still running after {running}; this edit applies once it ends"
                return self._record(self._failed(started, error, error))
            timeout = runtime(self.manifest, self.overrides).reload_timeout
            self.baseline.capture()
            try:
                manifest, built, digest = await self.worker.run(self._build, timeout)
                self.baseline.extend()
                result = await self._swap(manifest, built, digest, started)
            except ManifestError as exc:
                # /healthz answers without auth: locations and kinds of problem, never messages (runner/http/public.py).
                result = self._failed(started, str(exc), public_summary(exc.problems))
            except Overdue:
                where = self.worker.where(self.root)
                error = f"{where}: reload abandoned: still running after {timeout:g} s (server.reload_timeout)"
                result = self._failed(started, error, error)
            except Crashed as exc:  # SystemExit, KeyboardInterrupt... from the build: a failed reload, no more
                result = self._failed(started, str(exc), exception_kind(exc.kind))
            except Exception as exc:  # the user's code can raise anything; never take the server down
                result = self._failed(started, f"{type(exc).__name__}: {exc}", exception_kind(type(exc).__name__))
            return self._record(result)

    def _record(self, result: ReloadResult) -> ReloadResult:
        self.last = result
        self.reloads += 1
        return result

    def _build(self) -> tuple[Manifest, Built, str]:
        """In a worker thread: the start-up pipeline again, with every stale user module imported fresh."""

        def attempt() -> tuple[Manifest, Built, str]:
            manifest, source = load(self.manifest_path)
            built = build(manifest, source, self.binding, root=self.root, cache=self.current.cache, pool=self.pool)
            return manifest, built, source.digest

        from runner.reload.fresh import rebuild_fresh  # with purge and references: needed from the first reload on

        result, self._reimported = rebuild_fresh(self.root, self._dirty, attempt)
        return result

    async def _swap(self, manifest: Manifest, built: Built, digest: str, started: float) -> ReloadResult:
        live = self.live
        built.server.guard = _carry_over(live.guard, built.server.guard)
        if live.changed_lists != self.view_changes:  # changed at run time (`add_tool`...): what clients see now
            self.view = await snapshot(live)
        functions = events.functions(live)
        live.adopt(built.server)  # the atomic step
        # What clients see now, from the live server: the new build alone does not serve the upstreams' tools
        # (their connections are the live server's), so its own view would report them all as removed.
        view = await snapshot(live)
        self.settler.replaced()
        # The new build took what it reuses from the old cache; emptied, the old Built (which
        # `serve` still holds for the start-up one) keeps no replaced function alive.
        await close_dropped(self.current.cache, built.cache)  # replaced `openapi:` entries' HTTP clients
        self.current.cache.clear()
        previous, self.current, self.manifest, self.manifest_hash = self.manifest, built, manifest, digest
        self.pool.resize(runtime(manifest, self.overrides).tool_threads)
        self._dirty.clear()
        diff = Diff.between(self.view, view)
        self.view, self.view_changes = view, live.changed_lists
        # Every replica applies its own reloads: their news goes to this process's clients only.
        for event in list_events(diff.touched()):
            live.events.deliver(event)
        listed = {*diff.added["resources"], *diff.changed["resources"]}
        for event in events.updates(functions, events.functions(live), listed, live, live.events.watched()):
            live.events.deliver(event)
        for what in _needs_restart(previous, manifest, self.overrides) + bus_restart_notes(
            previous, manifest, self.overrides
        ):
            logger.warning("reload: %s; still serving on %s", what, self.binding.url)
        self.unwatched.scan()
        stale = self.unwatched.stale()
        duration = (time.perf_counter() - started) * 1000
        lists = diff.describe(nothing="")
        said = describe(lists, previous, manifest, self._reimported)
        if stale:
            logger.warning(
                "reload stale in %.1f ms: %s; still running the old code of %s (not reloadable: restart to run it)",
                *(duration, said, ", ".join(stale)),
            )
        else:
            logger.info("reload ok in %.1f ms: %s", duration, said)
        changes = visible(lists, previous, manifest)
        return ReloadResult(at=time.time(), ok=True, duration_ms=duration, changes=changes, stale=stale)

    def _failed(self, started: float, error: str, public: str) -> ReloadResult:
        duration = (time.perf_counter() - started) * 1000
        # The problems as a `detail`: on indented lines of their own (runner/observe/logs.py), as a message they
        # would be escaped onto one line, as any client-chosen text is.
        logger.error("reload failed, still serving the last good definition:", extra={"detail": error})
        return ReloadResult(at=time.time(), ok=False, duration_ms=duration, error=public)

    # -- watching ---------------------------------------------------------------

    def module_files(self) -> list[Path]:
        """The files a reload follows besides the manifest: user modules, and `openapi:` spec files."""
        return [*user_modules(self.root).values(), *spec_files(self.manifest, self.root)]

    def watcher(self) -> Watcher:
        """The file watcher for this server (one per process; `serve` runs its `run` in the background)."""
        if self._watcher is None:
            self._watcher = Watcher(
                self.manifest_path,
                self.baseline,
                self.reload,
                busy=lambda: self.worker.busy,
                poll_interval=lambda: runtime(self.manifest, self.overrides).poll_interval,
            )
        return self._watcher

    async def watch(self) -> None:
        await self.watcher().run()

    def watch_mode(self) -> str:
        if self._watcher is None:
            return "off"
        poll = runtime(self.manifest, self.overrides).poll_interval
        return "file-system events" if poll is None else f"polling every {poll:g} s"

    def status(self) -> str:
        """`stuck` > `stale` > `degraded` > `unwatched` > `ok`: the worst thing that is true now (docs/reload.md).

        `stale`: edits may not be served (the watcher is blind, or a module no reload can replace
        changed on disk); `unwatched`: such modules are loaded, unchanged so far.
        """
        timeout = runtime(self.manifest, self.overrides).reload_timeout
        if self.worker.busy and self.worker.running_for > timeout:
            return "stuck"
        watcher = self._watcher
        if watcher is not None and (watcher.blind() or self.unwatched.stale()):
            return "stale"
        if self.last is not None and not self.last.ok:
            return "degraded"
        return "unwatched" if watcher is not None and self.unwatched.modules else "ok"

    def pending(self) -> bool:
        """True while a reload is under way, or while the files the last reload read differ on disk.

        False therefore means: the last finished reload read the manifest and every module it had
        loaded as they are now. That is what "my edit is live" needs, and what a count of reloads
        cannot say (a reload already running when a file is written finishes after the write
        without having read it). The lock is held from before the reload reads the disk until its
        result is recorded; `drift` compares the (real path, inode, mtime, size) it captured.
        """
        return self._lock.locked() or bool(self.baseline.drift())

    # -- HTTP -------------------------------------------------------------------

    def routes(self) -> list[Route]:
        async def healthz(_: Request) -> Response:
            server = self.live
            last = self.last
            tasks_alive = server.tasks.alive  # the tasks' task group (runner/tasks): if it died, say so
            body: dict[str, Any] = {
                "status": self.status() if tasks_alive else "down",
                "reload_running_s": round(self.worker.running_for, 1) if self.worker.busy else None,
                "reload_pending": self.pending(),
                "watch": self.watch_mode(),
                "tool_threads": self.pool.load(),
                "manifest": str(self.manifest_path),
                "manifest_sha256": self.manifest_hash,
                "replica_id": self.replica.id if self.replica else None,
                "tools": len(self.view.get("tools", {})),
                "resources": len(self.view.get("resources", {})),
                "prompts": len(self.view.get("prompts", {})),
                "auth": "none" if server.guard is None else ("local" if self.current.issuer else "signin"),
                "reloads": self.reloads,
                "bus": server.events.state(),
                "upstreams": server.upstreams.public(),  # each upstream's state (runner/upstreams)
                "openapi": openapi_public(self.manifest.openapi, server._tool_manager.list_tools()),
                "tasks": "ok" if tasks_alive else "down",
                "not_reloadable": self.unwatched.public(),  # module -> kind; edits to them need a restart
                "last_reload": None
                if last is None
                else {
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last.at)),
                    "result": last.outcome,
                    "stale": last.stale,
                    "duration_ms": round(last.duration_ms, 1),
                    "changes": last.changes,
                    "error": last.error,
                },
            }
            return JSONResponse(body, status_code=200 if tasks_alive else 503)

        async def readyz(_: Request) -> Response:
            # The first definition is loaded before the socket serves anything, so being able to
            # answer means ready; the route exists so load balancers have the conventional probe.
            # From SIGTERM on it is 503, so a balancer stops sending new work (runner/deploy/drain.py).
            if self.replica is not None and self.replica.draining:
                return JSONResponse({"ready": False, "draining": True}, status_code=503)
            if not self.live.tasks.alive:
                return JSONResponse({"ready": False, "tasks": "down"}, status_code=503)
            return JSONResponse({"ready": True})

        async def local_keys(_: Request) -> Response:
            issuer = self.current.issuer
            if issuer is None:
                return JSONResponse({"error": "not_found"}, status_code=404)
            return JSONResponse(issuer.jwks(), headers={"Cache-Control": "public, max-age=300"})

        return [
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route(jwks_url("", LOCAL_APP_ID), local_keys, methods=["GET"]),  # MCP SignIn's layout, on our origin
        ]


def _carry_over(old: Guard | None, new: Guard | None) -> Guard | None:
    """Keep what a reload need not throw away: the same verifier, or at least its warm key set.

    A reload then never depends on the issuer being up, and verified tokens stay cached.
    """
    if old is None or new is None:
        return new
    from runner.auth.verifier import JWKSTokenVerifier  # both have auth: PyJWT is loaded already

    if isinstance(old.verifier, JWKSTokenVerifier) and isinstance(new.verifier, JWKSTokenVerifier):
        if old.verifier.same_settings(new.verifier):
            return dataclasses.replace(new, verifier=old.verifier)
        if old.verifier.jwks.url == new.verifier.jwks.url:
            new.verifier.jwks = old.verifier.jwks
    return new


def _needs_restart(old: Manifest, new: Manifest, overrides: Overrides) -> list[str]:
    before, after = binding(old, overrides), binding(new, overrides)
    return [
        f"server.{name} changed from {getattr(before, name)!r} to {getattr(after, name)!r}: needs a restart"
        for name in ("host", "port", "path")
        if getattr(before, name) != getattr(after, name)
    ] + [  # the connection and session limits are fixed when the server starts (runner/http/)
        f"server.{name} changed from {getattr(old.server, name)!r} to {getattr(new.server, name)!r}: needs a restart"
        for name in STARTUP_LIMITS
        if getattr(old.server, name) != getattr(new.server, name)
    ]
