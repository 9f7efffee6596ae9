"""Watch the manifest and the user's modules, and never go blind.

File-system events are only a hint that something may have changed. What
decides is the disk itself: every event, and every half second without one,
the watcher compares the manifest and the user's module files (real path,
inode, mtime, size) with what they were when the last reload started. So:

- A Kubernetes ConfigMap update (`manifest.yaml -> ..data/manifest.yaml`, with
  `..data` swapped atomically) is seen: the manifest's real file changed even
  though no event names `manifest.yaml`.
- A folder deleted and recreated (`git checkout`, a deploy tool) is seen: a
  missing folder is watched through its nearest existing parent, the watch
  re-arms when the set of folders changes, and the comparison after re-arming
  catches whatever was written in between.
- Events that never come (network filesystems, some containers) cost at most
  half a second of latency for the known files; `poll_interval` switches
  watchfiles to polling, which also sees new files.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from watchfiles import Change, awatch

logger = logging.getLogger("runner.reload")

# watchfiles yields once no new event arrived for this long: an editor's burst of
# events for one save (temp file, rename, chmod) becomes one reload.
QUIET_MS = 20
# Without events, the watcher wakes this often to compare the disk with the last reload.
AUDIT_MS = 500
# A watcher that has not come round for this long is dead (or stuck), and /healthz says so.
BLIND_AFTER_S = 5.0

_NOISE = {"__pycache__", ".mcp-runner", ".git"}

State = tuple[str, int, int, int] | None  # (real path, inode, mtime_ns, size); None = missing


def _state(path: Path) -> State:
    try:
        stat = os.stat(path)  # follows symlinks: a swapped `..data` shows as a new inode and real path
        return os.path.realpath(path), stat.st_ino, stat.st_mtime_ns, stat.st_size
    except (OSError, ValueError):
        return None


@dataclass
class Baseline:
    """What the watched files were when the last reload started; `drift` is what changed since."""

    manifest: Path
    files: Callable[[], Iterable[Path]]  # the user's module files, now
    seen: dict[Path, State] = field(default_factory=dict)

    def _paths(self) -> set[Path]:
        return {self.manifest, *self.files()}

    def capture(self) -> None:
        self.seen = {path: _state(path) for path in self._paths()}

    def extend(self) -> None:
        """Add the files a build loaded for the first time (the ones it read are what they were then)."""
        for path in self._paths() - set(self.seen):
            self.seen[path] = _state(path)

    def drift(self) -> set[Path]:
        return {path for path, state in self.seen.items() if _state(path) != state}


def _loaded() -> tuple[int, str | None]:
    """A cheap key of sys.modules: an import or a purge changes its size or its last name (an import appends).

    Why: `folders()` scans every loaded module (about 1 ms per thousand, more under load), and the
    half-second audit ran it on the event loop each time, a cost every call in flight shared. A tick
    with no event, no drift and the same key cannot have changed the folders, so it skips the scan.
    """
    return len(sys.modules), next(reversed(sys.modules), None)


def _may_move_folders(path: str) -> bool:
    """A change to anything but an existing non-Python file (a log the server writes next to its manifest...)."""
    return path.endswith(".py") or not os.path.isfile(path)


def nearest_existing(folder: Path) -> Path:
    """The folder itself, or its closest existing parent: a missing folder is watched for its return."""
    while not folder.is_dir() and folder.parent != folder:
        folder = folder.parent
    return folder


def _not_noise(change: Change, path: str) -> bool:
    return not path.endswith((".pyc", ".pyo")) and not _NOISE.intersection(Path(path).parts)


async def _set_when_cancelled(stop: anyio.Event) -> None:
    """Set `stop` as soon as the watcher is cancelled (the server stops).

    watchfiles waits for changes in a thread that the cancellation cannot interrupt: it sets its stop event only
    once that thread's wait returns, at the next audit tick, so every server stop waited up to AUDIT_MS for it
    (0.3 s on average of a 0.5 s stop). Set from here, the thread sees it within QUIET_MS."""
    try:
        await anyio.sleep_forever()
    finally:
        stop.set()


@dataclass
class Watcher:
    manifest: Path
    baseline: Baseline
    reload: Callable[[set[Path]], Awaitable[object]]
    busy: Callable[[], bool]  # true while an abandoned build still runs: no reload may start
    poll_interval: Callable[[], float | None]
    heartbeat: float = field(default_factory=time.monotonic)
    failing: str | None = None  # why the last attempt to watch failed, until one succeeds
    reloading: bool = False

    def folders(self) -> set[Path]:
        """The manifest's folder (as named, and its real one) and every user module's folder."""
        manifest = self.manifest.absolute()
        wanted = {manifest.parent, Path(os.path.realpath(manifest)).parent}
        wanted |= {Path(path).parent for path in self.baseline.files()}
        return {nearest_existing(folder) for folder in wanted}

    def blind(self) -> bool:
        """True when the watcher is not watching: failing to arm, or not coming round."""
        stalled = not self.reloading and time.monotonic() - self.heartbeat > BLIND_AFTER_S
        return self.failing is not None or stalled

    async def run(self) -> None:
        """Reload whenever the disk drifts from the last reload; re-arm when the folders change.

        Never ends with an exception: it runs in the server's task group, so a watcher
        failure (a folder gone, inotify limits) must not take the server down.
        """
        stop = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_set_when_cancelled, stop)
            await self._watch(stop)

    async def _watch(self, stop: anyio.Event) -> None:
        while not stop.is_set():
            folders, poll = self.folders(), self.poll_interval()
            try:
                # rust_timeout is the audit tick; `stop` ends the watcher thread's wait at shutdown (QUIET_MS).
                changes_seen = awatch(
                    *folders,
                    watch_filter=_not_noise,
                    step=QUIET_MS,
                    recursive=False,
                    rust_timeout=AUDIT_MS,
                    yield_on_timeout=True,
                    stop_event=stop,
                    force_polling=poll is not None,
                    poll_delay_ms=int((poll or 0.3) * 1000),
                )
                loaded = _loaded()
                async for changes in changes_seen:
                    self.heartbeat, self.failing = time.monotonic(), None
                    reloaded = await self._settle({Path(p).resolve() for _, p in changes if p.endswith(".py")})
                    quiet = not any(_may_move_folders(p) for _, p in changes)
                    if quiet and not reloaded and _loaded() == loaded and self.poll_interval() == poll:
                        continue  # an audit tick, or a log file written: nothing that decides the folders moved
                    loaded = _loaded()
                    if self.folders() != folders or self.poll_interval() != poll:
                        break
            except Exception as exc:
                self.failing = f"{type(exc).__name__}: {exc}"
                logger.error("file watcher failed (%s); retrying in 1 s", self.failing)
                await anyio.sleep(1)

    async def _settle(self, edited: set[Path]) -> bool:
        """Reload when the disk drifted; True when something did (or a build is still running)."""
        if self.busy():
            return True  # the stuck build's baseline is kept: once it ends, the drift since is reloaded
        changed = edited | self.baseline.drift()
        if not changed:
            return False
        self.reloading = True
        try:
            await self.reload(changed)
        finally:
            self.reloading = False
            self.heartbeat = time.monotonic()
        return True
