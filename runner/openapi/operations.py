"""An OpenAPI operation -> a tool's name, input schema and request plan.

Arguments (docs/openapi.md "Arguments"):
- path, query and header parameters become arguments named as the spec names them, with their
  schemas; `required` as declared (path parameters always). A name used in two places (`id` in the
  path and in the query) keeps it for the first and becomes `<in>_<name>` (`query_id`) for the next.
- Header parameters named Accept, Content-Type or Authorization are ignored, as OpenAPI says; so are
  hop-by-hop and framing headers (Host, Content-Length, ...), and any header the manifest's
  `headers:` sets: credentials come from the manifest, never from the model.
- a JSON request body whose schema is an object with properties becomes those properties (required
  as declared when the body is required); a property whose name a parameter took is `body_<name>`.
  Any other JSON body is one `body` argument (`request_body` when a parameter is named `body`).
- cookie parameters, and request bodies that are not JSON (multipart, forms, XML...), are not
  supported: an operation that requires one is skipped with a warning; an optional one is left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from runner.openapi.spec import Budget, SpecProblem, escape, resolve

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
IGNORED_HEADERS = frozenset(
    {"accept", "content-type", "authorization", "host", "content-length", "transfer-encoding", "connection",
     "keep-alive", "upgrade", "te", "trailer", "proxy-authorization", "cookie"}
)  # fmt: skip
Where = Literal["path", "query", "header", "body", "property"]


@dataclass(frozen=True)
class Arg:
    argument: str  # the tool argument's name
    where: Where  # path, query, header; `body` (the whole body) or `property` (one of the body's)
    name: str  # the name on the wire: the parameter's or the body property's


@dataclass
class Operation:
    name: str  # operationId, or the derived name (`derived_name`)
    method: str
    path: str  # the template, e.g. /pets/{petId}
    pointer: str  # JSON pointer to the operation, for messages
    title: str | None
    description: str
    schema: dict[str, Any]  # the tool's input schema
    args: list[Arg] = field(default_factory=list)
    body_required: bool = False
    has_body: bool = False


def derived_name(method: str, path: str) -> str:
    """A name for an operation without operationId: `get /pets/{petId}` -> `get_pets_petId`."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", path) if w]
    return "_".join([method, *words])


def operations(data: dict[str, Any], drop_headers: frozenset[str], warn: list[str]) -> list[Operation]:
    """Every operation the tools can serve, in document order; `warn` collects why others are skipped."""
    found: list[Operation] = []
    budget = Budget()  # one for the document: fan-out $refs or YAML aliases cannot expand without bound
    for path, item in (data.get("paths") or {}).items():
        at = f"/paths/{escape(path)}"
        if not isinstance(item, dict):
            raise SpecProblem(at, "a path item must be a mapping")
        if isinstance(item.get("$ref"), str):  # a path item may be a reference itself
            item = resolve(data, item, at, budget=budget)
        # Only what the tools use is resolved: parameters and request bodies (responses can be most of a document).
        shared = resolve(data, item.get("parameters") or [], f"{at}/parameters", budget=budget)
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            if not isinstance(op, dict):
                raise SpecProblem(f"{at}/{method}", "an operation must be a mapping")
            where = f"{at}/{method}"
            used = {
                k: resolve(data, op[k], f"{where}/{k}", budget=budget) for k in ("parameters", "requestBody") if k in op
            }
            made = _operation(method, path, {**op, **used}, shared, where, drop_headers, warn)
            if made is not None:
                found.append(made)
    return found


