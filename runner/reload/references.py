"""After a rebuild: does any user module still hold a module, function, class or instance from a replaced one?

The import graph is read from source, so a name fetched some other way (an
import we could not see, a registry filled at import time) can keep pointing at
the code a reload replaced. This check looks at what actually happened: every
global of every loaded user module, and the items of containers among them, is
traced back to the module that defined it. Only modules this reload took out
count as old, so a module loaded outside `sys.modules` on purpose is not
mistaken for stale.
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

from runner.errors import Location, Problem
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


def stale_references(root: Path, retired: list[types.ModuleType]) -> list[StaleReference]:
    if not retired:
        return []
    old = _Old(
        modules={id(m) for m in retired},
        namespaces={id(vars(m)): m.__name__ for m in retired},
        by_name={},
    )
    for module in retired:
        old.by_name.setdefault(module.__name__, []).append(module)
    found: list[StaleReference] = []
    for holder, path in user_modules(root).items():
        for name, value in list(vars(sys.modules[holder]).items()):
            if name.startswith("__"):
                continue
            origin = next(filter(None, map(old.origin, _members(value))), None)
            if origin is not None:
                found.append(StaleReference(holder, name, origin, path))
    return found


def _members(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        yield from itertools.islice(value.values(), _CONTAINER_ITEMS)
    elif isinstance(value, list | tuple | set | frozenset):
        yield from itertools.islice(value, _CONTAINER_ITEMS)


@dataclass
class _Old:
    modules: set[int]  # ids of the replaced module objects (alive: the purge holds them)
    namespaces: dict[int, str]  # id of a replaced module's __dict__ -> its name
    by_name: dict[str, list[types.ModuleType]]

    def origin(self, obj: Any) -> str | None:
        """The replaced module `obj` comes from, if it does."""
        if isinstance(obj, types.ModuleType):
            return obj.__name__ if id(obj) in self.modules else None
        if isinstance(obj, types.MethodType):
            obj = obj.__func__
        elif isinstance(obj, functools.partial):
            obj = obj.func
        if isinstance(obj, types.FunctionType):
            return self.namespaces.get(id(obj.__globals__))
        cls = obj if isinstance(obj, type) else type(obj)
        for module in self.by_name.get(getattr(cls, "__module__", None) or "", ()):
            if _lookup(module, getattr(cls, "__qualname__", "")) is cls:
                return module.__name__
        if isinstance(obj, type):  # a class whose qualified name does not lead to it: ask its methods
            for member in vars(obj).values():
                if isinstance(member, types.FunctionType) and id(member.__globals__) in self.namespaces:
                    return self.namespaces[id(member.__globals__)]
        return None


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
