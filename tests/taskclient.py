"""A 2026-07-28 client of the tasks extension, over raw JSON-RPC (the SDK's client does not speak it).

Used by tests/test_tasks.py and tests/test_tasks_redis.py against real servers with real tokens.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

MODERN = "2026-07-28"
TASKS = "io.modelcontextprotocol/tasks"

# Tools whose bodies wait for a file, so a test decides when a task ends (no clock involved).
JOBS = textwrap.dedent(
    '''
    import time
    from pathlib import Path

    import anyio
    from mcp.server.mcpserver import Context
    from pydantic import BaseModel

    VERSION = "v1"
    GATES = Path(__file__).parent / "gates"


    async def gated(name: str) -> str:
        """Starts, then waits until gates/<name>.release exists (gates/<name>.cancelled if it is stopped)."""
        GATES.mkdir(exist_ok=True)
        (GATES / f"{name}.started").touch()
        try:
            while not (GATES / f"{name}.release").exists():
                await anyio.sleep(0.02)
        except anyio.get_cancelled_exc_class():
            (GATES / f"{name}.cancelled").touch()
            raise
        (GATES / f"{name}.finished").touch()
        return f"{VERSION}:{name}"


    def held(name: str) -> str:
        """A sync tool: its thread (which no cancellation stops) waits until gates/<name>.release exists."""
        GATES.mkdir(exist_ok=True)
        (GATES / f"{name}.started").touch()
        while not (GATES / f"{name}.release").exists():
            time.sleep(0.02)
        (GATES / f"{name}.finished").touch()
        return f"{VERSION}:{name}"


    async def big(size: int) -> str:
        """A result of `size` characters."""
        return "x" * size


    class Answer(BaseModel):
        word: str


    async def ask(question: str, ctx: Context) -> str:
        """Asks the user while it runs as a task."""
        answer = await ctx.elicit(question, Answer)
        return f"{VERSION}:{answer.data.word}" if answer.action == "accept" else "declined"
    '''
)


def manifest(folder: Path, jwks_url: str, server: str = "") -> Path:
    """A manifest with the `gated` tool as an optional task, auth against the test's JWKS server."""
    (folder / "jobs.py").write_text(JOBS)
    text = textwrap.dedent(
        f"""
        name: tasks-test
        signin:
          app_id: ${{MCP_APP_ID}}
          base_url: {jwks_url}
          resource: ${{MCP_APP_RESOURCE}}
        tools:
          - function: jobs:gated
            task: optional
          - function: jobs:ask
            task: required
          - function: jobs:big
            task: optional
          - function: jobs:held
            task: optional
        """
    )
    path = folder / "tasks.yaml"
    path.write_text(text + (f"server:\n{textwrap.indent(server, '  ')}" if server else ""))
    return path


class RPCError(Exception):
    def __init__(self, error: dict[str, Any], status: int) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.data = error.get("data")
        self.status = status


@dataclass
class TaskClient:
    url: str
    token: str
    tasks: bool = True  # declare the extension on every request
    elicitation: bool = True  # declare the elicitation capability on every request
    http: httpx2.Client = field(default_factory=lambda: httpx2.Client(timeout=30))
    _ids: int = 0

    def capabilities(self) -> dict[str, Any]:
        declared: dict[str, Any] = {"extensions": {TASKS: {}}} if self.tasks else {}
        return {**declared, "elicitation": {}} if self.elicitation else declared

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._ids += 1
        capabilities = self.capabilities()
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": capabilities,
        }
        body = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": {**params, "_meta": meta}}
        headers = {
            **({"Authorization": f"Bearer {self.token}"} if self.token else {}),
            "Accept": "application/json, text/event-stream",
            "Mcp-Protocol-Version": MODERN,
            "Mcp-Method": method,
        }
        name = params.get("taskId", params.get("name"))
        if name is not None:
            headers["Mcp-Name"] = str(name)
        response = self.http.post(self.url, json=body, headers=headers)
        answer = _answer(response)
        if "error" in answer:
            raise RPCError(answer["error"], response.status_code)
        return answer["result"]  # type: ignore[no-any-return]

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def get(self, task_id: str) -> dict[str, Any]:
        return self.request("tasks/get", {"taskId": task_id})

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self.request("tasks/cancel", {"taskId": task_id})

    def update(self, task_id: str, responses: dict[str, Any]) -> dict[str, Any]:
        return self.request("tasks/update", {"taskId": task_id, "inputResponses": responses})

    def until(self, task_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
        """Poll tasks/get (bounded) until the task reads one of `statuses`."""
        deadline = time.monotonic() + timeout
        while (task := self.get(task_id))["status"] not in statuses:
            assert time.monotonic() < deadline, f"task {task_id} never reached {statuses}: {task}"
            time.sleep(0.05)
        return task

    def listen(self, task_ids: list[str], frames: list[dict[str, Any]]) -> threading.Thread:
        """Open a `subscriptions/listen` stream for `task_ids` on a thread that appends every frame to `frames`.

        The stream ends when this client is closed (or the server ends it)."""
        self._ids += 1
        capabilities = self.capabilities()
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": capabilities,
        }
        params = {"notifications": {"taskIds": task_ids}, "_meta": meta}
        body = {"jsonrpc": "2.0", "id": self._ids, "method": "subscriptions/listen", "params": params}
        headers = {
            **({"Authorization": f"Bearer {self.token}"} if self.token else {}),
            "Accept": "application/json, text/event-stream",
            "Mcp-Protocol-Version": MODERN,
            "Mcp-Method": "subscriptions/listen",
        }

        def read() -> None:
            try:
                with self.http.stream("POST", self.url, json=body, headers=headers) as response:
                    if not response.headers.get("content-type", "").startswith("text/event-stream"):
                        frames.append(json.loads(response.read()))
                        return
                    for line in response.iter_lines():
                        if line.startswith("data:"):
                            frames.append(json.loads(line[5:]))
            except httpx2.HTTPError:
                pass  # closed by the test

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.http.close()


def frame(frames: list[dict[str, Any]], matches: Any, timeout: float = 30) -> dict[str, Any]:
    """The first frame for which `matches(frame)` holds, waiting (bounded) for it to arrive."""
    deadline = time.monotonic() + timeout
    while True:
        for found in list(frames):
            if matches(found):
                return found
        assert time.monotonic() < deadline, f"no such frame within {timeout:g} s: {frames}"
        time.sleep(0.02)


def _answer(response: httpx2.Response) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        frames = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
        return next(f for f in frames if "id" in f)  # type: ignore[no-any-return]
    return response.json()  # type: ignore[no-any-return]


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)
