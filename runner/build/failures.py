"""One failure, one problem: a module that fails for nine manifest entries is reported once.

Importing is per module, not per entry, so a syntax error in a module that nine
tools come from is one problem. It is reported at its own place (the module's
`file:line:col`, like a compiler), naming the manifest entries that need it once.
Any other identical resolve failure (an import that raises, a missing module, a
missing attribute named twice) is merged the same way, at the first entry that
hit it. `check`, `serve`, the reload log and `/healthz` all print this one list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runner.build.resolve import ResolveError
from runner.manifest.errors import Location, Problem
from runner.manifest.source import Source


@dataclass
class _Failure:
    error: ResolveError
    # (section, index, what the entry is, the key under the entry that named the module)
    users: list[tuple[str, int, str, tuple[str, ...]]] = field(default_factory=list)


@dataclass
class ResolveFailures:
    source: Source
    root: Path
    _by_key: dict[tuple[object, ...], _Failure] = field(default_factory=dict)
    _modules: dict[str, ResolveError] = field(default_factory=dict)

    def known(self, module: str) -> ResolveError | None:
        """The failure of a module that already failed in this build: not imported (and run) again."""
        return self._modules.get(module)

    def add(
        self, section: str, index: int, what: str, error: ResolveError, key: tuple[str, ...] = ("function",)
    ) -> None:
        if error.module:
            self._modules[error.module] = error
        failure = self._by_key.setdefault(error.key, _Failure(error))
        failure.users.append((section, index, what, key))

    def problems(self) -> list[Problem]:
        for failure in self._by_key.values():
            failure.users.sort(key=lambda user: self._line(user[0], user[1], user[3]))
        return [self._problem(f) for f in self._by_key.values()]

    def _problem(self, failure: _Failure) -> Problem:
        error = failure.error
        manifest = self.source.file
        if error.origin is not None:
            file, line, col = error.origin
            needed = ", ".join(f"{what} on line {self._line(s, i, k)}" for s, i, what, k in failure.users)
            where = Location(self._display(file), line, col)
            return Problem(where, f"{error.message} (needed by {manifest}: {needed})", error.detail)
        (section, index, _, key), *others = failure.users
        message = error.message
        if others:
            also = ", ".join(f"{what} on line {self._line(s, i, k)}" for s, i, what, k in others)
            message += f" (also needed by {also})"
        return Problem(self.source.locate((section, index, *key)), message, error.detail)

    def _line(self, section: str, index: int, key: tuple[str, ...]) -> int:
        return self.source.locate((section, index, *key)).line

    def _display(self, filename: str) -> str:
        """A module file as the user can open it: next to the manifest as they named it, else absolute."""
        try:
            relative = Path(filename).resolve().relative_to(self.root.resolve())
        except ValueError:
            return filename
        return os.path.join(os.path.dirname(self.source.file), str(relative))
