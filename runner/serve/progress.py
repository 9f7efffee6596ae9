"""Progress of a long build (`check`, `serve` start-up) on a terminal; nothing anywhere else.

Shown only when stderr is a TTY (a pipe, a log file or CI sees no carriage returns), and only
for manifests of at least MIN_ENTRIES tools, resources and prompts: below that a build takes
well under a second and a flashing line would be noise. One line, redrawn in place with `\\r`
at most every percent, and erased when the build ends, so what follows (the start-up block,
`check`'s summary, the problems) prints as it would without it.
"""

from __future__ import annotations

import sys
from typing import TextIO

MIN_ENTRIES = 200


class Progress:
    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.shown = False
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if total < MIN_ENTRIES or not _is_tty(self.stream):
            return
        percent = done * 100 // total
        if percent == self._last and done != total:
            return
        self._last = percent
        self.stream.write(f"\r\x1b[Kmcp-runner: {self.label}: {done:,}/{total:,} entries ({percent}%)")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
