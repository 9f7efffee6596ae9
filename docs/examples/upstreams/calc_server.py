"""The `calc` upstream of front.yaml: a plain-SDK MCP server over streamable HTTP on 127.0.0.1:9100.

Run it next to the runner: `python docs/examples/upstreams/calc_server.py` (a port as its argument
to use another one); front.yaml mounts it as calc (calc_mul).
"""

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("calc")


@server.tool()
def mul(a: int, b: int) -> int:
    """a times b"""
    return a * b


@server.tool()
def add(a: int, b: int) -> int:
    """a plus b"""
    return a + b


if __name__ == "__main__":
    server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]) if sys.argv[1:] else 9100)
