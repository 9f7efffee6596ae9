"""Keeping the cyclic garbage collector off the live definition, while still freeing replaced ones.

A built definition is hundreds of thousands of long-lived objects (each tool's
pydantic models, the user's modules). CPython's full collections walk all of
them: with 10,000 tools one pass took 3 s, and a reload's YAML parse alone
triggered two. So once a definition is live it is frozen (`gc.freeze()`): the
collector no longer scans it.

Frozen objects are never collected either, and a replaced definition (old
modules, old tools) is full of reference cycles. So after a reload the
`Settler` unfreezes, collects once and freezes again. That pass costs as much as
one ordinary full collection; it runs after the reload has been answered and
once edits have been quiet for `QUIET_S`, so a burst of saves pays it once and
the reload itself never waits for it.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import anyio

QUIET_S = 1.0


def settle() -> None:
    """Free whatever is garbage now, then exempt everything still alive from future scans."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def freeze_first() -> None:
    """At start-up: exempt the first definition from future scans, without a full collection first;
    and resume the collector if the launch paused it (runner/cli/launch.py).

    Nothing has been replaced yet, so the old generation holds almost no garbage (a few dozen
    objects from imports and the build), while a full pass over it cost 60-80 ms of start-up
    with one tool and ~170 ms with 1,000 (bench/throughput.py --startup-only). The young
    generations, where the build's transient cycles are, are collected; what little old garbage
    there is gets freed by the first reload's `settle`. With the collector paused since launch,
    every object of the start is still young and a young pass would be a full one: the few
    hundred garbage objects of the imports and the build are frozen with the rest instead, and
    the first reload's `settle` frees them.
    """
    if gc.isenabled():
        gc.collect(1)
    gc.freeze()
    gc.enable()


@dataclass
class Settler:
    due: float | None = None
    passes: int = 0

    def replaced(self) -> None:
        """A definition was swapped out: settle once edits have been quiet for a moment."""
        self.due = time.monotonic() + QUIET_S

    def settle_now(self) -> None:
        self.due = None
        settle()
        self.passes += 1

    async def run(self) -> None:
        """The background task: settle when due, forever."""
        while True:
            if self.due is not None and time.monotonic() >= self.due:
                self.settle_now()
            await anyio.sleep(QUIET_S / 4 if self.due is None else max(0.01, self.due - time.monotonic()))
