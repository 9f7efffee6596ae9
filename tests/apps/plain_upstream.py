"""An MCP server written with the plain SDK, served over stdio: the upstream tests/test_upstreams.py mounts.

Run as `python plain_upstream.py`; `PLAIN_MARK` in the environment names it in `whoami`.
"""

import os

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

server = MCPServer("plain")


class Sum(BaseModel):
    total: int


@server.tool()
def add(a: int, b: int) -> Sum:
    """Adds two numbers"""
    return Sum(total=a + b)


@server.tool()
def refuse(reason: str) -> CallToolResult:
    """Always a tool error, with the reason"""
    return CallToolResult(content=[TextContent(type="text", text=f"refused: {reason}")], is_error=True)


@server.tool()
def whoami() -> str:
    """The process id and the mark from the environment"""
    return f"{os.getpid()} {os.environ.get('PLAIN_MARK', '-')}"


@server.tool()
def secret() -> str:
    """Excluded by the manifest"""
    return "never served"


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Adds a tool named `name` and says the tool list changed"""
    server.add_tool(lambda: f"grown {name}", name=name, description="added at run time")
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


@server.tool()
async def steps(count: int, ctx: Context) -> str:
    """Reports progress `count` times"""
    for i in range(count):
        await ctx.report_progress(i + 1, count, f"step {i + 1}")
    return "done"


@server.prompt()
def greet(name: str) -> str:
    """A greeting prompt"""
    return f"Say hello to {name}"


@server.resource("plain://readme", mime_type="text/plain")
def readme() -> str:
    return "plain readme"


@server.resource("plain://items/{item}")
def item(item: str) -> str:
    return f"item {item}"


if __name__ == "__main__":
    server.run()
