"""Which user modules a reload imports again: the changed ones and every module that may hold a name from them.

Nothing else is re-imported: an unchanged module keeps its module object and
so its state (a module-level dict of notes, a connection, a cache), even when a
sibling in its package was edited. Re-importing a whole package for one edited
file threw that state away while the log said "no visible change".

Who may hold a name from module M is the reverse import graph, built from two
sources, because each alone misses cases the other sees:

- The import statements of every module's source (`imports_of`, read at module
  level and in class bodies, not in functions). They see what a module took
  from M even when nothing of M is left in its globals: `from .store import
  LIMIT` binds a plain int that no inspection can trace back to `store`, and a
  value computed at import time from M's names is as stale as the name itself.
  They over-approximate (an import in an untaken branch counts), which only
  costs a re-import.
- What every module actually holds now: each global, and the items of container
  globals, traced to the module that defined it (a module object, a function's
  globals, a class's or an instance's class's `__module__`). This sees names
  that arrived without an import statement: `importlib.import_module`, a
  registry filled by another module, a helper that imported on the caller's
  behalf.

Recording imports while they run (wrapping `__import__`) was rejected: it
slows every import statement of every library for the process's lifetime,
misses `importlib.import_module`, and sees nothing for modules imported before
it was installed. Modules whose source imports by computed names (importlib,
`__import__`, `sys.modules`, exec, eval) are re-imported on every reload, as
before. Whatever both miss is caught after the build by
runner/reload/references.py, which then re-imports every user module.
"""

from __future__ import annotations

import functools
import sys
import types
from pathlib import Path
from typing import Any

from runner.reload.modules import imports_of
from runner.reload.references import members

_CONTAINER_ITEMS = 1_000  # how far into one container global it looks for names of other modules


def closure(stale: set[str], loaded: dict[str, Path]) -> set[str]:
    """`stale` plus, transitively, every loaded user module that imports or holds a name from one of them,
    plus the modules that import dynamically (and their importers)."""
    importers: dict[str, set[str]] = {}
    dynamic: set[str] = set()
    for name, path in loaded.items():
        imports = imports_of(name, path)
        if imports.dynamic:
            dynamic.add(name)
        for imported in imports.names:
            importers.setdefault(imported, set()).add(name)
        module = sys.modules.get(name)
        for origin in held_origins(module, loaded) if module is not None else ():
            if origin != name:
                importers.setdefault(origin, set()).add(name)
    result: set[str] = set()
    todo = [*stale, *dynamic]
    while todo:
        name = todo.pop()
        if name in result:
            continue
        result.add(name)
        todo.extend(importers.get(name, ()))
    return result


def held_origins(module: types.ModuleType, loaded: dict[str, Path]) -> set[str]:
    """The user modules (names in `loaded`) that `module`'s globals hold something from."""
    found: set[str] = set()
    namespace = vars(module)
    for key, value in list(namespace.items()):
        if type(value) is types.FunctionType and value.__globals__ is namespace:
            continue  # its own function, the common case: a module of 100 tools holds 100 of them
        submodule = isinstance(value, types.ModuleType) and value.__name__ == f"{module.__name__}.{key}"
        if key.startswith("__") or submodule:
            continue  # a package's attribute for its submodule: the import system sets it anew (purge.py)
        for member in members(value, _CONTAINER_ITEMS):
            origin = _origin(member)
            if origin is not None and origin in loaded:
                found.add(origin)
    return found


def _origin(obj: Any) -> str | None:
    """The name of the module that defined `obj` (for a plain value: its class's module)."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    elif isinstance(obj, functools.partial):
        obj = obj.func
    if isinstance(obj, types.FunctionType):
        name = obj.__globals__.get("__name__")
        return name if isinstance(name, str) else None
    cls = obj if isinstance(obj, type) else type(obj)
    name = getattr(cls, "__module__", None)
    return name if isinstance(name, str) else None
