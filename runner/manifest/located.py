"""A pydantic validation error on the manifest, as a located problem (`file:line:col: ...`).

The error's `loc` is a path into the manifest's data; the source knows where each
path sits in the file. An unknown key also gets the keys allowed at that place,
for "did you mean".
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from runner.manifest.errors import Problem
from runner.manifest.source import Path, Source


def located(source: Source, err: Any, root: type[BaseModel]) -> Problem:
    """One pydantic error as a located problem; an unknown key gets "did you mean" from the keys allowed there."""
    loc: Path = tuple(err["loc"])
    dotted = ".".join(str(p) for p in loc) or "manifest"
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _fields_at(root, loc[:-1])
        hint = _close(key, allowed)
        message = f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        if allowed and not hint:
            message += f"; allowed here: {', '.join(allowed)}"
        return Problem(source.locate(loc, key=True), message)
    if kind == "missing":
        return Problem(source.locate(loc[:-1]), f"missing required key {str(loc[-1])!r}")
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "function":
        return Problem(source.locate(loc), f'{dotted}: expected "module:attribute", got {err["input"]!r}')
    if kind == "model_type" and len(loc) == 2 and loc[0] in SECTIONS and isinstance(loc[1], int):
        given = err["input"]
        what = "a string" if isinstance(given, str) else type(given).__name__
        message = f"{dotted}: an entry is a mapping with a 'function:' key, not {what}; for example:"
        return Problem(source.locate(loc), message, _entry_shape(str(loc[0]), given))
    message = err["msg"].removeprefix("Value error, ")
    return Problem(source.locate(loc), f"{dotted}: {message}")


SECTIONS = ("tools", "resources", "prompts")


def _entry_shape(section: str, given: Any) -> str:
    """What an entry looks like, instead of pydantic's "a valid dictionary or instance of ToolEntry".

    `- tools:add` is the slip this is for: the entry's `function:` key names the callable.
    """
    ref = given if isinstance(given, str) and ":" in given else "module:function"
    if section == "resources":
        return f"- uri: greeting://{{name}}\n  function: {ref}"
    return f"- function: {ref}"


def _fields_at(root: type[BaseModel], path: Path) -> list[str]:
    """The keys allowed at `path`, for "did you mean"."""
    annotation: Any = root
    for part in path:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            args = typing.get_args(annotation)
            annotation = args[0] if args else None
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and part in annotation.model_fields:
            annotation = annotation.model_fields[part].annotation
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> `X`."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def unknown_hint(key: str, names: list[str]) -> str:
    """`(did you mean 'x'?)`, or the names there are."""
    hint = _close(key, names)
    if hint:
        return f" (did you mean {hint[0]!r}?)"
    return f" (its parameters: {', '.join(names)})" if names else ""


def _close(word: str, choices: list[str]) -> list[str]:
    """difflib's best match, imported here: only a manifest with a typo needs it, not every start-up."""
    import difflib

    return difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
