"""A stdio upstream never outlives the runner, also after `kill -9` of the runner.

The SDK starts the command itself (mcp/client/stdio.py, in a new session and without a
`preexec_fn`), so the command is started through this module: `python -m runner.upstreams.orphan
CMD ARGS...` asks Linux to SIGKILL it when its parent dies (prctl PR_SET_PDEATHSIG, kept across
exec), checks the parent did not die in between, and execs the command in its place: same PID.
Elsewhere (no prctl) it only execs, and the upstream ends when its stdin closes, as MCP servers do.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def guarded(command: list[str]) -> list[str]:
    """`command`, started so that it dies with this process."""
    return [sys.executable, "-m", "runner.upstreams.orphan", str(os.getpid()), *command]


def main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the runner died before prctl took effect
            sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
