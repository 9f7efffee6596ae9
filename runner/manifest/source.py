"""Manifest text -> plain data, remembering where in the file every key and value came from.

PyYAML's composer gives nodes with marks; we construct the data ourselves so
that each value's path (`("tools", 0, "function")`) maps to its position.
Later stages (schema, imports) use those positions to locate their errors.
Environment substitution happens here, scalar by scalar, for the same reason.

YAML aliases (`*name`, `<<: *name`) repeat a node without repeating its text: nine
lines of nested aliases can stand for a billion values (the "billion laughs"). The
parser shares the repeated node; building the data is what multiplies it. So the
data built from one manifest is bounded: at most `MAX_VALUES` values, counting each
value every time an alias or merge repeats it, refused with a located error before
the memory is taken.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from runner.manifest.envsubst import MissingVariable, substitute
from runner.manifest.errors import Location, ManifestError, Problem

Path = tuple[str | int, ...]

# Values in one manifest at most, every repetition by an alias or a merge counted. A 1,000-tool manifest
# holds about 10,000; an alias bomb of 10^6 values took 630 MiB (issue 22).
MAX_VALUES = 100_000


class _Omit:
    """The sentinel a `Withhold` returns for a key left out of the data."""


OMIT = _Omit()
# For a reader that does not use some parts (the client commands: runner/manifest/client.py): given a key's
# path, None builds its value as usual; OMIT leaves the key out; anything else stands in for the value. A part
# not built is not substituted either: its `${VAR}`s are never read.
Withhold = Callable[[Path], Any]

# libyaml's parser when available: 5x faster on a 1,000-tool manifest, same marks and types.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Source:
    """The manifest's data plus where each piece of it sits in the file."""

    file: str
    data: Any
    digest: str = ""  # sha256 of the text parsed, so /healthz names exactly what is being served
    values: dict[Path, Location] = field(default_factory=dict)
    keys: dict[Path, Location] = field(default_factory=dict)

    def locate(self, path: Path, *, key: bool = False) -> Location:
        """The closest known position for `path`: a missing entry points at its parent."""
        table = self.keys if key else self.values
        while path:
            if path in table:
                return table[path]
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), Location(self.file, 1, 1))


def manifest_folder(manifest: str | os.PathLike[str]) -> pathlib.Path:
    """The folder that holds the manifest: its modules, `.mcp-runner/`, the reload root.

    The folder's path is resolved, but not the manifest's own symlink: a Kubernetes ConfigMap
    mounts `app.yaml -> ..data/app.yaml` with `..data` swapped to a new timestamped folder on
    every update. Following that link made the root the old timestamped folder, so after an
    update the modules were no longer "the user's", were never imported again, and the new
    manifest failed against the old code (tests/test_configmap.py).
    """
    return pathlib.Path(manifest).absolute().parent.resolve()


def _location(file: str, mark: yaml.Mark) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def parse(text: str, file: str, env: Mapping[str, str], withhold: Withhold | None = None) -> Source:
    """Parse YAML text; raise ManifestError with every located problem (none from the parts `withhold` keeps out)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _location(file, mark) if mark else Location(file, 1, 1)
        what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ManifestError([Problem(where, f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ManifestError([Problem(Location(file, 1, 1), f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    source = Source(file=file, data=None, digest=hashlib.sha256(text.encode()).hexdigest())
    if node is None:
        raise ManifestError([Problem(Location(file, 1, 1), "the manifest is empty")])
    problems: list[Problem] = []
    try:
        source.data = _build(node, (), source, loader, env, problems, _Budget(MAX_VALUES, withhold))
    except _TooLarge as exc:
        where = source.locate(exc.path)
        raise ManifestError([Problem(where, exc.message(_shown_path(exc.path)))]) from None
    if problems:
        raise ManifestError(problems)
    return source


@dataclass
class _Budget:
    left: int
    withhold: Withhold | None = None  # rides along with the budget: both are the same for every node


class _TooLarge(Exception):
    def __init__(self, path: Path, merged: bool = False) -> None:
        self.path = path
        self.merged = merged

    def message(self, shown: str) -> str:
        how = "merges (`<<: *name`)" if self.merged else "aliases (`*name`) and merges (`<<: *name`)"
        return (
            f"the manifest expands to more than {MAX_VALUES:,} values: YAML {how} repeat what they name, "
            f"and the repetition reached {shown} (an alias bomb?); at most {MAX_VALUES:,} values are built"
        )


def _shown_path(path: Path) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    return f"`{text}`" if text else "the top level"


def _merged_size(node: yaml.MappingNode, sizes: dict[int, int], limit: int, path: Path) -> int:
    """The number of key/value pairs `node` has once its merges are resolved, without resolving them.

    PyYAML's `flatten_mapping` copies every merged pair into the mapping. Releases without the
    fix for yaml/pyyaml#897 (the pinned `pyyaml>=6` allows them; 6.0.4 has it) keep the duplicates,
    so merges of merges grow those lists exponentially before a single value is built. Sizes are
    remembered per node, so this is linear in the document; past `limit` it raises instead.
    """
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = 0  # a merge cycle adds nothing
    total = 0
    for key_node, value_node in node.value:
        if key_node.tag != "tag:yaml.org,2002:merge":
            total += 1
            continue
        for source in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
            if isinstance(source, yaml.MappingNode):  # anything else: flatten_mapping says what is wrong
                total += _merged_size(source, sizes, limit, path)
        if total > limit:
            raise _TooLarge(path, merged=True)
    sizes[id(node)] = total
    return total


def _build(
    node: yaml.Node,
    path: Path,
    source: Source,
    loader: Any,
    env: Mapping[str, str],
    problems: list[Problem],
    budget: _Budget,
) -> Any:
    budget.left -= 1
    if budget.left < 0:
        raise _TooLarge(path)
    source.values[path] = _location(source.file, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        if any(key.tag == "tag:yaml.org,2002:merge" for key, _ in node.value):
            _merged_size(node, {}, budget.left, path)
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merges
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            where = _location(source.file, key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):  # never built: an alias to a bomb can be a key too
                problems.append(Problem(where, "keys must be strings, got a YAML collection"))
                continue
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                # YAML reads `on`, `no`, `1` as a boolean or number: a schema's property named so needs quotes.
                hint = f': quote it, "{key_node.value}", for the text' if key_node.value else ""
                problems.append(Problem(where, f"keys must be strings, got {key!r}{hint}"))
                continue
            if key in result:
                problems.append(Problem(where, f"duplicate key {key!r}"))
                continue
            source.keys[path + (key,)] = where
            stand_in = budget.withhold(path + (key,)) if budget.withhold is not None else None
            if stand_in is OMIT:
                continue
            if stand_in is not None:
                result[key] = stand_in
                continue
            result[key] = _build(value_node, path + (key,), source, loader, env, problems, budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), source, loader, env, problems, budget) for i, item in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, str):
        try:
            return substitute(value, env)
        except MissingVariable as missing:
            start = node.start_mark
            # Plain and quoted scalars on one line: point at the `${` itself.
            offset = missing.offset + (1 if getattr(node, "style", None) in ("'", '"') else 0)
            col = start.column + 1 + (offset if "\n" not in value else 0)
            problems.append(
                Problem(
                    Location(source.file, start.line + 1, col),
                    f"environment variable {missing.name!r} is not set and has no default "
                    f"(write ${{{missing.name}:-default}} to give one)",
                )
            )
            return value
    return value
