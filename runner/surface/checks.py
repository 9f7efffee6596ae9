"""Located problems in `_meta` objects and declared schemas, found before anything is imported.

The pydantic models accept any mapping there; this walks what YAML produced and
points at the exact key: a `_meta` key outside the MCP grammar or under a
reserved prefix, a value JSON cannot carry (a YAML date, `.nan`, binary), a
schema that is not valid JSON Schema or has a `$ref` that does not resolve.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from runner.manifest.errors import Problem
from runner.manifest.source import Path, Source
from runner.surface.headers import header_problems
from runner.surface.models import META_KEY
from runner.surface.schemas import SchemaProblem, compile_schema

_META_KEY = re.compile(META_KEY)
SECTIONS = ("tools", "resources", "prompts")


def surface_problems(source: Source, manifest: Any) -> list[Problem]:
    problems: list[Problem] = []
    for section in SECTIONS:
        for i, entry in enumerate(getattr(manifest, section)):
            if getattr(entry, "output_schema", None) is not None and getattr(entry, "structured_output", None) is False:
                problems.append(
                    Problem(
                        source.locate((section, i, "structured_output")),
                        "structured_output: false contradicts output_schema (a declared output schema means "
                        "structured results); remove one of them",
                    )
                )
            if entry.meta is not None:
                problems += _meta_problems(source, (section, i, "meta"), entry.meta)
            for key in ("input_schema", "output_schema"):
                schema = getattr(entry, key, None)
                if schema is not None:
                    problems += _schema_problems(source, (section, i, key), schema)
    return problems + header_problems(source, manifest)


def _meta_problems(source: Source, path: Path, meta: dict[str, Any]) -> list[Problem]:
    problems = []
    for key in meta:
        reason = meta_key_problem(key)
        if reason:
            problems.append(Problem(source.locate((*path, key), key=True), f"_meta key {key!r}: {reason}"))
    problems += [Problem(source.locate(where), message) for where, message in _not_json(meta, path)]
    return problems


def meta_key_problem(key: str) -> str | None:
    """Why `key` is not a `_meta` key a server may send, or None."""
    if not _META_KEY.match(key):
        return (
            "not a valid key: an optional prefix of dot-separated labels and a slash "
            "(com.example/), then a name that starts and ends with a letter or digit"
        )
    prefix, slash, _ = key.rpartition("/")
    labels = prefix.split(".") if slash else []
    if len(labels) >= 2 and labels[1].lower() in ("modelcontextprotocol", "mcp"):
        return f"the prefix {prefix + '/'!r} is reserved for MCP itself; use your own reverse-DNS prefix"
    return None


def _schema_problems(source: Source, path: Path, schema: dict[str, Any]) -> list[Problem]:
    problems = [Problem(source.locate(where), message) for where, message in _not_json(schema, path)]
    if problems:
        return problems
    try:
        compile_schema(schema)
    except SchemaProblem as exc:
        key = path[-1]
        return [Problem(source.locate((*path, *exc.path)), f"{key} is not usable: {exc}")]
    return []


def _not_json(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    """Every place in `value` that JSON cannot carry."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _not_json(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _not_json(item, (*path, i))
    elif isinstance(value, float) and not math.isfinite(value):
        yield path, f"{_dotted(path)}: {value!r} is not a JSON number"
    elif value is not None and not isinstance(value, str | int | float | bool):
        yield (
            path,
            (f"{_dotted(path)}: a YAML {type(value).__name__} is not a JSON value (quote it to make it a string)"),
        )


def _dotted(path: Path) -> str:
    return ".".join(str(part) for part in path)