def _operation(
    method: str, path: str, op: dict[str, Any], shared: list[Any], at: str, drop: frozenset[str], warn: list[str]
) -> Operation | None:
    name = op.get("operationId")
    if name is not None and not isinstance(name, str):
        raise SpecProblem(f"{at}/operationId", "operationId must be a string")
    name = name or derived_name(method, path)
    params: dict[tuple[str, str], dict[str, Any]] = {}
    for i, param in enumerate([*shared, *(op.get("parameters") or [])]):
        if not isinstance(param, dict) or not isinstance(param.get("name"), str) or "in" not in param:
            raise SpecProblem(f"{at}/parameters/{i}", "a parameter needs a name and an `in`")
        params[(param["in"], param["name"])] = param  # the operation's replace the path item's
    properties: dict[str, Any] = {}
    required: list[str] = []
    args: list[Arg] = []

    def add(argument: str, where: Where, wire: str, schema: Any, needed: bool, description: str | None) -> None:
        schema = dict(schema) if isinstance(schema, dict) else {}
        if description and "description" not in schema:
            schema["description"] = description
        properties[argument] = schema
        if needed:
            required.append(argument)
        args.append(Arg(argument, where, wire))

    for (where, wire), param in params.items():
        if where == "cookie" or where not in ("path", "query", "header"):
            if param.get("required"):
                warn.append(f"{method.upper()} {path} ({name}): skipped: it needs a {where} parameter {wire!r}")
                return None
            continue
        if where == "header" and (wire.lower() in IGNORED_HEADERS or wire.lower() in drop):
            continue
        argument = wire if wire not in properties else f"{where}_{wire}"
        found: Any = param.get("schema")
        if found is None and isinstance(param.get("content"), dict):  # a parameter as a media type: its schema
            found = (next(iter(param["content"].values()), None) or {}).get("schema")
        located: Where = "path" if where == "path" else "query" if where == "query" else "header"
        add(argument, located, wire, found, where == "path" or bool(param.get("required")), param.get("description"))
    has_body = body_required = False
    body = op.get("requestBody")
    if isinstance(body, dict):
        content = body.get("content") or {}
        media = next((m for m in content if _is_json(m)), None)
        body_required = bool(body.get("required"))
        if media is None:
            if body_required:
                kinds = ", ".join(content) or "no media type"
                warn.append(f"{method.upper()} {path} ({name}): skipped: its request body is not JSON ({kinds})")
                return None
        else:
            has_body = True
            body_schema: Any = (content[media] or {}).get("schema") or {}
            props = body_schema.get("properties") if isinstance(body_schema, dict) else None
            if isinstance(props, dict) and props and _is_object(body_schema):
                needed = set(body_schema.get("required") or []) if body_required else set()
                for prop, sub in props.items():
                    argument = prop if prop not in properties else f"body_{prop}"
                    add(argument, "property", prop, sub, prop in needed, None)
            else:
                argument = "body" if "body" not in properties else "request_body"
                add(argument, "body", "", body_schema, body_required, body.get("description"))
    undeclared = [v for v in re.findall(r"{([^}]*)}", path) if ("path", v) not in params]
    if undeclared:
        warn.append(f"{method.upper()} {path} ({name}): skipped: path parameter {undeclared[0]!r} is not declared")
        return None
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    summary, text = op.get("summary"), op.get("description")
    description = "\n\n".join(str(t) for t in (summary, text) if t) or f"{method.upper()} {path}"
    return Operation(
        name=name,
        method=method.upper(),
        path=path,
        pointer=at,
        title=str(summary) if summary else None,
        description=description,
        schema=schema,
        args=args,
        body_required=body_required,
        has_body=has_body,
    )


def _is_json(media: str) -> bool:
    kind = media.split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _is_object(schema: dict[str, Any]) -> bool:
    kind = schema.get("type", "object")
    return kind == "object" or (isinstance(kind, list) and kind == ["object"])


def json_schema(schema: Any, version: str) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema 2020-12 (3.1's already is): `nullable`, boolean exclusive bounds."""
    if version.startswith("3.1") or not isinstance(schema, dict | list):
        return schema
    if isinstance(schema, list):
        return [json_schema(s, version) for s in schema]
    out = {k: json_schema(v, version) if k not in ("example", "default", "enum") else v for k, v in schema.items()}
    if out.pop("nullable", False) is True and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]  # nullable admits null, enum or not
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), bool):
            if out.pop(bound) and limit in out:
                out[bound] = out.pop(limit)
    return out
