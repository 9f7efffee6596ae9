"""Prompts with a `_meta` object.

The SDK's `Prompt` has `icons` but no `meta`, and `MCPServer.list_prompts` sends none;
this subclass carries it, and `FastMCPSignInWrapper.list_prompts` adds it to the
listing, as the SDK does for tools, resources and templates.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.prompts import Prompt
from pydantic import Field


class MetaPrompt(Prompt):
    meta: dict[str, Any] | None = Field(default=None, description="the prompt's _meta object", exclude=True)


def prompt_meta(prompt: Prompt | None) -> dict[str, Any] | None:
    return getattr(prompt, "meta", None)
