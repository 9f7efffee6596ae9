"""The cyclic garbage collector's young-generation threshold while serving HTTP: 10,000, not 700.

Why: a collection of the young generation walks every container object still
alive since the last one, and under load those are the objects of the requests
in flight (pydantic models, tasks, scopes). At concurrency 32 CPython's default
(a collection per 700 net container allocations) spent 9.6% of the server's CPU
in the collector (`gc.callbacks`, thread CPU time: 1,772 young and 161 middle
collections in 8.7 s of CPU), twice its share at concurrency 8 (4.7%), which is
much of why the runner scaled worse from 8 to 32 connections than from 1 to 8.
At 10,000 the same load did 44 and 5 collections, 2.7% of the CPU. Handshake-era
sessions keep more objects alive: there, at concurrency 32, 15.4% at 700, 12.8% at
3,000, 10.6% at 10,000, 8.2% at 30,000. The young pass grows with the threshold
(3.3 ms at 10,000 on that load, 33 ms at 30,000), while the full passes it spares
took 19 ms each: 10,000 keeps the longest pause no longer than before.

What it costs: cyclic garbage (objects that only the collector frees; plain
values are freed at once by reference counting) may wait for up to 10,000
allocations instead of 700, a few hundred kB at most. The long-lived definition
is frozen out of every collection anyway (`runner/reload/memory.py`), and a
reload still collects explicitly, so replaced definitions are released as before.
"""

from __future__ import annotations

import gc

YOUNG = 10_000


def tune() -> None:
    """Raise the young generation's threshold; the older generations' stay as they are."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
