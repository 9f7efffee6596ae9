"""The anchor: the same `add` tool written by hand on the SDK's MCPServer, no runner involved."""

import sys

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("handwritten", log_level="WARNING")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two numbers"""
    return a + b


if __name__ == "__main__":
    mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
