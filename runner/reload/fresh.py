"""One rebuild that runs only code as fresh as the files on disk, or fails saying why.

The rule: after a reload, no user module, and no name a user module took from
another, refers to code older than its file. Stale modules and everything that
may hold their names are imported again (`purge`, `modules`); then the result is
checked (`references`). A name still pointing at replaced code means an import
we could not read statically: every user module is imported again and the check
repeated. If a stale reference survives even that, the reload fails, so neither
the log nor /healthz ever reports a success that runs old code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from runner.manifest.errors import ManifestError
from runner.reload.purge import Purge
from runner.reload.references import stale_references

logger = logging.getLogger("runner.reload")

T = TypeVar("T")


def rebuild_fresh(root: Path, dirty: set[Path], attempt: Callable[[], T]) -> tuple[T, list[str]]:
    """Run `attempt` (the build) with every stale user module imported again; restore everything if it fails.

    Returns the build's result and the names of the modules it imported again (for the reload's log line)."""
    purge = Purge.stale(root, dirty)
    try:
        result = attempt()
        purge.reload_rest()
        stale = stale_references(purge.root)
        if stale:
            logger.warning("reload: %s; importing every user module again", stale[0])
            purge.widen()
            result = attempt()
            purge.reload_rest()
            stale = stale_references(purge.root)
            if stale:
                raise ManifestError([ref.problem(purge.root) for ref in stale])
        purge.commit()
        return result, sorted(purge.removed)
    except BaseException:
        purge.rollback()
        raise
