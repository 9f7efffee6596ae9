"""Which protocol generation the SDK serves an HTTP request in, read from the head as the SDK reads it.

The SDK's session manager routes a request to its 2026-07-28 (sessionless) handler when the
first `MCP-Protocol-Version` header names no handshake-era version, and to the handshake-era
one otherwise (mcp/server/streamable_http_manager.py). The runner's layers that treat the two
differently (the session cap, the drain's stream tracking) must read the head the same way:
taking another of several such headers would let a request the SDK serves as handshake-era,
say one opening a session, pass as sessionless.
"""

from __future__ import annotations

from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

VERSION_HEADER = MCP_PROTOCOL_VERSION_HEADER.lower().encode("ascii")
_HANDSHAKE = frozenset(version.encode("latin-1") for version in HANDSHAKE_PROTOCOL_VERSIONS)


def sessionless(headers: list[tuple[bytes, bytes]]) -> bool:
    """The SDK serves this request with its 2026-07-28 handler (ASGI raw headers, names lower-cased)."""
    version = next((value for name, value in headers if name == VERSION_HEADER), None)
    return version is not None and version not in _HANDSHAKE


METHOD_HEADER = MCP_METHOD_HEADER.lower().encode("ascii")
LISTEN = b"subscriptions/listen"


def listen_request(headers: list[tuple[bytes, bytes]]) -> bool:
    """A 2026-07-28 `subscriptions/listen` request, from its head alone.

    The SDK answers a 2026-07-28 body whose method differs from its `Mcp-Method` header with an error,
    and serves `subscriptions/listen` on no other path; so the head says which POSTs can stand open.
    Any `Mcp-Method` header naming it counts, so that no spelling of the head slips past a cap.
    """
    return sessionless(headers) and any(name == METHOD_HEADER and value == LISTEN for name, value in headers)
