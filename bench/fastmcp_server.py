"""The other anchor: the same tools on FastMCP (PyPI `fastmcp`, latest release), as its docs run it.

Run by bench/throughput.py with the Python of a virtual environment that holds only `fastmcp`.

    python bench/fastmcp_server.py PORT [EXTRA_TOOLS]
"""

import importlib
import sys

from fastmcp import FastMCP

mcp = FastMCP("fastmcp")


@mcp.tool
def add(a: int, b: int) -> int:
    """Add two numbers"""
    return a + b


if __name__ == "__main__":
    extra = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    sys.path.insert(0, ".")
    for i in range(extra):
        mcp.tool(getattr(importlib.import_module(f"extra_{i // 100}"), f"f{i}"))
    mcp.run(transport="http", host="127.0.0.1", port=int(sys.argv[1]), show_banner=False)
