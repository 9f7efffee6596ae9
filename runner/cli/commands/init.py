"""`mcp-runner init [DIR]`: write a starter that `mcp-runner serve` serves at once.

All or nothing: if any file the starter needs already exists, nothing is written and
every such file is named. Each file is created with O_EXCL, so a file that appears
between the check and the write is not overwritten either; what was written by then
is removed again.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
from pathlib import Path

from runner.cli.commands import starter
from runner.cli.commands.exits import EXIT_REFUSED
from runner.cli.commands.install import runner_command


def init(folder: Path) -> int:
    name = folder.resolve().name or "mcp-server"
    planned = {folder / file: text for file, text in starter.files(name).items()}
    existing = [path for path in planned if path.exists() or path.is_symlink()]
    if existing:
        for path in existing:
            print(f"mcp-runner: {path} already exists", file=sys.stderr)
        print("mcp-runner: init wrote nothing (it never overwrites a file); choose another folder", file=sys.stderr)
        return EXIT_REFUSED
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"mcp-runner: cannot create {folder}: {exc.strerror}", file=sys.stderr)
        return EXIT_REFUSED
    written: list[Path] = []
    try:
        for path, text in planned.items():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            written.append(path)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
    except OSError as exc:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        print(f"mcp-runner: cannot write {exc.filename}: {exc.strerror}; init wrote nothing", file=sys.stderr)
        return EXIT_REFUSED
    here = folder.resolve() == Path.cwd()
    where = "" if here else f"cd {shlex.quote(str(folder))} && "
    runner = _command(runner_command(), folder.resolve())
    python = _command([sys.executable], folder.resolve())
    print(f"mcp-runner: wrote {', '.join(str(p) for p in planned)}")
    print(f"  serve it:  {where}{runner} serve")
    print(f"  test it:   {where}{python} {starter.TEST}   (pytest runs it too, where pytest is installed)")
    print(f"  call it:   {where}{runner} call add --arg a=2 --arg b=3   (while it serves)")
    return 0


def _command(argv: list[str], folder: Path) -> str:
    """How to run `argv` from `folder`, as typed, so that the printed lines work as pasted: the bare name when
    the shell finds that very file by it (an activated venv), else its path (the README's venv is not on PATH),
    relative when the venv and the folder are both under the current directory."""
    if len(argv) > 1:
        return " ".join(shlex.quote(part) for part in argv)
    program, here = Path(argv[0]), Path.cwd()
    found = shutil.which(program.name)
    # abspath, not realpath: a venv's python is a symlink to one the shell may find outside the venv.
    if found is not None and os.path.abspath(found) == os.path.abspath(program):
        return program.name
    if program.is_relative_to(here) and folder.is_relative_to(here):
        return shlex.quote(os.path.relpath(program, folder))
    return shlex.quote(str(program))
