"""A `tools/call` of an `openapi:` operation through the runner, against the same HTTP request straight to the API.

The API is a Starlette app on uvicorn (this file, run with `--api PORT`) answering `GET /pet/{petId}` with a
small JSON object. The runner serves it from an inline OpenAPI document (`openapi:` with `prefix: ""`, no auth),
so the call is `getPetById` with `{"petId": 1}`; straight to the API it is `GET /pet/1` on a keep-alive
connection. The MCP load is bench/load.py's raw HTTP (handshake-era sessions); the direct load is the same kind
of raw keep-alive requests. Rounds rotate the two, and the table shows medians over rounds and ratios within the
same run.

    python bench/openapi.py [--rounds 3] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from load import FAILURES, Call, Load, Result, Rounds, describe, pin_generator, print_against_direct, read_response  # noqa: E402
from throughput import Server  # noqa: E402

from tests.helpers import runner_cmd  # noqa: E402

PET = {"id": 1, "name": "Rex", "status": "available"}
CALL = Call("tools/call", {"name": "getPetById", "arguments": {"petId": 1}}, b'"structuredContent":{"id":1,')


def manifest(api_port: int) -> str:
    return f"""name: front
openapi:
  - name: pets
    prefix: ""
    base_url: http://127.0.0.1:{api_port}
    spec:
      openapi: 3.0.3
      info: {{title: Pets, version: "1"}}
      paths:
        /pet/{{petId}}:
          get:
            operationId: getPetById
            parameters:
              - {{name: petId, in: path, required: true, schema: {{type: integer}}}}
"""


def serve_api(port: int) -> None:
    """The API: one operation, JSON out (run in its own process, pinned like the runner)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def get_pet(request: Request) -> JSONResponse:
        return JSONResponse({**PET, "id": request.path_params["pet_id"]})

    app = Starlette(routes=[Route("/pet/{pet_id:int}", get_pet, methods=["GET"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def direct(port: int, concurrency: int, seconds: float, warmup: float = 0.5) -> Result:
    """`GET /pet/1` straight to the API on `concurrency` keep-alive connections, one request in flight on each."""
    result = Result(seconds=seconds)
    request = f"GET /pet/1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n".encode()
    start = time.perf_counter() + warmup
    window = (start, start + seconds)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (started := time.perf_counter()) < window[1]:
                try:
                    writer.write(request)
                    status, _, body = await read_response(reader)
                except FAILURES as exc:
                    result.fail(describe(exc))
                    return
                ended = time.perf_counter()
                if not window[0] <= ended <= window[1]:
                    continue
                if status == 200 and b'"id":1,' in body:
                    result.calls += 1
                    result.latencies_ns.append(int((ended - started) * 1e9))
                else:
                    result.fail(f"HTTP {status} {body[:200]!r}")
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


def measure(api: Server, runner: Server, rounds: int, seconds: float) -> Rounds:
    """(through, concurrency) -> per round (median latency ms, calls/s)."""
    table: Rounds = {}
    for r in range(rounds):
        order = ["direct", "runner"] if r % 2 == 0 else ["runner", "direct"]
        for concurrency in (1, 8):
            for through in order:
                if through == "direct":
                    result = asyncio.run(direct(api.port, concurrency, seconds))
                else:
                    assert runner.proc is not None
                    load = Load(runner.port, runner.proc.pid, concurrency=concurrency, seconds=seconds)
                    result = asyncio.run(load.run(CALL))
                if result.errors:
                    print(f"  {through} c={concurrency}: {result.errors} errors {result.problems}", file=sys.stderr)
                table.setdefault((through, concurrency), []).append((result.percentile(0.5), result.rate))
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--api", type=int, metavar="PORT", help=argparse.SUPPRESS)  # this file as the API
    args = parser.parse_args()
    if args.api is not None:
        serve_api(args.api)
        return 0
    print(f"load generator: {pin_generator()}", file=sys.stderr)
    folder = Path(tempfile.mkdtemp(prefix="mcp-runner-bench-openapi-"))
    api = Server("api", lambda port: [sys.executable, str(Path(__file__).resolve()), "--api", str(port)], folder)
    runner = Server("runner", lambda port: runner_cmd("serve", "front.yaml", "--port", str(port)), folder)
    try:
        api.start()
        (folder / "front.yaml").write_text(manifest(api.port))
        runner.start()
        table = measure(api, runner, args.rounds, args.seconds)
    finally:
        runner.stop()
        api.stop()
    print_against_direct(table, ["direct", "runner"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
