"""Where a running `serve` listens, recorded in `.mcp-runner/` so that `token`, `list` and `call` can aim at it.

Why: the local issuer's audience is the served URL unless `signin.resource`
names one, and after `serve --port 9000` (a flag `token` never saw) or
`--port 0` only the running process knows that URL (and `list`/`call` need the
URL with or without auth). Each HTTP `serve` writes `.mcp-runner/serving-<random>.json`
and holds an exclusive `flock` on it while it runs. The kernel drops the lock when the process dies,
however it dies, so a record whose lock can be taken is stale: no guessing from
pids that may have been reused. The record is written under a temporary name,
locked, then renamed into place, so a reader never sees it unlocked while its
server lives. Where `fcntl` does not exist (Windows), records are trusted as
they are, and `serve` still removes its own on a clean exit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import IO, Any

import anyio

from runner.manifest.config import Binding
from runner.manifest.state import state_folder

if sys.platform != "win32":
    import fcntl

logger = logging.getLogger("runner")

PATTERN = "serving-*.json"
MAX_RECORD_BYTES = 4096


class Record:
    """This process's record: removed by `close()`, by leaving the `with` block, or by `hold()` ending.

    `hold()` runs as a task of the served app's lifespan: uvicorn ends its lifespan on SIGTERM
    and then re-raises the signal, which would kill the process before any `finally` of ours.
    """

    def __init__(self, path: Path, handle: IO[str] | None) -> None:
        self.path = path
        self._handle = handle

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self._handle.close()
            self._handle = None

    async def hold(self) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            self.close()

    def __enter__(self) -> Record:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def announce(state_dir: Path, manifest: Path, where: Binding) -> Record:
    """Record that this process serves `manifest` at `where`, until the Record is closed.

    A record that cannot be written costs `token` its aim, not the server its life: logged, never raised.
    """
    final = state_dir / f"serving-{uuid.uuid4().hex}.json"
    try:
        _prune(state_dir)
        return Record(final, _write_locked(state_dir, final, manifest, where))
    except OSError as exc:
        logger.warning("cannot record the served URL in %s (%s): `mcp-runner token` needs --port", state_dir, exc)
        return Record(final, None)


def servers(state_dir: Path, manifest: Path) -> list[Binding]:
    """Where the live servers of `manifest` recorded in `state_dir` listen."""
    found: list[Binding] = []
    target = str(manifest.resolve())
    for path in sorted(state_dir.glob(PATTERN)):
        record = _read(path)
        if record is None or record.get("manifest") != target or not _alive(path):
            continue
        try:
            found.append(Binding(str(record["host"]), int(record["port"]), str(record["path"])))
        except (KeyError, TypeError, ValueError):
            continue
    return found


def holder(state_dir: Path, port: int) -> dict[str, Any] | None:
    """The record of a live server (of any manifest recorded in `state_dir`) listening on `port`, if any.

    For `serve` that cannot bind: "address in use" says nothing; this says which server holds it.
    """
    for path in sorted(state_dir.glob(PATTERN)):
        record = _read(path)
        if record is not None and record.get("port") == port and _alive(path):
            return record
    return None


def _write_locked(state_dir: Path, final: Path, manifest: Path, where: Binding) -> IO[str]:
    state_folder(state_dir.parent)
    temporary = final.with_suffix(".tmp")
    handle = open(temporary, "w", encoding="utf-8")  # noqa: SIM115 -- held open: the lock lives with it
    try:
        if sys.platform != "win32":
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        record = {
            "manifest": str(manifest.resolve()),
            "host": where.host,
            "port": where.port,
            "path": where.path,
            "url": where.url,
            "pid": os.getpid(),
        }
        handle.write(json.dumps(record))
        handle.flush()
        os.replace(temporary, final)
    except OSError:
        handle.close()
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return handle


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read(MAX_RECORD_BYTES))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(path: Path) -> bool:
    """Whether a server holds the record's lock (always true without fcntl)."""
    if sys.platform == "win32":
        return True
    try:
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except OSError:
        return False


def _prune(state_dir: Path) -> None:
    """Remove records whose server is gone (killed, crashed): they would only mislead."""
    if sys.platform == "win32" or not state_dir.is_dir():
        return
    for path in state_dir.glob(PATTERN):
        if not _alive(path):
            with contextlib.suppress(OSError):
                path.unlink()
