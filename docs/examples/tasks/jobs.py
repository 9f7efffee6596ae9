"""Long-running tools that run as tasks (docs/tasks.md)."""

import anyio
from mcp.server.mcpserver import Context
from pydantic import BaseModel


class Go(BaseModel):
    go: bool


async def build_report(days: int) -> str:
    """Builds a report over the last `days` days: takes a while."""
    await anyio.sleep(days * 0.1)
    return f"report over {days} days: 42 rows"


async def purge(folder: str, ctx: Context) -> str:
    """Deletes a folder's old files, after asking."""
    answer = await ctx.elicit(f"Purge {folder}?", Go)
    if answer.action != "accept" or not answer.data.go:
        return "nothing purged"
    await anyio.sleep(1)
    return f"purged {folder}"
