"""How an upstream's failed connects are logged: a failure in full once, then one short line a retry while it repeats.

Why: a stdio upstream whose `command:` is wrong fails at every start the same way, and its stderr (a traceback)
says why. Logged at each retry (eight in the first minute, then one every 30 s: connection.py's backoff), the
same traceback filled the log. So, per upstream:

- a failure unlike the last one (the first, another reason, or other stderr lines) is logged in full: the
  command's stderr lines of that start (stdio.py), then `down (REASON); attempt N, next retry in D s`;
- the same failure again is one line, `still failing the same way (attempt N); next retry in D s`, and the
  command's stderr of that start is not logged;
- a start after a failure holds its stderr lines until it is known how it ends: logged if it fails another way
  or connects, dropped if it fails the same way;
- the connect that ends a run of failures is logged with their count: `connected (after N failed attempts)`.

"The same" compares the reason and the start's first stderr lines with their numbers (and hex addresses) masked:
a process id, a port or a time in a traceback does not make it another failure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from runner.upstreams.stdio import Stderr

logger = logging.getLogger("runner")

_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")


@dataclass
class Retries:
    name: str
    stderr: Stderr | None = None  # a stdio upstream's; an HTTP upstream has only the reason
    failures: int = 0  # failed connects in a row
    last: str | None = None  # what the last failure looked like, numbers masked

    def starting(self) -> None:
        """A connect begins; after a failure, a stdio command's stderr is held until it is known how it ends."""
        if self.stderr is not None:
            self.stderr.start(hold=self.failures > 0)

    def connected(self) -> str:
        """It connected: the held stderr is logged; what the `connected` line adds (the failures it ends), if any."""
        if self.stderr is not None:
            self.stderr.release()
        failures, self.failures, self.last = self.failures, 0, None
        return f"after {failures} failed attempts" if failures > 1 else "after 1 failed attempt" if failures else ""

    def failed(self, why: str, delay: float) -> None:
        """A connect failed (or the connection was lost) for `why`; the next one is in `delay` seconds."""
        self.failures += 1
        lines = self.stderr.lines if self.stderr is not None else []
        seen = _NUMBERS.sub("#", "\n".join([why, *lines]))
        retry = f"next retry in {delay:g} s"
        if seen == self.last:
            logger.warning("upstream %r: still failing the same way (attempt %d); %s", self.name, self.failures, retry)
            return
        self.last = seen
        if self.stderr is not None:
            self.stderr.release()
        logger.warning("upstream %r: down (%s); attempt %d, %s", self.name, why, self.failures, retry)
