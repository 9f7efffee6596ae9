"""Which loaded modules are the user's, and what each one's source imports.

`user_modules` lists the loaded modules that are the user's code (wherever they
live: runner/reload/locations.py); `imports_of` reads a module's import
statements, for the reverse import graph a reload follows (runner/reload/graph.py).
"""

from __future__ import annotations

import ast
import functools
import os
import sys
import zipimport
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

from runner.reload.locations import is_user_path


def module_file(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    return _resolve(file)


def _resolve(file: str) -> Path | None:
    real = _real(file)
    return None if real is None else Path(real)


@functools.lru_cache(maxsize=16384)
def _real(file: str) -> str | None:
    """Cached: a reload scans every loaded module, and resolving ~1,000 paths each time cost ~40 ms.

    `realpath(folder/name)` is `realpath(folder)/name` unless `name` itself is a link, and
    ~800 loaded modules live in ~100 folders: resolving each folder once (one lstat per
    component) and each file with one lstat made the first scan, at start-up, ~8x cheaper.
    """
    try:
        absolute = os.path.abspath(file)
        if os.path.islink(absolute):
            return os.path.realpath(absolute)
        folder, name = os.path.split(absolute)
        return os.path.join(_real_folder(folder), name)
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    """Cleared at the start of every scan: a folder link re-pointed since is followed anew."""
    return os.path.realpath(folder)


def user_modules(root: Path) -> dict[str, Path]:
    """Loaded `.py` modules that are the user's code (runner/reload/locations.py): under `root`, or anywhere
    outside the standard library, installed packages and mcp-runner, by their real paths."""
    folder = str(root.resolve())
    _real_folder.cache_clear()
    found: dict[str, Path] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) if module is not None else None
        path = _user_file(file, folder) if isinstance(file, str) else None
        if path is not None and not isinstance(getattr(module, "__loader__", None), zipimport.zipimporter):
            found[name] = path
    return found


@functools.lru_cache(maxsize=16384)
def _user_file(file: str, folder: str) -> Path | None:
    """Cached: every reload scans all loaded modules several times, and pathlib's checks cost ~20 ms a scan."""
    real = _real(file) if file.endswith(".py") else None
    if real is None or not is_user_path(real, folder):
        return None
    return Path(real)


# Names whose use means a module imports by a name computed at run time: its imports cannot be read statically.
_DYNAMIC = {
    "__import__", "import_module", "exec_module", "load_module", "spec_from_file_location",
    "run_path", "run_module", "reload", "exec", "eval",
}  # fmt: skip


class Imports(NamedTuple):
    names: frozenset[str]  # modules (and `module.attribute`s) imported at import time, relative imports resolved
    dynamic: bool  # it also imports by computed names (or via sys.modules), which we cannot see


def imports_of(name: str, path: Path) -> Imports:
    """What `name`'s source imports; a missing file imports nothing."""
    try:
        stat = path.stat()
    except OSError:
        return Imports(frozenset(), False)
    return _imports_of(name, path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _imports_of(name: str, path: Path, mtime_ns: int, size: int) -> Imports:
    """Cached by the file's mtime and size: a reload re-reads only the files that changed."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return Imports(frozenset(), False)
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
    # Anywhere, function bodies included: a helper called at import time may do the importing.
    dynamic = any(_imports_dynamically(node) for node in ast.walk(tree))
    return Imports(frozenset(names), dynamic)


def _imports_dynamically(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _DYNAMIC
    if isinstance(node, ast.Attribute):
        return node.attr in _DYNAMIC or (node.attr == "modules" and _is_name(node.value, "sys"))
    return False


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name
