"""Resolve `module:attribute` references to callables, relative to the manifest's folder.

Import failures come back as ResolveError with a one-line reason and the
user's own traceback frames (never the runner's or importlib's), so the CLI
can print them under the manifest line that named the module.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from runner.build import shadows
from runner.words import article


class Abort(BaseException):
    """Raised into an import from outside: Ctrl-C during `check`, or a reload past its deadline.

    Never the user's failure, so `import_module` lets it through instead of reporting it.
    """


@contextlib.contextmanager
def ctrl_c_aborts() -> Iterator[None]:
    """While importing the user's modules in the main thread, Ctrl-C raises Abort, not KeyboardInterrupt.

    So a real Ctrl-C still stops `check` or a start-up, while a module that raises
    KeyboardInterrupt itself is reported as that module's problem.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise Abort("interrupted")

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class ResolveError(Exception):
    """Why a reference does not resolve.

    `module` is set when importing that module failed (so a build need not import it
    again for the next entry), and `origin` (file, line, col) when the problem has a
    place of its own in the user's code, as a syntax error does.
    """

    def __init__(
        self, message: str, detail: str = "", *, module: str = "", origin: tuple[str, int, int] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.module = module
        self.origin = origin

    @property
    def key(self) -> tuple[object, ...]:
        """Equal for the same problem, whichever entry ran into it."""
        return (self.origin, self.message) if self.origin else (self.message, self.detail)


_protected: set[str] = set()  # folders whose would-be shadows of the runner's dependencies were dealt with


def ensure_on_path(root: Path) -> None:
    """Make modules next to the manifest importable, ahead of anything installed, except the runner's own
    dependencies: those are imported first, from where they are installed (runner/build/shadows.py)."""
    folder = str(root)
    if folder not in _protected:
        _protected.add(folder)
        shadows.protect(root)
    if folder not in sys.path:
        sys.path.insert(0, folder)


def resolve(ref: str, root: Path) -> Callable[..., Any]:
    module_name, _, attr_path = ref.partition(":")
    ensure_on_path(root)
    try:
        module = import_module(module_name, root)
    except ResolveError as exc:
        if module_name.endswith(".py") and exc.message.startswith("cannot import module"):
            # `tools.py:add`: a file name where a module name goes.
            fixed = f"{module_name.removesuffix('.py')}:{attr_path}"
            raise ResolveError(
                f"{exc.message}; a module is named without .py: write {fixed}", module=module_name
            ) from None
        raise
    target: Any = module
    walked = module_name
    for attr in attr_path.split("."):
        if not hasattr(target, attr):
            names = sorted(n for n in dir(target) if not n.startswith("_"))
            hint = _close(attr, names)
            raise ResolveError(f"{walked!r} has no attribute {attr!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
        target = getattr(target, attr)
        walked = f"{walked}.{attr}" if walked != module_name else f"{module_name}:{attr}"
    if not callable(target):
        raise ResolveError(f"{ref!r} is {article(type(target).__name__)}, not a callable")
    return target  # type: ignore[no-any-return]


def import_module(name: str, root: Path) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            message = f"cannot import module {name!r}: no module named {exc.name!r} (looked in {root})"
            raise ResolveError(message, module=name) from None
        raise ResolveError(f"importing {name!r} failed: {exc}", user_traceback(exc, root), module=name) from None
    except SyntaxError as exc:
        if not exc.filename or exc.lineno is None:
            raise ResolveError(f"syntax error in module {name!r}: {exc.msg}", module=name) from None
        # The module's own file:line:col, like a compiler; the entries needing it are named by the caller.
        origin = (exc.filename, exc.lineno, exc.offset or 1)
        raise ResolveError(f"syntax error: {exc.msg}", _caret(exc), module=name, origin=origin) from None
    except Abort:
        raise
    except BaseException as exc:
        # Anything a module raises at import is a problem with that module, of any class:
        # SystemExit (even exit code 0), KeyboardInterrupt, GeneratorExit, a bare BaseException.
        raise ResolveError(
            f"importing {name!r} raised {_describe(exc)}", user_traceback(exc, root), module=name
        ) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit (sys.exit({exc.code!r}) at import)"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _caret(exc: SyntaxError) -> str:
    """The offending line with a caret under the column, as Python and compilers show it."""
    text = (exc.text or "").rstrip("\n")
    if not text.strip():
        return ""
    code = text.lstrip()
    column = max((exc.offset or 1) - 1 - (len(text) - len(code)), 0)
    return f"{code}\n{' ' * column}^"


def user_traceback(exc: BaseException, root: Path, wrappers: Sequence[BaseException] = ()) -> str:
    """The traceback trimmed to frames in the user's own files (under the manifest folder).

    `wrappers` raised `exc` on, outermost first (runner/build/raised.py): their frames come first, so a
    crash inside a nested call (a tool reading a resource) also shows the user's frames on the way there.
    """
    raised = (*wrappers, exc)
    frames = [f for e in raised for f in traceback.extract_tb(e.__traceback__) if is_user_file(f.filename, root)]
    if not frames:
        return ""
    lines = ["Traceback (your code):"]
    for frame in frames:
        lines.append(f'  File "{relative(frame.filename, root)}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {frame.line}")
    lines.extend(traceback.format_exception_only(type(exc), exc)[-1:])
    return "\n".join(line.rstrip() for line in lines)


def is_user_file(filename: str, root: Path) -> bool:
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    try:
        path = Path(filename).resolve()
    except (OSError, ValueError):
        return False
    if not path.is_relative_to(root.resolve()):
        return False
    parts = path.relative_to(root.resolve()).parts
    return not any(p in (".venv", "venv", "site-packages") for p in parts)


def relative(filename: str, root: Path) -> str:
    try:
        return str(Path(filename).resolve().relative_to(root.resolve()))
    except ValueError:
        return filename


def _close(word: str, choices: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None
