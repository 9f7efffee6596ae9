"""The bearer-token gate in front of the MCP endpoint.

Why not the SDK's RequireAuthMiddleware: it answers `invalid_token` even
when no token was sent (RFC 6750 §3.1 says no error code then), names only
the first missing scope, and binds the verifier at app build time, while the
runner swaps its auth settings on reload. The gate reads the server's current
`Guard` on every request, so a reload changes auth atomically.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.routes import build_resource_metadata_url
from pydantic import AnyHttpUrl
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass(frozen=True)
class Guard:
    """Everything that decides who may call the endpoint."""

    verifier: TokenVerifier
    resource: str
    authorization_server: str
    required_scopes: tuple[str, ...] = field(default=())

    @property
    def metadata_url(self) -> str:
        return str(build_resource_metadata_url(AnyHttpUrl(self.resource)))


class BearerGate:
    """ASGI middleware: 401/403 with RFC 6750/9728 headers, or pass through with the user set."""

    def __init__(self, app: ASGIApp, guard: Callable[[], Guard | None]) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = self.guard()
        if guard is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if token is None:
            await _challenge(send, guard, 401, error=None, description="Authentication required")
            return
        access = await guard.verifier.verify_token(token)
        if access is None:
            await _challenge(send, guard, 401, error="invalid_token", description="The access token is not valid")
            return
        missing = [s for s in guard.required_scopes if s not in access.scopes]
        if missing:
            await _challenge(
                send, guard, 403, error="insufficient_scope", description="Missing scope: " + " ".join(missing)
            )
            return
        user = AuthenticatedUser(access)
        scope["user"] = user
        scope["auth"] = AuthCredentials(access.scopes)
        reset = auth_context_var.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            auth_context_var.reset(reset)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


async def _challenge(send: Send, guard: Guard, status: int, *, error: str | None, description: str) -> None:
    params = []
    if error:
        params += [f'error="{error}"', f'error_description="{description}"']
    if status == 403 and guard.required_scopes:
        params.append(f'scope="{" ".join(guard.required_scopes)}"')
    params.append(f'resource_metadata="{guard.metadata_url}"')
    body = json.dumps({"error": error or "unauthorized", "error_description": description}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", ("Bearer " + ", ".join(params)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
