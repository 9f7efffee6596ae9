"""Which loaded modules are the user's code, wherever their files live; and which of those no reload can replace.

The user's code is everything the manifest's code loads that is not Python's
standard library, an installed package, or mcp-runner itself: the manifest's
folder, but just as well a shared `lib/` on PYTHONPATH, a `src/` layout, or the
target of a symlink (paths are compared after resolving links). Every such `.py`
module is watched and reloaded alike; a module whose folder is not watched
would keep running its old code after an edit while a reload said `ok`.

"Installed" is decided by location, not by the whole of `sys.prefix`: a system
Python's prefix is `/usr`, and a project in `/usr/src/app` is still the user's.
So the excluded places are the standard library folders, the site-packages
folders (of the venv, of the base interpreter, the user's), the venv itself, any
`site-packages`/`dist-packages` folder, and the mcp-runner package.

A user module that is not a plain `.py` file (imported from a zip archive, a
C extension, a `.pyc` without source) cannot be re-imported in place:
`unreloadable` names them, for the start-up block and /healthz (runner/reload/unwatched.py).
"""

from __future__ import annotations

import functools
import os
import site
import sys
import sysconfig
import zipimport
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import runner

# Folder names that hold installed (or generated) code, wherever they appear.
SKIP_PARTS = frozenset({".venv", "venv", "site-packages", "dist-packages", "__pycache__", ".mcp-runner"})


@functools.lru_cache(maxsize=1)
def runner_root() -> str:
    """The mcp-runner package's real folder, ending in a separator."""
    return os.path.realpath(os.path.dirname(os.path.abspath(runner.__file__))) + os.sep


@functools.lru_cache(maxsize=1)
def system_roots() -> tuple[str, ...]:
    """Real paths (each ending in a separator) under which no module is the user's."""
    roots: set[str] = {os.path.dirname(os.path.abspath(runner.__file__))}
    for values in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=values)
        roots.update(paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths)
    roots.update(getattr(site, "getsitepackages", list)())
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if isinstance(user_site, str):
        roots.add(user_site)
    if sys.prefix != sys.base_prefix:  # a venv: everything in it was installed
        roots.update({sys.prefix, sys.exec_prefix})
    return tuple(sorted({os.path.realpath(root).rstrip(os.sep) + os.sep for root in roots if root}))


def is_user_path(real: str, folder: str) -> bool:
    """Is the file at real path `real` user code, for a manifest in (real) `folder`?

    Under the manifest's folder: yes unless inside a venv, site-packages or cache folder
    there (as before). Elsewhere: yes unless in a system root or such a folder.
    """
    if real.startswith(runner_root()):  # never the runner's own code, even in a manifest's folder (a checkout)
        return False
    base = folder.rstrip(os.sep) + os.sep
    if real.startswith(base):
        return not SKIP_PARTS.intersection(Path(real[len(base) :]).parts)
    if real.startswith(system_roots()):
        return False
    return not SKIP_PARTS.intersection(Path(real).parts)


class Unreloadable(NamedTuple):
    kind: str  # what it is, for /healthz (no path: the probe answers without auth)
    file: str  # the file it was loaded from: the archive for a zip import


def unreloadable(module: ModuleType, folder: str) -> Unreloadable | None:
    """Why `module` is user code no reload can replace, or None (also for a module with no file at all:
    built in, frozen or made at run time, it cannot be told apart from the interpreter's own)."""
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return None
    loader = getattr(getattr(module, "__spec__", None), "loader", None) or getattr(module, "__loader__", None)
    if isinstance(loader, zipimport.zipimporter):
        archive = str(getattr(loader, "archive", file))
        return Unreloadable("imported from a zip archive", archive) if _user(archive, folder) else None
    if file.endswith(".py") or not _user(file, folder):
        return None
    return Unreloadable("bytecode without source" if file.endswith(".pyc") else "a compiled extension", file)


@functools.lru_cache(maxsize=4096)
def _user(file: str, folder: str) -> bool:
    try:
        return is_user_path(os.path.realpath(file), os.path.realpath(folder))
    except (OSError, ValueError):
        return False
