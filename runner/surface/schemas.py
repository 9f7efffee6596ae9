"""Declared JSON Schemas (`input_schema`, `output_schema`): checked once at load, enforced on every call.

A schema is compiled the way the SDK's client compiles a tool's output schema
(`mcp/client/session.py`): the dialect its `$schema` names, Draft 2020-12 when it
names none, and an explicit empty `referencing.Registry`, so a `$ref` resolves
inside the document (`$defs`, anchors, embedded `$id`s) and is never fetched from
the network. Load time adds what a call would otherwise discover too late: the
schema is valid against its meta-schema, its root is an object schema (MCP
requires `type: object` for both), and every `$ref` in it resolves.

Formats (`format: email`, `date`, ...) are asserted where jsonschema has a checker
for them; Draft 2020-12 makes them annotations only by default, but a manifest that
writes `format: date` means it.

Nothing here echoes a caller's value: call-time errors name the place in the
arguments and the schema keyword that failed, because the log keeps them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

# jsonschema and referencing (~60 ms of imports with attrs and rpds) are imported by the functions that
# use them: only a manifest that declares input_schema or output_schema loads them (tests/test_engine.py).

SchemaPath = tuple[str | int, ...]
# Keywords whose values are instances (data), never subschemas: a "$ref" inside one is just data.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples", "example"})


class SchemaProblem(ValueError):
    """A declared schema that cannot be served, at `path` inside the schema."""

    def __init__(self, path: SchemaPath, message: str) -> None:
        super().__init__(message)
        self.path = path


class _Unknown:
    """validator_for's answer for a `$schema` it does not know."""


def compile_schema(schema: Any) -> Validator:
    """A validator for `schema`, or SchemaProblem saying where it is wrong."""
    return _compiled(json.dumps(schema, sort_keys=True, allow_nan=False))


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> Validator:
    # Keyed by the schema's text: a reload of an unchanged manifest compiles nothing again.
    from jsonschema import exceptions as jsonschema_exceptions
    from jsonschema.validators import Draft202012Validator, validator_for
    from referencing import Registry

    schema = json.loads(text)
    if not isinstance(schema, dict):
        raise SchemaProblem((), "must be a JSON Schema object (a mapping)")
    cls: Any = validator_for(schema, default=_Unknown)
    if cls is _Unknown:
        if "$schema" in schema:
            raise SchemaProblem(("$schema",), f"unknown $schema {schema['$schema']!r} (omit it for Draft 2020-12)")
        cls = Draft202012Validator
    try:
        cls.check_schema(schema)
    except jsonschema_exceptions.SchemaError as exc:
        raise SchemaProblem(tuple(exc.absolute_path), f"not a valid JSON Schema: {_first_line(exc.message)}") from None
    if schema.get("type") != "object":
        raise SchemaProblem(("type",) if "type" in schema else (), "the root must be an object schema (type: object)")
    _check_refs(schema, cls)
    return cls(schema, registry=Registry(), format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return]


def _check_refs(schema: dict[str, Any], cls: Any) -> None:
    """Every `$ref`/`$dynamicRef` resolves inside the document."""
    from referencing import Registry, Resource
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    specification = getattr(cls, "META_SCHEMA", {}).get("$schema")
    try:
        from referencing.jsonschema import specification_with

        default = specification_with(specification) if specification else DRAFT202012
    except Exception:
        default = DRAFT202012
    root = Resource.from_contents(schema, default_specification=default)
    registry: Registry[Any] = Registry().with_resource(root.id() or "", root)
    resolver = registry.resolver_with_root(root)
    for path, ref, here in _refs(schema, (), resolver, default):
        try:
            here.lookup(ref)
        except Unresolvable:
            raise SchemaProblem(
                path, f"$ref {ref!r} does not resolve inside the schema (define it under $defs; nothing is fetched)"
            ) from None


def _refs(node: Any, path: SchemaPath, resolver: Any, specification: Any) -> Iterator[tuple[SchemaPath, str, Any]]:
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _refs(item, (*path, i), resolver, specification)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("$id"), str) and path:
        from referencing import Resource

        resolver = resolver.in_subresource(Resource.from_contents(node, default_specification=specification))
    for keyword in ("$ref", "$dynamicRef"):
        if isinstance(node.get(keyword), str):
            yield (*path, keyword), node[keyword], resolver
    for key, value in node.items():
        if key not in _DATA_KEYWORDS:
            yield from _refs(value, (*path, key), resolver, specification)


def violation(validator: Validator, instance: Any) -> str | None:
    """The most relevant way `instance` breaks the schema, without echoing any value from it; None if it fits."""
    from jsonschema import exceptions as jsonschema_exceptions
    from referencing.exceptions import Unresolvable

    try:
        error = jsonschema_exceptions.best_match(validator.iter_errors(instance))  # type: ignore[no-untyped-call]
    except Unresolvable as exc:  # compile_schema checked every $ref; a $dynamicRef may still surprise
        return f"the schema's reference {exc} does not resolve"
    if error is None:
        return None
    return describe(error)


