"""The `.mcp-runner/` folder next to a manifest: the local issuer's private key and the running servers' records.

Why one function creates it: the folder holds a private key, and a developer's
`git add .` in the manifest's folder must not commit it. Wherever the folder is
first made (the local issuer, or a `serve` recording where it listens), it gets
mode 0700 and a `.gitignore` of `*`, as tools that keep state in a project
folder do (`.pytest_cache/`, `.mypy_cache/`, `.ruff_cache/`).
"""

from __future__ import annotations

from pathlib import Path

from runner.auth.defaults import STATE_DIR

IGNORE_ALL = "# Written by mcp-runner: a private key and running servers' records, never to be committed.\n*\n"


def state_folder(manifest_dir: Path) -> Path:
    """`manifest_dir/.mcp-runner`, created (0700, with its `.gitignore`) if missing."""
    folder = manifest_dir / STATE_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():  # a user's own edit of it is theirs to keep
        ignore.write_text(IGNORE_ALL)
    return folder
