"""The floor of one MCP exchange over HTTP: an ASGI app that answers the bench's requests with fixed bytes.

Served by uvicorn with the runner's own choices (uvloop, httptools), it does no MCP work at all: it answers
`initialize` with a session id, a notification with 202, a `DELETE` with 200, and any other request with the
result of `add(1, 2)` under the request's id. What it costs per call is what the HTTP stack and the load
generator cost, so bench/upstreams.py can show how much of a call's latency is the SDK's server path
(bench/handwritten.py's latency minus this one's).

    python bench/bare_http.py PORT
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]
COMPACT = (",", ":")  # as the SDK writes it, so the bench's expected bytes match
RESULT = {"content": [{"type": "text", "text": "3"}], "structuredContent": {"result": 3}, "isError": False}


Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    if scope["method"] == "DELETE":
        status, answer = 200, b""
    else:
        request = json.loads(body)
        if "id" not in request:
            status, answer = 202, b""
        elif request.get("method") == "initialize":
            headers.append((b"mcp-session-id", b"bare"))
            result = {"protocolVersion": request["params"]["protocolVersion"], "capabilities": {}, "serverInfo": {}}
            status, answer = 200, json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
        else:
            status = 200
            answer = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": RESULT}, separators=COMPACT).encode()
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools", log_level="warning")
