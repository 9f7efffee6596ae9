"""The anchor: the same tools written by hand on the SDK's MCPServer, run as the SDK runs it by default.

Run by bench/throughput.py with the Python of a virtual environment that holds only `mcp`,
so it picks up none of the runner's choices (no uvloop, no httptools: the SDK's defaults).

    python bench/handwritten.py PORT [EXTRA_TOOLS]

EXTRA_TOOLS > 0 also registers f0..f{N-1} from the modules extra_*.py in the working
directory (the bench writes them), the same functions the runner's 1,000-tool manifest names.
"""

import importlib
import sys

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("handwritten")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two numbers"""
    return a + b


if __name__ == "__main__":
    extra = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    sys.path.insert(0, ".")
    for i in range(extra):
        mcp.tool()(getattr(importlib.import_module(f"extra_{i // 100}"), f"f{i}"))
    mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
