"""Cursor pages for `tools/list`, `resources/list`, `resources/templates/list` and `prompts/list`.

`server.page_size` splits each list, in its usual order, into pages of that many
items; a page that is not the last carries `nextCursor`, as the spec says.

A cursor is opaque to the client and cannot be forged: it is the list method, the
key of the last item sent (a tool or prompt name, a resource URI or URI template)
and its position, signed with HMAC-SHA256 under a key this process draws at start.
Anything else (garbage, a cursor edited by hand, one from another list method,
one from before a restart, an oversized one) is answered with JSON-RPC -32602
(invalid params), which makes the SDK's client drop its cached list and start over.

Across a reload the cursor stays valid and means "after the last item you saw":
the next page starts right after that item wherever it now stands in the new list,
so items that kept their order are neither repeated nor skipped. If that item is
gone, the next page starts at the position it had. The reload's list-changed
notification tells the client to list again from the start anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedRequestParams,
)

T = TypeVar("T")
MAX_CURSOR = 1024  # characters; an honest cursor is well under 300
_TAG = 16  # bytes of HMAC-SHA256 kept: forging one means guessing 128 bits


class Pager:
    """Splits lists into signed-cursor pages; one per server process, kept across reloads."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def page(
        self, method: str, items: Sequence[T], key: Callable[[T], str], cursor: str | None, size: int | None
    ) -> tuple[list[T], str | None]:
        """The page of `items` that `cursor` asks for (the first without one), and the next page's cursor."""
        start = 0 if cursor is None else self._start(method, items, key, cursor)
        if size is None:
            return list(items[start:]), None
        page = list(items[start : start + size])
        end = start + len(page)
        if end >= len(items) or not page:
            return page, None
        return page, self._cursor(method, key(page[-1]), end)

    def _cursor(self, method: str, last: str, end: int) -> str:
        body = _b64(json.dumps([method, last, end], separators=(",", ":")).encode())
        return f"{body}.{_b64(self._sign(body))}"

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:_TAG]

    def _start(self, method: str, items: Sequence[T], key: Callable[[T], str], cursor: str) -> int:
        body, dot, tag = cursor.partition(".")
        if len(cursor) > MAX_CURSOR or not dot:
            raise _invalid(method)
        try:
            signed = hmac.compare_digest(_unb64(tag), self._sign(body))
            decoded: Any = json.loads(_unb64(body)) if signed else None
        except (ValueError, binascii.Error):
            raise _invalid(method) from None
        if not _shape(decoded) or decoded[0] != method:
            raise _invalid(method)
        _, last, end = decoded
        for position, item in enumerate(items):
            if key(item) == last:
                return position + 1
        return min(end, len(items))


def _shape(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[1], str)
        and isinstance(value[2], int)
        and value[2] >= 0
    )


def _invalid(method: str) -> MCPError:
    return MCPError(
        code=INVALID_PARAMS,
        message=f"{method}: invalid cursor (cursors are opaque, and a server restart ends them: list from the start)",
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def serve_pages(server: Any) -> None:
    """Answer the four list methods of `server` (a FastMCPSignInWrapper) page by page.

    Each reads the server's current `page_size` and lists through its public `list_*`
    methods, so per-entry scopes filter first and a page holds only what the caller
    may see. Registered with the low-level server's public `add_request_handler`,
    replacing MCPServer's handlers, which ignore the cursor.
    """
    pager = Pager()
    lowlevel = server._lowlevel_server
    for method, lister, key, result, field in _LISTS:

        def handle_with(method: str, lister: str, key: Callable[[Any], str], result: Any, field: str) -> Any:
            async def handle(ctx: Any, params: PaginatedRequestParams) -> Any:
                items = await getattr(server, lister)()
                page, cursor = pager.page(method, items, key, params.cursor, server.page_size)
                return result(**{field: page, "next_cursor": cursor})

            return handle

        lowlevel.add_request_handler(method, PaginatedRequestParams, handle_with(method, lister, key, result, field))


# method, the server's list method, an item's key, the result type and its list field
_LISTS: list[tuple[str, str, Callable[[Any], str], Any, str]] = [
    ("tools/list", "list_tools", lambda tool: tool.name, ListToolsResult, "tools"),
    ("prompts/list", "list_prompts", lambda prompt: prompt.name, ListPromptsResult, "prompts"),
    ("resources/list", "list_resources", lambda resource: str(resource.uri), ListResourcesResult, "resources"),
    (
        "resources/templates/list",
        "list_resource_templates",
        lambda template: template.uri_template,
        ListResourceTemplatesResult,
        "resource_templates",
    ),
]
