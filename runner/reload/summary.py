"""What a reload's log line says it changed, so an edit is never reported as `no visible change`.

The lists clients see (runner/reload/changes.py) are one part. An edit of `instructions:`, a
setting such as `server.error_details`, or a module's code (a tool's body) changes none of them,
yet it is served; the log names those too: the manifest keys whose value changed, and the user
modules imported again. Only the log line says this: `/healthz` answers without a token, so its
`last_reload.changes` keeps to the list changes, as before, plus the `upstreams:` and `openapi:`
entries added, removed or changed, by name (their names are on `/healthz` already). Those are
named because a new upstream's tools arrive only once it connects, after the reload: the list diff
alone said `no visible change` for it.
"""

from __future__ import annotations

from runner.manifest.model import Manifest

ENTRY_LISTS = ("tools", "resources", "prompts")  # described by the list diff, entry by entry
MOUNTS = ("upstreams", "openapi")  # described by name: `upstreams +clock -files`, `openapi ~pets`
MAX_NAMED = 8  # modules named in the line; more are counted


def manifest_keys(old: Manifest, new: Manifest) -> list[str]:
    """Top-level keys (and `server.*`, `signin.*` keys) whose value changed, entry lists aside."""
    changed: list[str] = []
    for name in type(new).model_fields:
        before, after = getattr(old, name), getattr(new, name)
        if name in ENTRY_LISTS or name in MOUNTS or before == after:
            continue
        if before is not None and after is not None and hasattr(after, "model_fields"):
            changed += [
                f"{name}.{key}" for key in type(after).model_fields if getattr(before, key) != getattr(after, key)
            ]
        else:
            changed.append(name)
    return changed


def mount_changes(old: Manifest, new: Manifest) -> str:
    """The `upstreams:` and `openapi:` entries added (+), removed (-) or changed (~), by name; '' for none.

    Compared as data (`model_dump`): an entry that only moved to another line is unchanged.
    """
    parts: list[str] = []
    for section in MOUNTS:
        before = {entry.name: entry.model_dump() for entry in getattr(old, section)}
        after = {entry.name: entry.model_dump() for entry in getattr(new, section)}
        items = [f"+{name}" for name in sorted(after.keys() - before.keys())]
        items += [f"-{name}" for name in sorted(before.keys() - after.keys())]
        items += [f"~{name}" for name in sorted(after.keys() & before.keys()) if after[name] != before[name]]
        if not items and list(before) != list(after):  # the same entries in another order: the first serves a clash
            items = ["(order)"]
        if items:
            parts.append(f"{section} {' '.join(items)}")
    return "; ".join(parts)


def visible(lists: str, old: Manifest, new: Manifest) -> str:
    """/healthz's `last_reload.changes`: the list diff and the mounts, else `no visible change`."""
    return "; ".join(part for part in (lists, mount_changes(old, new)) if part) or "no visible change"


def describe(lists: str, old: Manifest, new: Manifest, reimported: list[str]) -> str:
    """`lists` (the list diff, '' when no list changed), then the mounts, the manifest keys and the modules."""
    parts = [part for part in (lists, mount_changes(old, new)) if part]
    if keys := manifest_keys(old, new):
        parts.append(f"manifest {' '.join(keys)}")
    if reimported:
        named = " ".join(reimported[:MAX_NAMED])
        more = f" and {len(reimported) - MAX_NAMED} more" if len(reimported) > MAX_NAMED else ""
        parts.append(f"code {named}{more}")
    return "; ".join(parts) or "nothing changed"