def describe(error: Any) -> str:
    where = ".".join(str(part) for part in error.absolute_path)
    at = f"at {where!r}" if where else "at the top level"
    keyword, expected = error.validator, error.validator_value
    if keyword == "required" and isinstance(error.instance, dict):
        missing = [name for name in expected if name not in error.instance]
        return f"{at}: missing required property {missing[0]!r}" if missing else f"{at}: fails 'required'"
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        return f"{at}: properties not in the schema are not allowed"
    if keyword == "type":
        return f"{at}: must be of type {_short(expected)}"
    if keyword in ("enum", "const"):
        return f"{at}: must be {'one of' if keyword == 'enum' else 'equal to'} {_short(expected)}"
    return f"{at}: fails {keyword!r} {_short(expected)}"


# Where an object's properties may be declared besides its own `properties`, in 2020-12: the instance is held
# to every `allOf` member and `$ref` target (so their `required` binds too), and maybe to the others.
_ALWAYS = ("allOf",)
_MAYBE = ("anyOf", "oneOf")
_MAYBE_ONE = ("if", "then", "else")


@dataclass
class Declared:
    """The top-level properties a schema declares, wherever it declares them, and those it always requires."""

    properties: dict[str, SchemaPath] = field(default_factory=dict)  # name -> where it is first declared
    required: set[str] = field(default_factory=set)


def declared(schema: dict[str, Any]) -> Declared:
    """The argument names `schema` lets through and requires, looking into composition as a validator does.

    A property declared under `allOf`, `anyOf`, `oneOf`, `if`/`then`/`else`, `dependentSchemas` or a
    local `$ref` (`#/$defs/...`, an anchor) is as much an argument as one under the root's `properties`
    (a schema that composes its root, `allOf: [{$ref: "#/$defs/Base"}]`, declares Base's properties).
    Required means required in every valid call: the root's `required`, and that of `allOf` members
    and `$ref` targets; a `required` inside `anyOf` or `then` binds only some calls. `not` declares nothing.
    """
    found = Declared()
    resolver = _resolver(schema)
    seen: set[tuple[int, bool]] = set()  # a `$ref` cycle ends; a subschema reached both ways is walked both ways

    def walk(node: Any, path: SchemaPath, always: bool, resolver: Any) -> None:
        if not isinstance(node, dict) or (id(node), always) in seen:
            return
        seen.add((id(node), always))
        if isinstance(node.get("$id"), str) and path and resolver is not None:
            from referencing import Resource

            resolver = resolver.in_subresource(Resource.from_contents(node, default_specification=_specification()))
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name in properties:
                found.properties.setdefault(name, (*path, "properties", name))
        required = node.get("required")
        if always and isinstance(required, list):
            found.required.update(name for name in required if isinstance(name, str))
        for keyword in (*_ALWAYS, *_MAYBE):
            members = node.get(keyword)
            if isinstance(members, list):
                for i, member in enumerate(members):
                    walk(member, (*path, keyword, i), always and keyword in _ALWAYS, resolver)
        for keyword in _MAYBE_ONE:
            walk(node.get(keyword), (*path, keyword), False, resolver)
        dependent = node.get("dependentSchemas")
        if isinstance(dependent, dict):
            for key, member in dependent.items():
                walk(member, (*path, "dependentSchemas", key), False, resolver)
        ref = node.get("$ref")
        if isinstance(ref, str) and resolver is not None:
            target = _lookup(resolver, ref)
            if target is not None:
                walk(target.contents, _pointer(ref) or (*path, "$ref"), always, target.resolver)

    walk(schema, (), True, resolver)
    return found


def _specification() -> Any:
    from referencing.jsonschema import DRAFT202012

    return DRAFT202012


def _resolver(schema: dict[str, Any]) -> Any:
    """A resolver of the schema's own `$ref`s (nothing fetched; compile_schema proved they all resolve)."""
    from referencing import Registry, Resource

    try:
        root = Resource.from_contents(schema, default_specification=_specification())
        registry: Registry[Any] = Registry().with_resource(root.id() or "", root)
        return registry.resolver_with_root(root)
    except Exception:
        return None


def _lookup(resolver: Any, ref: str) -> Any:
    from referencing.exceptions import Unresolvable

    try:
        return resolver.lookup(ref)
    except Unresolvable:
        return None


def _pointer(ref: str) -> SchemaPath | None:
    """`#/$defs/Base` as a path in the document, for locating what it declares; None for an anchor or a URI."""
    if not ref.startswith("#/"):
        return None
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/"))


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= 200 else line[:197] + "..."
