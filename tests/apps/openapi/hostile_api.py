"""A hostile HTTP API and spec host on loopback for tests/test_openapi_attacks.py (attacker21's openapi findings).

The PetsAPI server (start, stop, request recording, the `gate` a held call waits on) with other routes:
answers that cost the runner memory or time (an indentation bomb, nesting, a trickle), an unknown
charset, and spec documents that redirect, trickle, need a key in their URL or pick another host.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.apps.openapi.pets_api import PetsAPI

# 40 000 zeros 20 lists deep: 80 KB compact; indented, each zero sits on its own line after 40 spaces (1.7 MB).
BOMB = b"[" * 20 + b",".join([b"0"] * 40_000) + b"]" * 20
TRICKLE_BYTES = 16  # one every 0.25 s: 4 s in all


def spec(servers_url: str, variables: dict[str, Any] | None = None) -> str:
    """A one-operation document whose first servers URL is `servers_url`."""
    server: dict[str, Any] = {"url": servers_url, **({"variables": variables} if variables else {})}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "servers": [server],
        "paths": {"/text": {"get": {"operationId": "text"}}},
    }
    return yaml.safe_dump(document)


@dataclass
class HostileAPI(PetsAPI):
    def _routes(self) -> Starlette:
        record = self._record

        async def bomb(request: Request) -> Response:
            return Response(BOMB, media_type="application/json")

        async def deep(request: Request) -> Response:
            levels = int(request.query_params["levels"])
            return Response(b"[" * levels + b"]" * levels, media_type="application/json")

        async def charset(request: Request) -> Response:
            return Response(b"plain words", headers={"content-type": "text/plain; charset=x-no-such"})

        async def trickle(request: Request) -> Response:
            async def drip() -> AsyncIterator[bytes]:
                for _ in range(TRICKLE_BYTES):
                    yield b"."
                    await anyio.sleep(0.25)

            return StreamingResponse(drip(), media_type="text/plain")

        async def gate(request: Request) -> Response:
            await record(request)
            with anyio.move_on_after(30):  # bounded
                while not self.gate.is_set():
                    await anyio.sleep(0.01)
            return JSONResponse({"gate": "open" if self.gate.is_set() else "timed out"})

        async def header(request: Request) -> Response:
            return JSONResponse({"tag": request.headers.get("x-tag")})

        async def item(request: Request) -> Response:
            return JSONResponse({"id": request.path_params["id"]})

        async def redirect(request: Request) -> Response:
            return RedirectResponse(f"http://localhost:{self.port}/openapi.yaml", status_code=302)

        async def document(request: Request) -> Response:
            await record(request)
            return PlainTextResponse((Path(__file__).parent / "pets.yaml").read_text(), media_type="application/yaml")

        async def slow_document(request: Request) -> Response:
            text = spec(f"{self.base_url}/v1").encode()

            async def drip() -> AsyncIterator[bytes]:
                for start in range(0, len(text), 8):
                    yield text[start : start + 8]
                    await anyio.sleep(0.2)

            return StreamingResponse(drip(), media_type="application/yaml")

        async def private(request: Request) -> Response:
            return PlainTextResponse("no key, no spec", status_code=401)

        async def elsewhere(request: Request) -> Response:  # the API on another host than the document's
            return PlainTextResponse(spec(f"http://localhost:{self.port}/v1"))

        async def tenant(request: Request) -> Response:  # a server variable that would move the host
            variables = {"tenant": {"default": f"127.0.0.1:{self.port}/steal?"}}
            return PlainTextResponse(spec("http://{tenant}.vendor.example/v1", variables))

        async def own_host(request: Request) -> Response:  # the API on the document's own host: fine
            return PlainTextResponse(spec(f"{self.base_url}/v1"))

        async def text(request: Request) -> Response:
            await record(request)
            return PlainTextResponse("plain words")

        return Starlette(
            routes=[
                Route("/v1/bomb", bomb),
                Route("/v1/deep", deep),
                Route("/v1/charset", charset),
                Route("/v1/trickle", trickle),
                Route("/v1/gate", gate),
                Route("/v1/header", header),
                Route("/v1/item/{id}", item),
                Route("/v1/text", text),
                Route("/steal", text),
                Route("/openapi.yaml", document),
                Route("/spec/redirect.yaml", redirect),
                Route("/spec/slow.yaml", slow_document),
                Route("/spec/private.yaml", private),
                Route("/spec/elsewhere.yaml", elsewhere),
                Route("/spec/tenant.yaml", tenant),
                Route("/spec/own.yaml", own_host),
            ]
        )
