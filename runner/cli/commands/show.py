"""Readable renderings of MCP answers for a terminal (the `--json` output is the protocol's own)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from mcp import types


def listing(found: dict[str, list[Any]]) -> str:
    lines: list[str] = []
    tools: list[types.Tool] = found["tools"]
    lines.append(f"tools ({len(tools)}):")
    for tool in tools:
        lines.append(f"  {tool.name}({_parameters(tool.input_schema)})" + _about(tool.title, tool.description))
    resources: list[types.Resource] = found["resources"]
    templates: list[types.ResourceTemplate] = found["resourceTemplates"]
    lines.append(f"resources ({len(resources) + len(templates)}):")
    for resource in resources:
        lines.append(f"  {resource.uri}" + _mime(resource.mime_type) + _about(None, resource.description))
    for template in templates:
        lines.append(f"  {template.uri_template}" + _mime(template.mime_type) + _about(None, template.description))
    prompts: list[types.Prompt] = found["prompts"]
    lines.append(f"prompts ({len(prompts)}):")
    for prompt in prompts:
        names = [a.name if a.required else f"{a.name}?" for a in prompt.arguments or []]
        lines.append(f"  {prompt.name}({', '.join(names)})" + _about(prompt.title, prompt.description))
    return "\n".join(lines)


def _parameters(schema: dict[str, Any]) -> str:
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    shown = []
    for name, prop in properties.items():
        kind = _kind(prop) if isinstance(prop, dict) else None
        label = name if name in required else f"{name}?"
        shown.append(f"{label}: {kind}" if kind else label)
    return ", ".join(shown)


def _kind(prop: dict[str, Any]) -> str | None:
    """`integer`; `string | null` for a nullable one (a type list, or an anyOf/oneOf of plain types)."""
    kind = prop.get("type")
    if isinstance(kind, str):
        return kind
    options = prop.get("anyOf") or prop.get("oneOf")
    kinds = kind if isinstance(kind, list) else [o.get("type") if isinstance(o, dict) else None for o in options or []]
    names = [k for k in kinds if isinstance(k, str)]
    return " | ".join(names) if names and len(names) == len(kinds) else None


def _about(title: str | None, description: str | None) -> str:
    """`  Title - first line of the description`, or nothing."""
    first = description.strip().splitlines()[0] if description and description.strip() else None
    text = " - ".join(dict.fromkeys(part for part in (title, first) if part))
    return f"  {text}" if text else ""


def _mime(mime: str | None) -> str:
    return f"  [{mime}]" if mime else ""


def tool_result(result: types.CallToolResult) -> str:
    parts = [_content(block) for block in result.content]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, indent=2, ensure_ascii=False))
    text = "\n".join(parts)
    return f"error: {text}" if result.is_error else text


def resource(result: types.ReadResourceResult) -> str:
    return "\n".join(_contents(item) for item in result.contents)


def prompt(result: types.GetPromptResult) -> str:
    lines = [f"# {result.description}"] if result.description else []
    for message in result.messages:
        lines.append(f"[{message.role}] {_content(message.content)}")
    return "\n".join(lines)


def _content(block: Any) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        return f"[{block.type} {block.mime_type}, {_size(block.data)} bytes]"
    if isinstance(block, types.EmbeddedResource):
        return _contents(block.resource)
    if isinstance(block, types.ResourceLink):
        return f"[link {block.uri}]"
    return json.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True))


def _contents(item: types.TextResourceContents | types.BlobResourceContents) -> str:
    if isinstance(item, types.TextResourceContents):
        return item.text
    return f"[{item.mime_type or 'binary'}, {_size(item.blob)} bytes from {item.uri}]"


def _size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return len(data)
