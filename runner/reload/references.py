"""After a rebuild: does any user module still hold a module, function, class or instance from a replaced one?

The import graph is read from source, so a name fetched some other way (an
import we could not see, a registry filled at import time) can keep pointing at
the code a reload replaced. This check looks at what actually happened: every
global of every loaded user module, and the items of containers among them, is
traced back to the module that defined it, and must come from the copy of that
module that is loaded now. A copy replaced by any reload counts as old (we
cannot tell whether its code still matches the file), while a module loaded
outside `sys.modules` on purpose is left alone.
"""

from __future__ import annotations

import ast
import functools
import itertools
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.manifest.errors import Location, Problem
from runner.reload.modules import user_modules

_CONTAINER_ITEMS = 10_000  # how far into one list/dict/set it looks; bounds the check on big data globals


@dataclass(frozen=True)
class StaleReference:
    holder: str  # the user module holding it
    name: str  # the global it is held under
    origin: str  # the replaced module it comes from
    path: Path  # the holder's file

    def __str__(self) -> str:
        return f"{self.holder}.{self.name} still refers to code from the replaced module {self.origin!r}"

    def problem(self, root: Path) -> Problem:
        where = Location(str(self.path.relative_to(root)), _line_binding(self.path, self.name), 1)
        return Problem(
            where,
            f"{self} after every user module was imported again: this import pattern cannot be reloaded "
            "in place, restart the server to run the edited code",
        )


def stale_references(root: Path) -> list[StaleReference]:
    loaded = user_modules(root)
    current = _Current({name: sys.modules[name] for name in loaded})
    found: list[StaleReference] = []
    for holder, path in loaded.items():
        for name, value in list(vars(sys.modules[holder]).items()):
            if name.startswith("__"):
                continue
            origin = next(filter(None, map(current.replaced, members(value))), None)
            if origin is not None:
                found.append(StaleReference(holder, name, origin, path))
    return found


def members(value: Any, limit: int = _CONTAINER_ITEMS) -> Iterator[Any]:
    """`value`, and when it is a container global, its first `limit` items (a registry of functions, say)."""
    yield value
    if isinstance(value, dict):
        yield from itertools.islice(value.values(), limit)
    elif isinstance(value, list | tuple | set | frozenset):
        yield from itertools.islice(value, limit)


@dataclass
class _Current:
    modules: dict[str, types.ModuleType]  # the loaded user modules, by name

    def replaced(self, obj: Any) -> str | None:
        """The user module `obj` comes from, if `obj` comes from a copy of it that is no longer the loaded one."""
        if isinstance(obj, types.ModuleType):
            current = self.modules.get(obj.__name__)
            return obj.__name__ if current is not None and current is not obj else None
        if isinstance(obj, types.MethodType):
            obj = obj.__func__
        elif isinstance(obj, functools.partial):
            obj = obj.func
        if isinstance(obj, types.FunctionType):
            return self._namespace(obj.__globals__)
        cls = obj if isinstance(obj, type) else type(obj)
        name = getattr(cls, "__module__", None)
        current = self.modules.get(name) if isinstance(name, str) else None
        if current is not None:
            found = _lookup(current, getattr(cls, "__qualname__", ""))
            if found is not None:
                return None if found is cls else current.__name__
        if isinstance(obj, type):  # a class its qualified name does not lead to: ask its methods
            for member in vars(obj).values():
                if isinstance(member, types.FunctionType) and (origin := self._namespace(member.__globals__)):
                    return origin
        return None

    def _namespace(self, namespace: dict[str, Any]) -> str | None:
        """The module name, if `namespace` is the globals of a user module's copy that is no longer loaded."""
        name = namespace.get("__name__")
        current = self.modules.get(name) if isinstance(name, str) else None
        return name if current is not None and vars(current) is not namespace else None


def _lookup(module: types.ModuleType, qualname: str) -> Any:
    target: Any = module
    for part in qualname.split("."):
        try:
            target = vars(target).get(part)
        except TypeError:
            return None
        if target is None:
            return None
    return target


def _line_binding(path: Path, name: str) -> int:
    """The line of the top-level statement that binds `name` in the holder's source (1 if none does)."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return 1
    for node in tree.body:
        bound: set[str] = set()
        if isinstance(node, ast.Import | ast.ImportFrom):
            bound = {(a.asname or a.name).partition(".")[0] for a in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound = {node.name}
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        if name in bound:
            return node.lineno
    return 1
