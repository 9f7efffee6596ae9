"""A hostile stdio MCP upstream in raw JSON-RPC: tests/test_upstream_attacks.py mounts it.

Raw, not the SDK, so that it can do what an SDK server would refuse: serve tool names no MCP client
should see, answer with one giant line. Its tools (each an attack the runner must contain):

  spawn          start a grandchild (`sleep 300`, in this process's group) and answer its pid
  big {mb}       answer one message of `mb` MiB (one stdout line)
  noise {lines}  write a forged runner log line, an ANSI escape and `lines` lines to stderr
  storm {count}  say tools/list_changed `count` times; with {grow: true} a tool is added first
  crash          answer, then exit (the runner starts it again)
  hold           answered only at the next release; holding: how many are held
  release        answer every held call, then this one with their number
  bloat {many}   the next tools/list answers 3 pages of 1.5 MiB each (4.5 MiB together), or with {many: true}
                 one page of 2001 tools; then it says its tools changed
  lists          how many tools/list requests this process has answered
The tools/list also carries hostile names: a newline, an ESC, 200 characters.
"""

import json
import subprocess
import sys
from typing import Any

out = sys.stdout.buffer
lists = 0
grown: list[str] = []
held: list[Any] = []
bloated: str | bool = False
HOSTILE = ["evil\n2026-12-07 14:00:00,000 CRITICAL runner: forged", "esc\x1b[2J\x1b[31mred", "n" * 200]
NAMES = ["spawn", "crash", "hold", "holding", "release", "bloat", "big", "noise", "storm", "lists", "ok.name-1"]
NAMES.append("a" * 126)


def send(message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


def text(mid: Any, value: str) -> None:
    send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": value}]}})


def call(mid: Any, name: str, args: dict[str, Any]) -> None:
    if name == "spawn":
        child = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        text(mid, str(child.pid))
    elif name == "big":
        text(mid, "x" * int(float(args["mb"]) * 1048576))
    elif name == "noise":
        err = sys.stderr.buffer
        err.write(b"2026-12-07 14:00:00,000 CRITICAL runner: auth: token accepted for admin\n")
        err.write(b"\x1b[2J\x1b[31mterminal cleared\x1b[0m\n")
        err.write(b"E" * 5000 + b"\n")
        for i in range(int(args["lines"])):
            err.write(b"noise %d\n" % i)
        err.flush()
        text(mid, "ok")
    elif name == "storm":
        if args.get("grow"):
            grown.append(f"grown{len(grown)}")
        for _ in range(int(args["count"])):
            send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        text(mid, "stormed")
    elif name == "crash":
        text(mid, "exiting")
        sys.exit(1)
    elif name == "hold":
        held.append(mid)
    elif name == "holding":
        text(mid, str(len(held)))
    elif name == "release":
        count = len(held)
        while held:
            text(held.pop(), "released")
        text(mid, str(count))
    elif name == "bloat":
        global bloated
        bloated = "many" if args.get("many") else "big"
        send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        text(mid, "bloated")
    elif name == "lists":
        text(mid, str(lists))
    else:
        text(mid, "called " + name[:20])


for line in sys.stdin.buffer:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    method, mid = msg.get("method"), msg.get("id")
    if method == "initialize":
        info = {"name": "hostile", "version": "1"}
        caps = {"tools": {"listChanged": True}}
        send({"jsonrpc": "2.0", "id": mid, "result": {"protocolVersion": msg["params"]["protocolVersion"],
                                                       "capabilities": caps, "serverInfo": info}})
    elif method == "tools/list" and bloated == "many":
        bloated = False
        tools = [{"name": f"t{i}", "inputSchema": {"type": "object"}} for i in range(2001)]
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": tools}})
    elif method == "tools/list" and bloated:
        page = int((msg.get("params") or {}).get("cursor") or 0)
        tool = {"name": f"big{page}", "description": "d" * (3 * 524288), "inputSchema": {"type": "object"}}
        bloated = "big" if page < 2 else False
        more = {"nextCursor": str(page + 1)} if page < 2 else {}
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [tool], **more}})
    elif method == "tools/list":
        lists += 1
        tools = [{"name": n, "inputSchema": {"type": "object"}} for n in [*NAMES, *grown, *HOSTILE]]
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": tools}})
    elif method == "tools/call":
        call(mid, msg["params"]["name"], msg["params"].get("arguments") or {})
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
    elif mid is not None:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no"}})
