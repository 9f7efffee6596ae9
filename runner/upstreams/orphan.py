"""A stdio upstream, and every process it starts, never outlives its connection or the runner, also after `kill -9`.

The command is started through this guard: `python -m runner.upstreams.orphan RUNNER_PID CMD ARGS...`.
The guard leads its own process group (runner/upstreams/stdio.py starts it in a new session), asks
Linux to signal it when the runner dies (prctl PR_SET_PDEATHSIG, with SIGTERM so that it can act),
and starts the command as its child, which inherits stdin, stdout and stderr and the group. Then:

- the command exits (on its own, after its stdin closed, or killed): the guard SIGKILLs the whole group,
  so what the command started (`npx` -> node, `uvx` -> python, a browser) ends with it;
- the guard gets SIGTERM, SIGHUP or SIGINT (the runner stopping the upstream, or the runner died): the same.

What still escapes: a process that leaves the group itself (calls setsid() or setpgid()), as daemons do;
only a cgroup or a PID namespace bounds that. Elsewhere than Linux there is no prctl: the group is still
killed when the command exits or the guard is stopped, but not when the runner is killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1


def guarded(command: list[str]) -> list[str]:
    """`command`, started so that it and its whole process group die with its connection and this process."""
    return [sys.executable, "-m", "runner.upstreams.orphan", str(os.getpid()), *command]


def _kill_group(*_: object) -> None:
    """SIGKILL to this guard's process group: the command, what it started, and the guard itself."""
    os.killpg(os.getpgrp(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    parent, command = int(argv[0]), argv[1:]
    if os.getpgrp() != os.getpid():  # started without a new session (by hand): lead a group of its own
        os.setsid()
    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(number, _stop)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the runner died before prctl took effect
        return 1
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        print(f"cannot start {command[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    child.wait()
    _kill_group()
    return 0  # not reached: the guard is in its group


def _stop(number: int, frame: FrameType | None) -> None:
    _kill_group()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
