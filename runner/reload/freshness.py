"""Is a loaded module's code what its file holds now? Decided per module, whatever file events arrived.

Each module object gets the fingerprint (mtime, ctime, size, inode) its file had
when it was imported. A reload compares every loaded user module's fingerprint
with the file on disk, so an edit the watcher never reported (a folder it does
not watch, a write through a hard link, an event lost while re-arming) is still
seen. The fingerprint is taken after the import, so it is only trusted when the
file had already settled before the import began (both timestamps older than
the import window's start, less the coarse clock's granularity); otherwise the
module counts as stale at the next reload and is simply imported once more.
Modules never fingerprinted (imported at start-up, or by a call between
reloads) are judged against the process's start: unchanged since then means
what was imported is what is on disk.
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


def is_stale(module: ModuleType, path: Path) -> bool:
    """True unless the module provably holds the code its file holds now (a deleted file is stale)."""
    if module not in _imported:
        _imported[module] = _settled(path, STARTED_NS)
    recorded = _imported[module]
    return recorded is None or recorded != fingerprint(path)


def remember(modules: dict[ModuleType, Path], since_ns: int) -> None:
    """Fingerprint modules imported in a window that began at `since_ns` (a reload's build)."""
    for module, path in modules.items():
        if module not in _imported:
            _imported[module] = _settled(path, since_ns)
