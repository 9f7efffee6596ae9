"""An MCP upstream over streamable HTTP whose `hold` requests answer only at the next `release`: requests one
client can keep in flight for as long as it likes (tests/test_busy.py mounts it).

Run as `python held_upstream.py PORT` (plain SDK, 127.0.0.1). Each of these is held: the tool `hold`, the prompt
`hold`, the resource `held://fixed` and the template `held://item/{n}`. `holding` says how many are held now,
`release` answers them all ("released") and says how many it released; `quick` (a tool and a prompt) answers at
once; `ask` asks the calling client a question (elicitation) and answers with its answer. A held request gives up
by itself after 60 s, so that nothing waits for ever.
"""

import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("held")
HELD: list[anyio.Event] = []  # one per request held now


async def held() -> str:
    event = anyio.Event()
    HELD.append(event)
    try:
        with anyio.move_on_after(60):  # bounded
            await event.wait()
        return "released" if event.is_set() else "gave up"
    finally:
        HELD.remove(event)


@server.tool(name="hold")
async def hold_tool() -> str:
    """Answers at the next release"""
    return await held()


@server.prompt(name="hold")
async def hold_prompt() -> str:
    """Answers at the next release"""
    return await held()


@server.resource("held://fixed")
async def fixed() -> str:
    return await held()


@server.resource("held://item/{n}")
async def item(n: str) -> str:
    return await held()


@server.tool()
def holding() -> int:
    """How many requests are held now"""
    return len(HELD)


@server.tool()
def release() -> int:
    """Answers every held request; says how many"""
    count = len(HELD)
    for event in HELD:
        event.set()
    return count


@server.tool()
async def ask(ctx: Context) -> str:
    """Asks the client, and answers with what it said"""
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    asked = await ctx.session.elicit_form("go on?", schema, related_request_id=ctx.request_id)
    return f"{asked.action} {(asked.content or {}).get('answer')}"


@server.tool(name="quick")
def quick_tool() -> str:
    """Answers at once"""
    return "quick"


@server.prompt(name="quick")
def quick_prompt() -> str:
    """Answers at once"""
    return "quick"


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
