"""A small HTTP API on loopback for the `openapi:` tests: the Petstore 3 routes it needs, plus probes.

Every request is recorded (method, raw path, query, headers, client port) so a test can assert what the
runner sent: that no argument left the operation's path, that the client's token never arrived, that
calls share a pooled connection.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.helpers import free_port, wait_for_port


@dataclass
class Seen:
    method: str
    raw_path: str
    query: str
    headers: dict[str, str]
    client_port: int
    body: bytes


@dataclass
class PetsAPI:
    port: int = field(default_factory=free_port)
    seen: list[Seen] = field(default_factory=list)
    pets: dict[int, dict[str, Any]] = field(default_factory=dict)
    gate: threading.Event = field(default_factory=threading.Event)  # /v1/gate answers once it is set
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _app(self) -> Any:
        routes = self._routes()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            # Any path under /v1/probe/ (line breaks too, which no route pattern matches) answers what it got.
            if scope["type"] == "http" and scope["raw_path"].startswith(b"/v1/probe/"):
                request = Request(scope, receive)
                await record(request)
                body = {"raw_path": scope["raw_path"].decode("latin-1"), "query": scope["query_string"].decode()}
                await JSONResponse(body)(scope, receive, send)
                return
            await routes(scope, receive, send)

        async def record(request: Request) -> None:
            await self._record(request)

        return app

    async def _record(self, request: Request) -> None:
        client = request.client.port if request.client else 0
        self.seen.append(
            Seen(
                request.method,
                request.scope["raw_path"].decode("latin-1"),
                request.url.query,
                {k.lower(): v for k, v in request.headers.items()},
                client,
                await request.body(),
            )
        )

    def _routes(self) -> Starlette:
        record = self._record

        async def add_pet(request: Request) -> Response:
            await record(request)
            pet = await request.json()
            if not isinstance(pet, dict) or "name" not in pet:
                return JSONResponse({"message": "Invalid input"}, status_code=422)
            pet.setdefault("id", len(self.pets) + 1)
            self.pets[int(pet["id"])] = pet
            return JSONResponse(pet)

        async def get_pet(request: Request) -> Response:
            await record(request)
            pet = self.pets.get(int(request.path_params["pet_id"]))
            return JSONResponse(pet) if pet else JSONResponse({"message": "Pet not found"}, status_code=404)

        async def delete_pet(request: Request) -> Response:
            await record(request)
            if request.headers.get("api_key") != "special-key":
                return PlainTextResponse("missing api_key " + "x" * 5000, status_code=400)
            self.pets.pop(int(request.path_params["pet_id"]), None)
            return Response(status_code=200)

        async def find_by_status(request: Request) -> Response:
            await record(request)
            status = request.query_params.get("status", "available")
            return JSONResponse([p for p in self.pets.values() if p.get("status") == status])

        async def inventory(request: Request) -> Response:
            await record(request)
            counts: dict[str, int] = {}
            for pet in self.pets.values():
                counts[pet.get("status", "available")] = counts.get(pet.get("status", "available"), 0) + 1
            return JSONResponse(counts)

        async def text(request: Request) -> Response:
            await record(request)
            return PlainTextResponse("plain words")

        async def gate(request: Request) -> Response:
            await record(request)
            for _ in range(3000):  # bounded: at most some 30 s
                if self.gate.is_set():
                    break
                await anyio.sleep(0.01)
            return JSONResponse({"gate": "open" if self.gate.is_set() else "timed out"})

        async def big(request: Request) -> Response:
            await record(request)
            return Response(b"[" + b"1," * (3 * 1024 * 1024) + b"1]", media_type="application/json")

        async def document(request: Request) -> Response:
            await record(request)
            return PlainTextResponse((Path(__file__).parent / "pets.yaml").read_text(), media_type="application/yaml")

        async def elsewhere(request: Request) -> Response:
            await record(request)
            return JSONResponse({"outside": True})

        return Starlette(
            routes=[
                Route("/api/v3/pet", add_pet, methods=["POST"]),
                Route("/api/v3/pet/findByStatus", find_by_status, methods=["GET"]),
                Route("/api/v3/pet/{pet_id:int}", get_pet, methods=["GET"]),
                Route("/api/v3/pet/{pet_id:int}", delete_pet, methods=["DELETE"]),
                Route("/api/v3/store/inventory", inventory, methods=["GET"]),
                Route("/v1/text", text, methods=["GET"]),
                Route("/v1/big", big, methods=["GET"]),
                Route("/v1/gate", gate, methods=["GET"]),
                Route("/openapi.yaml", document, methods=["GET"]),
                Route("/{rest:path}", elsewhere, methods=["GET", "POST", "DELETE"]),
            ]
        )

    def start(self) -> PetsAPI:
        # Idle connections stay open for ten minutes: one that closes was closed by the runner.
        config = uvicorn.Config(
            self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", timeout_keep_alive=600
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_for_port(self.port)
        return self

    def open_ports(self) -> set[int]:
        """The client ports of the connections open now."""
        assert self._server is not None
        return {c.client[1] for c in list(self._server.server_state.connections) if getattr(c, "client", None)}

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
