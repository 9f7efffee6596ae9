"""Stateful MCP sessions bounded per client, as well as globally.

The SDK caps sessions globally only (`max_sessions`): one token opened 10,000
handshake-era sessions in 40 s and every other user got 503 until they idled
out. This ASGI layer sits between the bearer gate and the SDK's session
manager and counts each principal's live sessions:

- the principal is the token's (issuer, subject, client id), the same triple
  the SDK binds a session to; without auth it is the client's IP address;
- a token's subject is also counted across its client ids (`per_subject`):
  dynamic client registration hands out client ids freely, and one subject
  with 33 of them held 999 sessions;
- a POST without `mcp-session-id` on the handshake-era path is what opens a
  session: it is admitted only while the principal has fewer than
  `per_client` live or opening sessions (and its subject fewer than
  `per_subject`), else it gets 429 with a JSON-RPC error that says why.
  Nobody else is affected;
- an answer under 400 carrying `mcp-session-id` records the session; a
  session leaves the count when the SDK forgets it (DELETE, idle timeout,
  crash). That is read from the manager's session table, the one private
  reach here (`_live_sessions`): the SDK offers no hook for session end.
"""

from __future__ import annotations

import json
from collections.abc import Container
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import INVALID_REQUEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.http.era import sessionless

Principal = tuple[Any, ...]
_SESSION = MCP_SESSION_ID_HEADER.lower().encode("ascii")
SWEEP_EVERY = 256  # openings between sweeps of principals that never came back

# Defaults (the manifest's server.session_idle_timeout, server.max_sessions, server.max_sessions_per_client).
# An idle session costs about 40 KB (bench/sessions.py); a session with a request in flight or an
# open GET stream never idles out, so only abandoned sessions wait for the timeout.
SESSION_IDLE_TIMEOUT = 600.0
MAX_SESSIONS = 1000
MAX_SESSIONS_PER_CLIENT = 32
MAX_SESSIONS_PER_SUBJECT = 128  # four client ids' worth


def _live_sessions(manager: StreamableHTTPSessionManager) -> Container[str]:
    """The ids of the sessions the SDK currently serves (a live view, not a copy).

    Private SDK state, read only, in this one place: without it a session that
    idled out would count against its owner forever.
    """
    table = getattr(manager, "_server_instances", None)
    if not isinstance(table, dict):
        raise RuntimeError(
            "mcp's StreamableHTTPSessionManager has no `_server_instances` table any more: "
            "runner/http/sessions.py must learn the new way to see which sessions are alive"
        )
    return table


def principal(scope: Scope) -> Principal:
    """Who opens a session: the token's (issuer, subject, client id), or the client's address without auth."""
    user = scope.get("user")
    if isinstance(user, AuthenticatedUser):
        context = authorization_context(user)
        return ("token", context["issuer"], context["subject"], context["client_id"])
    client = scope.get("client")
    return ("address", client[0] if client else None)


def subject_of(who: Principal) -> Principal | None:
    """A token's (issuer, subject), whatever its client id; None for a client known by its address only."""
    return ("subject", who[1], who[2]) if who[0] == "token" else None


# Who a count is of, as a refusal names it, by the kind of count ("client" or "subject").
WHO = {"client": "this client", "subject": "this user (the token's subject, over all its client ids)"}


def counted(who: Principal, per_client: int | None, per_subject: int | None) -> list[tuple[Principal, int, str]]:
    """The counts a request of `who` is held to: (key, limit, "client" or "subject")."""
    caps = [(who, per_client, "client")]
    if (subject := subject_of(who)) is not None:
        caps.append((subject, per_subject, "subject"))
    return [(key, limit, kind) for key, limit, kind in caps if limit is not None]


class SessionCap:
    """ASGI middleware: at most `per_client` live sessions per principal, and `per_subject` per token subject."""

    def __init__(
        self,
        app: ASGIApp,
        manager: StreamableHTTPSessionManager,
        per_client: int | None,
        per_subject: int | None = MAX_SESSIONS_PER_SUBJECT,
    ) -> None:
        self.app = app
        self.per_client = None if manager.stateless else per_client
        self.per_subject = None if manager.stateless else per_subject
        self.idle_timeout = manager.session_idle_timeout
        self._live = _live_sessions(manager) if self.per_client is not None else ()
        self._owned: dict[Principal, set[str]] = {}
        self._opening: dict[Principal, int] = {}
        self._since_sweep = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.per_client is None or scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if any(name == _SESSION for name, _ in scope["headers"]) or sessionless(scope["headers"]):
            await self.app(scope, receive, send)  # an existing session, or the sessionless 2026 protocol
            return
        caps = counted(principal(scope), self.per_client, self.per_subject)
        for key, limit, kind in caps:
            if self.count(key) + self._opening.get(key, 0) >= limit:
                await self._refuse(send, kind, limit)
                return
        keys = [key for key, _, _ in caps]
        for key in keys:
            self._opening[key] = self._opening.get(key, 0) + 1
        self._sweep()
        opening = True  # until the answer names the session, or the request ends without one

        async def watch(message: Message) -> None:
            nonlocal opening
            if message["type"] == "http.response.start" and message["status"] < 400:
                session = dict(message.get("headers", [])).get(_SESSION)
                if session is not None:
                    for key in keys:
                        self._owned.setdefault(key, set()).add(session.decode("latin-1"))
                    if opening:  # counted as owned from now on: counted once, not also as opening
                        opening = False
                        self._opened(keys)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if opening:
                self._opened(keys)

    def _opened(self, keys: list[Principal]) -> None:
        for key in keys:
            self._opening[key] -= 1
            if not self._opening[key]:
                del self._opening[key]

    def count(self, who: Principal) -> int:
        """`who`'s live sessions, forgetting those the SDK has ended."""
        owned = self._owned.get(who)
        if not owned:
            return 0
        owned.intersection_update(s for s in owned if s in self._live)
        if not owned:
            del self._owned[who]
        return len(owned)

    def _sweep(self) -> None:
        """Now and then, forget ended sessions of every principal, so memory follows the live sessions."""
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self._since_sweep = 0
            for who in list(self._owned):
                self.count(who)

    async def _refuse(self, send: Send, kind: str, limit: int) -> None:
        idle = f"{self.idle_timeout:g} s" if self.idle_timeout is not None else "never"
        message = (
            f"Too many open sessions for {WHO[kind]}: at most {limit} "
            f"(server.max_sessions_per_{kind}). End one with DELETE, or let one expire (idle timeout: {idle})."
        )
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body.encode()})
