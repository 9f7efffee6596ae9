"""Exit codes of the commands in this package, in one place so that the README and tests agree.

0: done. 1: the server answered "no" (a tool error, an unknown tool/resource/prompt, bad
arguments), or `init`/`install` refused to overwrite. 2: usage (bad flags, a bad manifest,
an `--arg` that does not fit the tool's schema). 3: no answer to act on (cannot connect,
the token was refused, or no token to send).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class CommandError(Exception):
    """A message for stderr (never holding a token) and the exit code that goes with it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
