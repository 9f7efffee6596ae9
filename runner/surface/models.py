"""Manifest models for icons and `_meta`, shared by the server, tools, resources and prompts.

Key names follow the manifest's snake_case (`mime_type`, as on resources); they map
one to one onto the MCP `Icon` object. Values are checked here as far as a single
value can be; `_meta` keys and JSON data are checked in `checks.py`, where each
problem can be located at its own key.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from mcp_types import Icon as MCPIcon
from pydantic import BaseModel, ConfigDict, Field, field_validator

_MIME_TYPE = re.compile(r"^[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*$")  # RFC 6838: image/svg+xml
_SIZE = re.compile(r"^([1-9][0-9]{0,4}x[1-9][0-9]{0,4}|any)$")

# The MCP `_meta` key grammar (spec, "General fields"): an optional prefix of dot-separated labels
# and a slash, then a name. Repeated in `checks.py` as a compiled pattern; here it feeds the JSON Schema.
META_KEY = (
    r"^(([A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?)(\.[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?)*/)?"
    r"([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?$"
)
META_DESCRIPTION = (
    "the MCP `_meta` object sent with this entry, as written: keys like `com.example/owner` "
    "(prefixes whose second label is `modelcontextprotocol` or `mcp` are reserved), JSON values"
)
# What an editor can check of a declared input/output schema: MCP wants an object schema at the root.
OBJECT_SCHEMA: dict[str, Any] = {"required": ["type"], "properties": {"type": {"const": "object"}}}
Meta = Annotated[
    dict[str, Any],
    Field(description=META_DESCRIPTION, json_schema_extra={"propertyNames": {"pattern": META_KEY}}),
]


class Icon(BaseModel):
    """One icon a client may show for the server or an entry (MCP `Icon`)."""

    model_config = ConfigDict(extra="forbid")

    src: str = Field(
        min_length=1,
        description="an https:// or http:// URL, or a data: URI (data:image/png;base64,...)",
    )
    mime_type: str | None = Field(default=None, description="e.g. image/png; optional when src says it")
    sizes: list[str] | None = Field(default=None, description='e.g. ["48x48", "96x96"] or ["any"] for SVG')
    theme: Literal["light", "dark"] | None = Field(
        default=None, description="the background the icon is meant for: light or dark"
    )

    @field_validator("src")
    @classmethod
    def _src(cls, value: str) -> str:
        scheme = value.partition(":")[0].lower()
        if scheme in ("http", "https"):
            if not value.lower().startswith(f"{scheme}://") or len(value) <= len(scheme) + 3:
                raise ValueError(f"must be a URL like https://example.com/icon.png, got {value!r}")
        elif scheme == "data":
            head, comma, payload = value.partition(",")
            if not comma or not head.lower().startswith("data:image/") or not payload:
                raise ValueError("a data: URI must be data:image/<type>[;base64],<data>")
        else:
            raise ValueError(f"must be an https://, http:// or data: URI, got scheme {scheme!r}")
        return value

    @field_validator("mime_type")
    @classmethod
    def _mime_type(cls, value: str | None) -> str | None:
        if value is not None and not _MIME_TYPE.match(value):
            raise ValueError(f"must be a MIME type like image/png, got {value!r}")
        return value

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, value: list[str] | None) -> list[str] | None:
        for size in value or []:
            if not _SIZE.match(size):
                raise ValueError(f"each size is WIDTHxHEIGHT (48x48) or any, got {size!r}")
        return value

    def to_mcp(self) -> MCPIcon:
        return MCPIcon(src=self.src, mime_type=self.mime_type, sizes=self.sizes, theme=self.theme)


def mcp_icons(icons: list[Icon] | None) -> list[MCPIcon] | None:
    return [icon.to_mcp() for icon in icons] if icons else None
