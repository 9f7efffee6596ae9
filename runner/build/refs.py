"""Every `module:function` reference of a manifest that does not resolve, found even when the manifest is invalid.

Why: `build` resolves references only for a manifest that validated, so a manifest with a
schema problem or a duplicate name (two tools both called `add` because two wrong paths end
in `:add`) hid its import problems until that was fixed: three wrong paths took three runs of
`check`. `check` adds these to the validation problems, so one run shows them all. Read from
the parsed YAML, not the model: entries that failed validation are looked at too, when their
`function` is a well-formed reference.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runner.build.failures import ResolveFailures
from runner.build.resolve import ResolveError, resolve
from runner.manifest.errors import Problem
from runner.manifest.model import FUNCTION_REF
from runner.manifest.source import Source

SECTIONS = ("tools", "resources", "prompts")


def unresolved(source: Source, root: Path) -> list[Problem]:
    """The problems of every well-formed `function:` reference that does not resolve, each failure once."""
    failures = ResolveFailures(source, root)
    data = source.data if isinstance(source.data, dict) else {}
    for section in SECTIONS:
        entries = data.get(section)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            ref = _reference(entry)
            if ref is None:
                continue
            label = entry.get("uri") if section == "resources" else entry.get("name")
            what = f"{section[:-1]} {label if isinstance(label, str) else ref!r}"
            try:
                earlier = failures.known(ref.partition(":")[0])
                if earlier is not None:
                    raise earlier
                resolve(ref, root)
            except ResolveError as exc:
                failures.add(section, index, what, exc)
    return failures.problems()


def _reference(entry: Any) -> str | None:
    ref = entry.get("function") if isinstance(entry, dict) else None
    return ref if isinstance(ref, str) and re.match(FUNCTION_REF, ref) else None
