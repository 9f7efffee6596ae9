"""A small MCP server written with the plain SDK, over stdio: the kind of server `upstreams:` mounts."""

from datetime import datetime, timezone

from mcp.server.mcpserver import MCPServer

server = MCPServer("clock")


@server.tool()
def now(zone: str = "UTC") -> str:
    """The current time, in ISO 8601 (only UTC here)"""
    return datetime.now(timezone.utc).isoformat(timespec="seconds") + f" {zone}"


@server.tool()
def add_days(date: str, days: int) -> str:
    """The date `days` after `date` (YYYY-MM-DD)"""
    from datetime import date as day, timedelta

    return (day.fromisoformat(date) + timedelta(days=days)).isoformat()


@server.prompt()
def schedule(task: str) -> str:
    """A prompt to plan a task"""
    return f"Plan when to do: {task}"


if __name__ == "__main__":
    server.run()  # stdio
