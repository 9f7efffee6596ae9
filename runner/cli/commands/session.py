"""A real MCP client session (the SDK's Client over streamable HTTP) for one command.

The SDK reports an HTTP 401/403 as a generic JSON-RPC error inside exception groups, so a
response hook notes the status and the `WWW-Authenticate` error, and failures are mapped
to the exit codes of runner/cli/commands/exits.py with a message that says what to do. The token
travels only in the Authorization header: no message here ever holds it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import Implementation

from runner.cli.commands.bearer import Bearer
from runner.cli.commands.exits import EXIT_REFUSED, EXIT_UNREACHABLE, CommandError
from runner.cli.commands.scopes import how_to_get
from runner.cli.commands.target import Target
from runner.http.security import is_loopback_address
from runner.version import RUNNER_VERSION

T = TypeVar("T")
TIMEOUT = httpx2.Timeout(30.0, read=300.0)  # a slow tool may take minutes; connecting may not


class _Refusals:
    """The last 401/403 the server answered, worded for the user."""

    def __init__(self) -> None:
        self.last: str | None = None
        self.scopes: list[str] = []  # what an `insufficient_scope` 403 says the request needs (RFC 6750 §3.1)
        self.unavailable: str | None = None  # a 503's Retry-After: the server could not check the token

    async def __call__(self, response: httpx2.Response) -> None:
        if response.status_code < 300:  # a challenge answered with the token (commands/bearer.py) is no refusal
            self.last = None
            self.scopes = []
            self.unavailable = None
        if response.status_code == 503:
            self.unavailable = response.headers.get("Retry-After", "")[:10]
        if response.status_code in (401, 403):
            header = response.headers.get("WWW-Authenticate", "")
            found = re.search(r'error_description="([^"]{0,300})"', header)
            found = found or re.search(r'error="([^"]{0,60})"', header)
            self.last = f"HTTP {response.status_code}" + (f": {found.group(1)}" if found else "")
            needed = re.search(r'scope="([^"]{0,1000})"', header) if 'error="insufficient_scope"' in header else None
            self.scopes = needed.group(1).split() if needed else []


@asynccontextmanager
async def _connected(target: Target, refusals: _Refusals) -> AsyncIterator[Client]:
    auth = Bearer(target.token, target.upfront) if target.token else None
    async with httpx2.AsyncClient(
        auth=auth, timeout=TIMEOUT, event_hooks={"response": [refusals]}, trust_env=not _loopback(target.url)
    ) as http:
        transport = streamable_http_client(target.url, http_client=http)
        async with Client(transport, mode=target.mode, client_info=_client_info()) as client:  # type: ignore[arg-type]
            yield client


def _client_info() -> Implementation:
    return Implementation(name="mcp-runner-cli", version=RUNNER_VERSION)


def _loopback(url: str) -> bool:
    """No proxy from the environment for a server on this machine (as `mcp-runner token` does)."""
    return is_loopback_address(urlsplit(url).hostname or "")


def run(target: Target, operation: Callable[[Client], Awaitable[T]]) -> T:
    """Connect, run `operation`, disconnect; raise CommandError for what went wrong."""
    refusals = _Refusals()

    async def main() -> T:
        async with _connected(target, refusals) as client:
            return await operation(client)

    try:
        return anyio.run(main)
    except BaseException as exc:  # noqa: BLE001 -- mapped to a message and an exit code below
        if isinstance(exc, KeyboardInterrupt | SystemExit | CommandError):
            raise
        raise _explain(exc, target, refusals) from None


def _explain(exc: BaseException, target: Target, refusals: _Refusals) -> CommandError:
    leaves = list(_leaves(exc))
    if refusals.last is not None:
        hint = "" if target.token else " (no token was sent: --token, MCP_TOKEN, or a manifest with app_id: local)"
        if refusals.scopes:
            hint = f"; {how_to_get(target, refusals.scopes)}"
        return CommandError(f"mcp-runner: {target.url} refused the token: {refusals.last}{hint}", EXIT_UNREACHABLE)
    for leaf in leaves:
        if isinstance(leaf, CommandError):
            return leaf
    if refusals.unavailable is not None:  # runner/auth/gate.py: the issuer's keys could not be fetched
        after = f" (retry after {refusals.unavailable} s)" if refusals.unavailable.isdigit() else ""
        return CommandError(
            f"mcp-runner: {target.url} answered 503 Service Unavailable{after}: the server cannot serve now; "
            "one protected by MCP SignIn says so while it cannot fetch the issuer's signing keys (see its log)",
            EXIT_UNREACHABLE,
        )
    for leaf in leaves:
        if isinstance(leaf, httpx2.TransportError):
            hint = f" (is `mcp-runner serve {target.manifest}` running?)" if target.manifest else ""
            return CommandError(f"mcp-runner: cannot connect to {target.url}: {_reason(leaf)}{hint}", EXIT_UNREACHABLE)
    for leaf in leaves:
        if isinstance(leaf, MCPError):
            return CommandError(f"mcp-runner: {target.url} answered: {leaf.error.message}", EXIT_REFUSED)
    detail = "; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in leaves) or type(exc).__name__
    return CommandError(f"mcp-runner: talking to {target.url} failed: {detail}", EXIT_UNREACHABLE)


def _reason(exc: BaseException) -> str:
    """What went wrong, never blank: a connection reset mid-request reaches httpx2 as an exception with no message."""
    if str(exc).strip():
        return str(exc)
    return f"{type(exc).__name__} (the connection was closed or reset, with no reason given)"


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
