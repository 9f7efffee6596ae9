"""The runner's own dependencies stay the runner's, whatever files sit beside the manifest.

The manifest's folder goes first on `sys.path`, so that its modules win over installed ones of
the same name. The runner imports some of its dependencies lazily (PyJWT only once a manifest
has auth, Redis only with a bus): a `jwt.py` beside the manifest, even one the manifest never
names, was imported in PyJWT's place and start-up died with the runner's own traceback.

So before the folder goes on the path, every module in it that has the name of a module the
runner's process may need (the standard library, and the packages installed for the runner:
its requirements and theirs) is imported from where it is installed, once, and one line says
so. Code in the folder that imports that name gets the installed module too: rename the file
to use it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import re
import sys
from functools import cache
from pathlib import Path

logger = logging.getLogger("runner.build")

DISTRIBUTION = "mcp-runner"
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def protect(folder: Path) -> list[str]:
    """Import the installed modules the folder's own would shadow; the names protected, each logged once."""
    candidates = sorted(_module_names(folder) - set(sys.modules))
    if not candidates:
        return []
    needed = set(sys.stdlib_module_names) | _dependency_modules()
    shadowed = [name for name in candidates if name in needed]
    if not shadowed:
        return []
    saved = list(sys.path)
    resolved = folder.resolve()
    sys.path[:] = [entry for entry in saved if _resolved(entry) != resolved]
    protected = []
    try:
        for name in shadowed:
            try:
                importlib.import_module(name)
            except Exception:  # not importable here anyway: nothing of the runner's to protect
                continue
            protected.append(name)
            logger.warning(
                "%s beside the manifest has the name of the installed module %r, which the runner may need: "
                "the runner imports the installed one, and so does code that imports %r; rename the file to use it",
                name,
                name,
                name,
            )
    finally:
        sys.path[:] = saved
    return protected


def _module_names(folder: Path) -> set[str]:
    """Top-level module names the folder provides: `name.py`, packages, extension modules."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return set()
    names = set()
    for entry in entries:
        if entry.suffix == ".py" and entry.is_file():
            names.add(entry.stem)
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            names.add(entry.name)
    return {name for name in names if name.isidentifier()}


def _resolved(entry: str) -> Path | None:
    try:
        return Path(entry or ".").resolve()
    except OSError:
        return None


@cache
def _dependency_modules() -> set[str]:
    """Top-level module names of the runner's installed requirements, and theirs (extras they ask for included)."""
    modules: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(DISTRIBUTION, frozenset())]
    while todo:
        name, extras = todo.pop()
        key = (name.lower().replace("_", "-"), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        modules.update(_top_level(dist))
        for requirement in dist.requires or []:
            extra = _EXTRA.search(requirement)
            if extra and extra.group(1) not in extras:  # an optional extra nobody asked for (test tools...)
                continue
            match = _REQUIREMENT.match(requirement)
            if match:
                wanted = frozenset(e.strip() for e in (match.group(2) or "").split(",") if e.strip())
                todo.append((match.group(1), wanted))
    return modules


def _top_level(dist: importlib.metadata.Distribution) -> set[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return {line.strip() for line in text.splitlines() if line.strip()}
    names = set()
    for file in dist.files or []:
        top = file.parts[0] if file.parts else ""
        if top.endswith(".py"):
            names.add(top[:-3])
        elif top.isidentifier() and top != "__pycache__":  # a package folder, not `x.dist-info` or `..`
            names.add(top)
    return names
