"""Every page of an MCP list method, bounded: how the runner reads another server's lists.

Two places read a whole list from an MCP server: an upstream's connection (runner/upstreams/connection.py, its
tools, prompts, resources and templates) and the CLI's `list` and `call` (runner/cli/commands/client.py). They
follow `nextCursor` the same way, so it is written once, here, where both may import it (a feature package must
not import the cli stage). Bounds:

- at most `MAX_PAGES` pages, for both: a server that hands out cursors forever is not followed forever; the
  pages read until then are the list (both stopped there, silently, before this was shared);
- `max_items` and `max_bytes` (the pages' JSON together), only when given: the upstream connection gives them,
  as what every client's list carries must stay small; past either, `ListingTooLarge` says which. The CLI prints one
  answer once and gives none, as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

MAX_PAGES = 1000


class ListingTooLarge(Exception):
    """The list is longer, or larger, than the caller takes; the message says which bound, for the log."""


async def every_page(
    page: Callable[[str | None], Awaitable[Any]],
    attribute: str,
    *,
    max_items: int | None = None,
    max_bytes: int | None = None,
) -> list[Any]:
    """The items of every page `page(cursor)` returns (under `attribute`: "tools", "resource_templates"...)."""
    items: list[Any] = []
    cursor: str | None = None
    size = 0
    for _ in range(MAX_PAGES):
        result = await page(cursor)
        if max_bytes is not None:
            size += len(result.model_dump_json(by_alias=True))
            if size > max_bytes:
                raise ListingTooLarge(f"its {attribute} listing is larger than {max_bytes // 1048576} MiB")
        items.extend(getattr(result, attribute))
        if max_items is not None and len(items) > max_items:
            raise ListingTooLarge(f"it lists more than {max_items} {attribute}")
        cursor = result.next_cursor
        if not cursor:
            break
    return items
