"""DNS-rebinding protection for every route of a loopback server, as one pure ASGI middleware.

Why not the SDK's `TransportSecuritySettings`: it guards only the MCP endpoint
(not `/healthz`, `/readyz` or the metadata route), and it compares host
*spellings* (`127.0.0.1:*`, `[::1]:*`), so a server bound to `0:0:0:0:0:0:0:1`
(a spelling of `::1`) was left unprotected. Here loopback is decided by address:
a Host or Origin is local when its host part is `localhost` or parses as a
loopback IP address, however it is written. Anything else is a page on some
other origin reaching a loopback server through the victim's browser.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send


def is_loopback_address(host: str) -> bool:
    """`localhost` or a loopback IP in any spelling (`::1`, `0:0:0:0:0:0:0:1`, `::ffff:127.0.0.1`, `127.0.0.2`)."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def local_host_header(value: str) -> bool:
    """A Host header naming this machine: `host[:port]`, IPv6 in brackets, no user info, nothing else."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return False
        name, rest = value[: end + 1], value[end + 1 :]
        port = rest.removeprefix(":") if rest.startswith(":") else None
        if rest and port is None:
            return False
    else:
        name, _, port = value.partition(":")
        if ":" in port:  # a bare IPv6 address: not a valid Host header
            return False
    if port is not None and port != "" and not (port.isdigit() and len(port) <= 5):
        return False
    return bool(name) and is_loopback_address(name)


def local_origin(value: str) -> bool:
    """An Origin of a page served from this machine (http or https, any port)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or "@" in parts.netloc or parts.path or parts.query:
        return False
    return local_host_header(parts.netloc)


class HostGuard:
    """421 for a foreign Host, 403 for a foreign Origin, on every route (the SDK's status codes).

    Enabled only for loopback binds: a server bound elsewhere is meant to be
    reached under names this process cannot know.
    """

    def __init__(self, app: ASGIApp, enabled: bool) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and scope["type"] in ("http", "websocket"):
            hosts = [v.decode("latin-1") for k, v in scope["headers"] if k == b"host"]
            origins = [v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"]
            if len(hosts) != 1 or not local_host_header(hosts[0]):
                await _refuse(scope, send, 421, b"Invalid Host header")
                return
            if len(origins) > 1 or (origins and not local_origin(origins[0])):
                await _refuse(scope, send, 403, b"Invalid Origin header")
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, status: int, body: bytes) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
