"""User modules no reload can replace: named at start-up and by /healthz, and never reported as reloaded.

A module imported from a zip archive, a compiled extension or a `.pyc` without
source (runner/reload/locations.py) keeps its first code until the process
restarts. Saying so is the only honest thing a reloader can do: the start-up
block lists them, /healthz reports `unwatched` while they are loaded (a plain
`ok` would promise that every edit is served), and once the file one of them
was loaded from changes, /healthz says `stale` and a reload's result is
`stale` with their names, never `ok`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from runner.reload.freshness import Fingerprint, fingerprint
from runner.reload.locations import Unreloadable, unreloadable


@dataclass
class Unwatched:
    folder: Path  # the manifest's folder
    modules: dict[str, Unreloadable] = field(default_factory=dict)
    loaded: dict[str, Fingerprint | None] = field(default_factory=dict)  # file -> as it was when first seen
    # name -> (id of the module object looked at, what it is): a reload looks only at modules loaded since.
    # By id, not by a reference (that would keep replaced modules alive) nor a weak one (not every
    # object in sys.modules takes one). An id reused after a module is freed is a re-imported `.py`
    # module's under the same name: reloadable either way.
    checked: dict[str, tuple[int, Unreloadable | None]] = field(default_factory=dict)

    def scan(self) -> None:
        """Take note of the unreloadable modules loaded now (after the start-up build, after every reload)."""
        folder = str(self.folder.resolve())
        self.modules = {}
        for name, module in list(sys.modules.items()):
            if not isinstance(module, ModuleType):
                continue
            seen = self.checked.get(name)
            if seen is None or seen[0] != id(module):
                seen = self.checked[name] = (id(module), unreloadable(module, folder))
            found = seen[1]
            if found is not None:
                self.modules[name] = found
        for found in self.modules.values():
            if found.file not in self.loaded:
                self.loaded[found.file] = fingerprint(Path(found.file))

    def stale(self) -> list[str]:
        """The modules whose file changed since they were loaded: their edits are not being served."""
        changed = {
            file for file in {m.file for m in self.modules.values()} if fingerprint(Path(file)) != self.loaded[file]
        }
        return sorted(name for name, found in self.modules.items() if found.file in changed)

    def public(self) -> dict[str, str]:
        """For /healthz: module name -> kind, no paths."""
        return {name: found.kind for name, found in sorted(self.modules.items())}

    def banner(self) -> list[str]:
        """The start-up block's lines (stderr, the operator's: paths included)."""
        return [
            f"  not reloadable: {name} ({found.kind}: {found.file}); restart to run an edit of it"
            for name, found in sorted(self.modules.items())
        ]


def unwatched_lines(folder: Path) -> list[str]:
    """The start-up block's lines for the unreloadable modules loaded now."""
    unwatched = Unwatched(folder)
    unwatched.scan()
    return unwatched.banner()
