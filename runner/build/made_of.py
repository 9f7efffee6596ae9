"""The user code a served function is made of, as one digest of source files: what a round pin compares.

A multi-round call must fail when the tool changed between its rounds (runner/build/rounds.py).
A function's behaviour does not live in its own bytecode alone: it reads module globals
(`ACTION = "booked a table"`), calls helpers from other modules, and builds pydantic models
the user answers into. So "the tool" is, conservatively, the source of every user module that:

- defines the function, one of its resolvers (transitively), or a class named in their
  annotations (a pydantic model's field types included);
- is imported, at module level, by one of those modules, transitively (the same reading of
  import statements the reload graph uses: runner/reload/modules.py). A module whose source
  imports by computed names (importlib, exec, `sys.modules`...) pulls in every loaded user module.

Installed packages and the standard library are not the user's code and do not count; an
edit to a user module outside that set (one the tool does not import) leaves the digest alone.

The digest is of file bytes, sorted by module name: the same in every process and replica that
has the same files. A module's file is read once per module object, when a build first asks
(runner/build/server.py asks right after importing), so it is the content that was just imported;
a module whose file cannot be read gets a per-process random part: it matches nothing elsewhere,
and fails the round closed.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import secrets
import sys
import types
import typing
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from mcp.server.mcpserver.resolve import find_resolved_parameters

from runner.reload.locations import is_user_path
from runner.reload.modules import imports_of, module_file

UNREADABLE = secrets.token_hex(16)  # this process's part for a file it could not read: never equal elsewhere
_sources: weakref.WeakKeyDictionary[types.ModuleType, str] = weakref.WeakKeyDictionary()


def functions_of(fn: Callable[..., Any]) -> list[Callable[..., Any]]:
    """`fn` and every resolver it depends on, transitively (each once)."""
    found: list[Callable[..., Any]] = []
    todo = [fn]
    while todo:
        function = todo.pop()
        if any(function is known for known in found):
            continue
        found.append(function)
        try:
            resolved = find_resolved_parameters(function)
        except Exception:  # the SDK reports a bad signature when it registers the function
            continue
        todo.extend(marker.fn for marker, _ in resolved.values())
    return found


def source_digest(fn: Callable[..., Any]) -> str:
    """The digest of the user modules `fn` (with its resolvers) is made of: see the module docstring."""
    functions = functions_of(fn)
    seeds: set[str] = set()
    for function in functions:
        seeds.add(_module_name(function))
        for kind in _annotated_types(function):
            seeds.add(kind.__module__)
    own = sys.modules.get(_module_name(fn))
    own_file = module_file(own) if own is not None else None
    folder = str(own_file.parent) if own_file is not None else os.getcwd()
    modules = _closure(seeds, folder)
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(f"{name}\0{_source(modules[name])}\0".encode())
    return digest.hexdigest()


def _module_name(function: Callable[..., Any]) -> str:
    unwrapped = inspect.unwrap(function)
    name = getattr(unwrapped, "__module__", None)
    return name if isinstance(name, str) else type(unwrapped).__module__


def _annotated_types(function: Callable[..., Any]) -> list[type]:
    """The classes named in `function`'s annotations, inside generics and `Annotated`, and in their model fields."""
    try:
        hints: Iterable[Any] = typing.get_type_hints(inspect.unwrap(function), include_extras=True).values()
    except Exception:  # an unresolvable forward reference: the raw annotations, as written
        hints = getattr(inspect.unwrap(function), "__annotations__", {}).values()
    found: list[type] = []
    todo = list(hints)
    seen: set[int] = set()
    while todo:
        hint = todo.pop()
        if id(hint) in seen:
            continue
        seen.add(id(hint))
        todo.extend(typing.get_args(hint))
        origin = typing.get_origin(hint)
        if origin is not None:
            todo.append(origin)
        if isinstance(hint, type):
            found.append(hint)
            fields = getattr(hint, "model_fields", None)  # a pydantic model: what its fields are made of
            if isinstance(fields, dict):
                todo.extend(getattr(field, "annotation", None) for field in fields.values())
    return found


def _closure(seeds: set[str], folder: str) -> dict[str, types.ModuleType]:
    """The user modules among `seeds`, and those they import at module level, transitively."""
    found: dict[str, types.ModuleType] = {}
    todo = list(seeds)
    everything = False
    while todo:
        name = todo.pop()
        module = sys.modules.get(name)
        if name in found or module is None:
            continue
        path = module_file(module)
        if path is None or not is_user_path(str(path), folder):
            continue
        found[name] = module
        imports = imports_of(name, path)
        todo.extend(imports.names)
        if imports.dynamic and not everything:
            everything = True
            todo.extend(list(sys.modules))  # it may import any of them: each user module counts
    return found


def _source(module: types.ModuleType) -> str:
    """The sha256 of the module's file, read once per module object."""
    known = _sources.get(module)
    if known is None:
        path = module_file(module)
        try:
            known = hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else UNREADABLE
        except OSError:
            known = UNREADABLE
        _sources[module] = known
    return known
