"""`--arg k=v` and `--args JSON` for `call` and `prompt`.

A value is coerced with the tool's own inputSchema (from tools/list): a parameter whose
schema allows only strings gets the text as is (`--arg id=007` stays "007"); any other
parameter gets the text parsed as JSON (`--arg a=2` is 2, `--arg tags='["x"]'` a list),
`null` is null wherever the schema allows null (an optional string too), and if it does
not parse while the schema does not allow a string, that is a usage error
naming the parameter. A name the tool does not take is refused with the names it does take.
Prompt arguments are strings by the protocol, so they are passed as text.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from runner.cli.commands.exits import EXIT_USAGE, CommandError


def split_pairs(pairs: list[str]) -> dict[str, str]:
    """`["a=1", "b=x=y"]` -> `{"a": "1", "b": "x=y"}`."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"mcp-runner: --arg {pair!r}: expected NAME=VALUE", EXIT_USAGE)
        found[key] = value
    return found


def json_object(text: str | None) -> dict[str, Any]:
    """`--args`: a JSON object, or `-` to read one from stdin."""
    if text is None:
        return {}
    if text == "-":
        text = sys.stdin.read()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"mcp-runner: --args is not JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(value, dict):
        raise CommandError(f"mcp-runner: --args must be a JSON object, got {type(value).__name__}", EXIT_USAGE)
    return value


def coerce(tool: str, schema: dict[str, Any], pairs: dict[str, str]) -> dict[str, Any]:
    """The `--arg` values typed as `schema` (a tool's inputSchema) says."""
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    open_ended = schema.get("additionalProperties") not in (None, False)
    result: dict[str, Any] = {}
    for name, text in pairs.items():
        if name not in properties and not open_ended:
            takes = ", ".join(properties) or "no arguments"
            raise CommandError(f"mcp-runner: tool {tool!r} has no parameter {name!r} (it takes: {takes})", EXIT_USAGE)
        types = _types(properties.get(name, {}), schema)
        if text == "null" and "null" in types:  # the one way to send null with --arg; the word itself: --args
            result[name] = None
            continue
        if types and types <= {"string", "null"}:  # Optional[str] too: the text is the value
            result[name] = text
            continue
        try:
            result[name] = json.loads(text)
        except ValueError:
            if types and "string" not in types:
                kind = " or ".join(sorted(types))
                raise CommandError(
                    f"mcp-runner: --arg {name}={text}: {name!r} is {_article(kind)} {kind}, and {text!r} is not JSON",
                    EXIT_USAGE,
                ) from None
            result[name] = text
    return result


def _types(node: Any, root: dict[str, Any], depth: int = 0) -> set[str]:
    """The JSON types a property schema allows (empty: unknown, anything goes)."""
    if not isinstance(node, dict) or depth > 8:
        return set()
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _types(target, root, depth + 1)
    kind = node.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    if "enum" in node and all(isinstance(v, str) for v in node["enum"]):
        return {"string"}
    found: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for option in node.get(key, []) if isinstance(node.get(key), list) else []:
            option_types = _types(option, root, depth + 1)
            if not option_types:
                return set()
            found |= option_types
    return found


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
