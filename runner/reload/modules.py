"""Which loaded modules are the user's, what imports what, and fresh re-imports on reload.

A reload must run the user's edited code, not the copy in `sys.modules`. We
forget the changed modules and every user module that imports them
(transitively, from their source's import statements), let the build import
them again, and put the old ones back if the build fails, so a broken edit
leaves the process exactly as it was.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

_SKIP_PARTS = {".venv", "venv", "site-packages", "dist-packages", "__pycache__", ".mcp-runner"}


def module_file(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    return _resolve(file)


@functools.lru_cache(maxsize=16384)
def _resolve(file: str) -> Path | None:
    """Cached: a reload scans every loaded module, and resolving ~1,000 paths each time cost ~40 ms."""
    try:
        return Path(file).resolve()
    except (OSError, ValueError):
        return None


def user_modules(root: Path) -> dict[str, Path]:
    """Loaded modules whose source lives under `root` (the manifest's folder), venvs excluded."""
    root = root.resolve()
    found: dict[str, Path] = {}
    for name, module in list(sys.modules.items()):
        path = module_file(module) if module is not None else None
        if path is None or not path.is_relative_to(root):
            continue
        if _SKIP_PARTS.intersection(path.relative_to(root).parts):
            continue
        found[name] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """Module names that `name`'s source imports at import time (relative imports resolved)."""
    try:
        stat = path.stat()
    except OSError:
        return set()
    return _imports_of(name, path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _imports_of(name: str, path: Path, mtime_ns: int, size: int) -> set[str]:
    """Cached by the file's mtime and size: a reload re-reads only the files that changed."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue  # an import inside a function runs at call time and finds the fresh module itself
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parent = ".".join(parts[: len(parts) - node.level + 1]) if node.level <= len(parts) + 1 else ""
                base = f"{parent}.{base}".strip(".") if base else parent
            if base:
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return names


def dependents(changed: set[str], loaded: dict[str, Path]) -> set[str]:
    """`changed` plus every loaded user module that imports one of them, transitively."""
    if not changed:
        return set()
    importers: dict[str, set[str]] = {}
    for name, path in loaded.items():
        for imported in imports_of(name, path):
            importers.setdefault(imported, set()).add(name)
    result = set(changed)
    todo = list(changed)
    while todo:
        for importer in importers.get(todo.pop(), ()):
            if importer not in result:
                result.add(importer)
                todo.append(importer)
    return result


@dataclass
class Purge:
    """Modules taken out of `sys.modules` for one rebuild; `rollback` restores them."""

    root: Path
    removed: dict[str, ModuleType]
    before: set[str]

    @classmethod
    def for_files(cls, root: Path, changed_files: set[Path]) -> Purge:
        loaded = user_modules(root)
        changed = {name for name, path in loaded.items() if path in changed_files}
        names = dependents(changed, loaded)
        for path in changed_files:
            _drop_bytecode(path)
        removed = {name: sys.modules.pop(name) for name in names if name in sys.modules}
        importlib.invalidate_caches()
        return cls(root=root, removed=removed, before=set(sys.modules))

    def rollback(self) -> None:
        """Forget whatever the failed build imported from the user's folder, and restore the old modules."""
        for name in set(user_modules(self.root)) - self.before:
            sys.modules.pop(name, None)
        sys.modules.update(self.removed)
        for name, module in self.removed.items():
            parent, _, child = name.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, module)


def _drop_bytecode(path: Path) -> None:
    """A same-size edit within the same second would otherwise be served from the stale .pyc."""
    try:
        os.remove(importlib.util.cache_from_source(str(path)))
    except (OSError, ValueError, NotImplementedError):
        pass
