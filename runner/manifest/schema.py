"""The manifest's JSON Schema (`mcp-runner schema`), for editors.

An editor validates the manifest as written, before `${VAR}` substitution, so the
schema generated from the pydantic models is widened in one way: wherever a number
or a boolean goes, a string holding a `${VAR}` or `${VAR:-default}` is accepted too.
`check` accepts a string there only when it came from substitution (a literal
`port: "8124"` is an error for both), so the schema accepts every manifest `check`
accepts. Unknown keys stay errors (`additionalProperties: false`).
"""

from __future__ import annotations

from typing import Any

from runner.manifest.model import Manifest

SUBSTITUTION = {
    "type": "string",
    "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}",
    "description": "${VAR} or ${VAR:-default}, substituted before validation",
}
_WIDENED = ("integer", "number", "boolean")
_ANNOTATIONS = ("title", "description", "default")


def json_schema() -> dict[str, Any]:
    schema = _widen(Manifest.model_json_schema())
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mcp-runner manifest"
    return schema


def _widen(node: Any) -> Any:
    """Every integer, number or boolean schema in `node` becomes "that, or a substitution"."""
    if isinstance(node, list):
        return [_widen(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _widen(value) for key, value in node.items()}
    if node.get("type") in _WIDENED:
        annotations = {key: node.pop(key) for key in _ANNOTATIONS if key in node}
        return {**annotations, "anyOf": [node, SUBSTITUTION]}
    return node
