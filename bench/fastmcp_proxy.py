"""FastMCP's proxy of an MCP server over HTTP, as its docs write one (`create_proxy(url)`).

Run by bench/upstreams.py with the Python of a virtual environment that holds only `fastmcp`.

    python bench/fastmcp_proxy.py PORT UPSTREAM_URL
"""

import sys

from fastmcp.server import create_proxy

if __name__ == "__main__":
    proxy = create_proxy(sys.argv[2], name="proxy")
    proxy.run(transport="http", host="127.0.0.1", port=int(sys.argv[1]), show_banner=False)
