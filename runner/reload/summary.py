"""What a reload's log line says it changed, so an edit is never reported as `no visible change`.

The lists clients see (runner/reload/changes.py) are one part. An edit of `instructions:`, a
setting such as `server.error_details`, or a module's code (a tool's body) changes none of them,
yet it is served; the log names those too: the manifest keys whose value changed, and the user
modules imported again. Only the log line says this: `/healthz` answers without a token, so its
`last_reload.changes` keeps to the list changes, as before.
"""

from __future__ import annotations

from runner.manifest.model import Manifest

ENTRY_LISTS = ("tools", "resources", "prompts")  # described by the list diff, entry by entry
MAX_NAMED = 8  # modules named in the line; more are counted


def manifest_keys(old: Manifest, new: Manifest) -> list[str]:
    """Top-level keys (and `server.*`, `signin.*` keys) whose value changed, entry lists aside."""
    changed: list[str] = []
    for name in type(new).model_fields:
        before, after = getattr(old, name), getattr(new, name)
        if name in ENTRY_LISTS or before == after:
            continue
        if before is not None and after is not None and hasattr(after, "model_fields"):
            changed += [
                f"{name}.{key}" for key in type(after).model_fields if getattr(before, key) != getattr(after, key)
            ]
        else:
            changed.append(name)
    return changed


def describe(lists: str, old: Manifest, new: Manifest, reimported: list[str]) -> str:
    """`lists` (the list diff, '' when no list changed), then the manifest keys and the modules."""
    parts = [lists] if lists else []
    if keys := manifest_keys(old, new):
        parts.append(f"manifest {' '.join(keys)}")
    if reimported:
        named = " ".join(reimported[:MAX_NAMED])
        more = f" and {len(reimported) - MAX_NAMED} more" if len(reimported) > MAX_NAMED else ""
        parts.append(f"code {named}{more}")
    return "; ".join(parts) or "nothing changed"
