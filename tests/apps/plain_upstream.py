"""An MCP server written with the plain SDK: the upstream tests/test_upstreams.py mounts.

Run as `python plain_upstream.py` (stdio) or `python plain_upstream.py --http PORT` (streamable HTTP on
127.0.0.1, where `ports` says which client TCP connections have sent it requests); `PLAIN_MARK` in the
environment names it in `whoami`.
"""

import os
import sys
import time
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, SamplingMessage, TextContent
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


RUNNING: list[str] = []  # the topics of the chatty calls running now
TOGETHER = anyio.Condition()


@server.tool()
async def chatty(topic: str, ctx: Context, together: int = 1) -> str:
    """Logs, asks the user (elicitation) and the client's model (sampling) during the call, and says the answers

    With `together`, it first waits (at most 30 s) until that many chatty calls are running at once.
    """
    RUNNING.append(topic)
    try:
        async with TOGETHER:
            TOGETHER.notify_all()
            with anyio.fail_after(30):
                while len(RUNNING) < together:
                    await TOGETHER.wait()
        return await _chat(topic, ctx)
    finally:
        RUNNING.remove(topic)


async def _chat(topic: str, ctx: Context) -> str:
    await ctx.info(f"thinking about {topic}")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "title": "About the topic",  # top-level annotations: a client shows them above the form
        "description": f"What you think about {topic}",
        "properties": {"answer": {"type": "string", "title": "Answer"}},
        "required": ["answer"],
    }
    asked = await ctx.session.elicit_form(f"what about {topic}?", schema, related_request_id=ctx.request_id)
    question = SamplingMessage(role="user", content=TextContent(type="text", text=f"a word for {topic}"))
    sampled = await ctx.session.create_message([question], max_tokens=10, related_request_id=ctx.request_id)
    word = sampled.content.text if isinstance(sampled.content, TextContent) else "?"
    return f"{asked.action} {(asked.content or {}).get('answer')} {word}"


# The client (host, port) of every HTTP request, one per TCP connection, with what its first request was.
PORTS: dict[tuple[str, int], str] = {}
EXPIRED: set[str] = set()  # sessions this server answers 404, as a server that expired (or forgot) them does


def expire(ctx: Context) -> str:
    """(HTTP only) From now on this session is unknown here: its requests get 404, as after a restart"""
    EXPIRED.add(str(ctx.request_context.request.headers.get("mcp-session-id")))  # type: ignore[union-attr]
    return "expired"


def big(size: int) -> str:
    """(HTTP only) A text of `size` bytes"""
    return "x" * size


@server.tool()
def ports() -> list[str]:
    """The client TCP connections that have sent this server requests (over HTTP), oldest first: each one's first
    request, its user agent (the runner's calls send none, its SDK client does) and when it came"""
    return list(PORTS.values())


def counting(app: Any) -> Any:
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("client") and tuple(scope["client"]) not in PORTS:
            agent = dict(scope["headers"]).get(b"user-agent", b"no user agent").decode("latin-1")
            PORTS[tuple(scope["client"])] = f"{scope['method']} by {agent} at {time.monotonic():.3f}"
        if scope["type"] == "http" and dict(scope["headers"]).get(b"mcp-session-id", b"").decode() in EXPIRED:
            body = b'{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":"Session not found"}}'
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapped


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:
        import uvicorn

        server.add_tool(expire)
        server.add_tool(big)
        app = counting(server.streamable_http_app())
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    else:
        server.run()
