"""Take stale user modules out of `sys.modules` for one rebuild, and put everything back if it fails.

The old module objects are never modified: the rebuild imports new ones next to
them, so requests still running on the old code finish on it unchanged, and a
rollback only has to put the old objects back in `sys.modules`. The one
exception is a parent package that is not the user's (a namespace shared with
installed code): the stale submodule's attribute is taken off it, or
`from parent import child` would find the old module there, and restored on
rollback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from runner.manifest.errors import Location, ManifestError, Problem
from runner.reload.freshness import Fingerprint, fingerprint, is_stale, remember
from runner.reload.graph import closure
from runner.reload.locations import is_user_path
from runner.reload.modules import module_file, user_modules


@dataclass
class Purge:
    root: Path
    since_ns: int  # when this rebuild began: modules it imports are fingerprinted against it
    before: dict[str, ModuleType]  # sys.modules as it was
    files: dict[Path, Fingerprint | None] = field(default_factory=dict)  # user files before the build
    removed: dict[str, ModuleType] = field(default_factory=dict)  # original modules taken out, restored on rollback
    kept: dict[str, tuple[ModuleType, dict[str, ModuleType]]] = field(default_factory=dict)  # parents' submodule attrs
    packages: set[str] = field(default_factory=set)  # packages taken out: their new objects need `reattach`

    @classmethod
    def stale(cls, root: Path, dirty: set[Path]) -> Purge:
        """Take out every stale user module and everything that may hold a name from one (see `closure`)."""
        purge = cls(root=root.resolve(), since_ns=time.time_ns(), before=dict(sys.modules))
        loaded = user_modules(root)
        purge.files = {path: fingerprint(path) for path in set(loaded.values())}
        stale = {
            name
            for name, path in loaded.items()
            if path in dirty or is_stale(sys.modules[name], path, purge.files[path])
        }
        for name in stale:
            _drop_bytecode(loaded[name])
        purge._take(closure(stale, loaded))
        importlib.invalidate_caches()
        return purge

    def widen(self) -> None:
        """Take out every user module, the ones this rebuild imported included."""
        self._take(set(user_modules(self.root)))
        importlib.invalidate_caches()

    def _take(self, names: set[str]) -> None:
        for name in sorted(names):
            module = sys.modules.pop(name, None)
            if module is None:
                continue
            if self.before.get(name) is module:
                self.removed[name] = module
            if hasattr(module, "__path__"):
                self.packages.add(name)
            self._detach(name, module)
        for name in user_modules(self.root):
            if hasattr(sys.modules[name], "__path__"):
                self._snapshot(name, sys.modules[name])

    def _detach(self, name: str, module: ModuleType) -> None:
        """Up the chain of parents: a namespace package of the user's goes too; any other loses the attribute."""
        parent_name, _, child = name.rpartition(".")
        parent = sys.modules.get(parent_name) if parent_name else None
        if parent is None:
            return
        if getattr(parent, "__file__", None) is None and self._only_ours(parent):
            self._take({parent_name})
        elif parent.__dict__.get(child) is module:
            self._snapshot(parent_name, parent)
            delattr(parent, child)

    def _only_ours(self, package: ModuleType) -> bool:
        paths = [os.path.realpath(p) for p in getattr(package, "__path__", ())]
        return bool(paths) and all(is_user_path(p, str(self.root)) for p in paths)

    def _snapshot(self, name: str, module: ModuleType) -> None:
        if name not in self.kept and self.before.get(name) is module:
            self.kept[name] = (module, {k: v for k, v in vars(module).items() if isinstance(v, ModuleType)})

    def reload_rest(self) -> None:
        """Import again what was loaded before and the build did not need, so nothing is left half-gone.

        A module a tool imports at call time must fail now, not on a later call, if its edit is broken.
        """
        self.reattach()
        problems: list[Problem] = []
        for name, module in sorted(self.removed.items()):
            path = module_file(module)
            if name in sys.modules or path is None or not path.exists() or name.startswith("__"):
                continue  # back already, a namespace package (comes back with its children), or deleted
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:
                    problems.append(self._problem(name, exc))
            except Exception as exc:
                problems.append(self._problem(name, exc))
        self.reattach()
        if problems:
            raise ManifestError(problems)

    def reattach(self) -> None:
        """Give a re-imported package the attributes of its submodules that were kept.

        The import system sets `package.child` only when it loads the child; a child kept
        in `sys.modules` (unchanged, with its state) would be missing from the package's new
        object, and `import package.child; package.child.f()` would fail.
        """
        if not self.packages:
            return  # no package was imported again: every kept submodule's parent is the one it had
        for name in user_modules(self.root):
            parent_name, _, child = name.rpartition(".")
            parent = sys.modules.get(parent_name) if parent_name else None
            if parent is not None and self.before.get(parent_name) is not parent and child not in vars(parent):
                setattr(parent, child, sys.modules[name])

    def _problem(self, name: str, exc: Exception) -> Problem:
        if isinstance(exc, SyntaxError) and exc.filename:
            where = Location(self._relative(exc.filename), exc.lineno or 1, exc.offset or 1)
            return Problem(where, f"syntax error in module {name!r}: {exc.msg}")
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if self._is_ours(f.filename)]
        if frames:
            where = Location(self._relative(frames[-1].filename), frames[-1].lineno or 1, 1)
        else:
            where = Location(self._relative(str(module_file(self.removed[name]))), 1, 1)
        message = f"importing {name!r} again (it was loaded before this reload) raised {type(exc).__name__}: {exc}"
        return Problem(where, message)

    def _is_ours(self, filename: str) -> bool:
        return not filename.startswith("<") and is_user_path(os.path.realpath(filename), str(self.root))

    def _relative(self, filename: str) -> str:
        path = Path(filename).resolve()
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else filename

    def commit(self) -> None:
        """The rebuild is being served: fingerprint the modules it imported."""
        loaded = user_modules(self.root)
        remember({sys.modules[name]: path for name, path in loaded.items()}, self.files, self.since_ns)

    def rollback(self) -> None:
        """Forget whatever the failed rebuild imported from the user's folder, and restore the old modules exactly."""
        ours = set(user_modules(self.root))
        for name in list(sys.modules):
            module = sys.modules[name]
            if self.before.get(name) is module:
                continue
            if name in ours or (getattr(module, "__file__", None) is None and self._only_ours(module)):
                del sys.modules[name]
        sys.modules.update(self.removed)
        for module, attributes in self.kept.values():
            for key, value in list(vars(module).items()):
                if isinstance(value, ModuleType) and key not in attributes:
                    delattr(module, key)
            for key, value in attributes.items():
                setattr(module, key, value)


def _drop_bytecode(path: Path) -> None:
    """A same-size edit within the same second would otherwise be served from the stale .pyc."""
    try:
        os.remove(importlib.util.cache_from_source(str(path)))
    except (OSError, ValueError, NotImplementedError):
        pass
