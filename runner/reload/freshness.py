"""Is a loaded module's code what its file holds now? Decided per module, whatever file events arrived.

Each module object gets the fingerprint (mtime, ctime, size, inode) of the
file content it was imported from. A reload compares every loaded user
module's fingerprint with the file on disk, so an edit the watcher never
reported (a folder it does not watch, a write through a hard link, an event
lost while re-arming) is still seen, and a module whose file did not change
since it was imported is left alone, however recently that file was written.

What content an import read is pinned without any time window: a reload
fingerprints every loaded user module's file before its build starts; a module
the build imported from a file whose fingerprint is the same after the build
read exactly that content. A file that changed during the build gets no
fingerprint (the module counts as stale, and the next reload imports it again).
(An earlier rule trusted a fingerprint only if the file was older than the
import by 50 ms: a module imported right after its file was written counted as
stale at the next reload, whatever set that reload off, so a manifest-only edit
re-imported it and lost its state.)

Only a file no reload saw before its build (a module imported for the first
time) has no "before"; it is trusted if it had settled before the build began,
allowing for the coarse clock the kernel stamps files with. Modules imported at
start-up, or by a call between reloads, are judged the same way against the
process's start.
"""

from __future__ import annotations

import os
import time
import weakref
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

# Before the start-up build imports any user module (runner/serve/run.py imports the reloader first).
STARTED_NS = time.time_ns()
# File timestamps come from the kernel's coarse clock, which may lag the real one by a tick (1-10 ms).
_MARGIN_NS = 50_000_000


class Fingerprint(NamedTuple):
    mtime_ns: int
    ctime_ns: int  # set by the kernel on every write: an mtime put back (rsync -t, tar) does not hide an edit
    size: int
    inode: int


def fingerprint(path: Path) -> Fingerprint | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Fingerprint(st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


# Weak: a replaced module's entry goes with it. None means "not known to match its file".
_imported: weakref.WeakKeyDictionary[ModuleType, Fingerprint | None] = weakref.WeakKeyDictionary()


def _settled(path: Path, since_ns: int) -> Fingerprint | None:
    """The file's fingerprint if it last changed before `since_ns`, so an import after that read this content."""
    found = fingerprint(path)
    if found is None or max(found.mtime_ns, found.ctime_ns) >= since_ns - _MARGIN_NS:
        return None
    return found


def is_stale(module: ModuleType, path: Path, now: Fingerprint | None) -> bool:
    """True unless the module provably holds the code its file holds now (`now`; a deleted file is stale)."""
    if module not in _imported:
        _imported[module] = _settled(path, STARTED_NS)
    recorded = _imported[module]
    return recorded is None or recorded != now


def remember(modules: dict[ModuleType, Path], before: dict[Path, Fingerprint | None], since_ns: int) -> None:
    """Fingerprint the modules a build imported: `before` holds their files' fingerprints from before it began."""
    for module, path in modules.items():
        if module in _imported:
            continue
        if path in before:
            known, now = before[path], fingerprint(path)
            _imported[module] = now if now is not None and now == known else None
        else:
            _imported[module] = _settled(path, since_ns)
