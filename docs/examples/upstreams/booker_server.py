"""An upstream that asks the user mid-call: a plain-SDK MCP server over streamable HTTP on 127.0.0.1:9101.

Run it next to the runner: `python docs/examples/upstreams/booker_server.py` (a port as its argument to
use another one); mounted as `booker`, its tool is served as booker_book.
"""

import sys

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

server = MCPServer("booker")


class Booking(BaseModel):
    guests: int = Field(description="How many people?")
    confirm: bool = Field(description="Book it?")


@server.tool()
async def book(restaurant: str, ctx: Context) -> str:
    """Book a table; asks the user how many guests, and to confirm"""
    answer = await ctx.elicit(f"Book a table at {restaurant}?", Booking)
    if answer.action != "accept" or not answer.data.confirm:
        return f"Not booked ({answer.action})."
    return f"Booked a table for {answer.data.guests} at {restaurant}."


if __name__ == "__main__":
    server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]) if sys.argv[1:] else 9101)
