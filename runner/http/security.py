"""DNS-rebinding protection for every route, as one pure ASGI middleware.

Why not the SDK's `TransportSecuritySettings`: it guards only the MCP endpoint
(not `/healthz`, `/readyz` or the metadata route), and it compares host
*spellings* (`127.0.0.1:*`, `[::1]:*`), so a server bound to `0:0:0:0:0:0:0:1`
(a spelling of `::1`) was left unprotected. Here loopback is decided by address:
a Host or Origin is local when its host part is `localhost` or parses as a
loopback IP address, however it is written. Anything else is a page on some
other origin reaching a loopback server through the victim's browser.

`server.allowed_hosts` and `server.allowed_origins` (HostRules) add names: the
public name a reverse proxy forwards in `Host`, the origin of a web client. On a
bind that is not loopback, Host is checked only against a non-empty
`allowed_hosts` (such a server is reached under names this process cannot
know), while Origin is always checked: a browser page on another origin is
refused unless its origin is listed, or names the very host the request was
verified to be for.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator
from starlette.types import ASGIApp, Receive, Scope, Send

_DEFAULT_PORTS = {"http": "80", "https": "443"}
# A host name, an IPv4 address or a bracketed IPv6 address, then an optional port or `*`.
HOST_PATTERN = r"^([A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])(:([0-9]{1,5}|\*))?$"
ORIGIN_PATTERN = r"^(\*|https?://([A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])(:([0-9]{1,5}|\*))?)$"


def _allowed_host(value: str) -> str:
    if not re.match(HOST_PATTERN, value):
        raise ValueError(f"{value!r} is not a host: write name, name:port or name:* (no scheme, no path)")
    return value


def _allowed_origin(value: str) -> str:
    if not re.match(ORIGIN_PATTERN, value):
        raise ValueError(
            f"{value!r} is not an origin: write https://name, http://name:port, https://name:* or * (no path)"
        )
    return value


# Manifest types for `server.allowed_hosts` and `server.allowed_origins`.
AllowedHost = Annotated[str, AfterValidator(_allowed_host)]
AllowedOrigin = Annotated[str, AfterValidator(_allowed_origin)]


@functools.lru_cache(maxsize=256)  # every request asks about the same few Host values: parse each once
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


@functools.lru_cache(maxsize=256)
def split_host(value: str) -> tuple[str, str | None] | None:
    """`host[:port]` (IPv6 in brackets) -> (lower-case host, port or None); None if it is no such thing."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port: str | None = rest[1:] if rest else None
    else:
        name, colon, port = value.partition(":")
        if ":" in port:  # a bare IPv6 address: not a valid Host header
            return None
        port = port if colon else None
    if port is not None and port != "*" and not (port.isdigit() and len(port) <= 5):
        return None
    if not name or any(c in name for c in "/@?#\\ "):
        return None
    return name.lower(), port or None


def local_host_header(value: str) -> bool:
    """A Host header naming this machine: `host[:port]`, IPv6 in brackets, no user info, nothing else."""
    parts = split_host(value)
    return parts is not None and parts[1] != "*" and is_loopback_address(parts[0])


def split_origin(value: str) -> tuple[str, str, str | None] | None:
    """An http(s) Origin -> (scheme, host, port with the scheme's default made explicit); None otherwise."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or "@" in parts.netloc or parts.path or parts.query or parts.fragment:
        return None
    host = split_host(parts.netloc)
    if host is None:
        return None
    return parts.scheme, host[0], host[1] or _DEFAULT_PORTS[parts.scheme]


def local_origin(value: str) -> bool:
    """An Origin of a page served from this machine (http or https, any port)."""
    parts = split_origin(value)
    return parts is not None and parts[2] != "*" and is_loopback_address(parts[1])


@dataclass(frozen=True)
class HostRules:
    """Which Host and Origin headers a server accepts (docs/security.md)."""

    loopback: bool  # bound to a loopback address: Host must name this machine or be listed
    allowed_hosts: tuple[str, ...] = ()  # `name`, `name:port` or `name:*`; a bare name allows any port
    allowed_origins: tuple[str, ...] = ()  # `https://name[:port|:*]`, or `*` for any origin

    def host_verified(self, host: str) -> bool:
        """The Host header names this machine or a listed host."""
        parts = split_host(host)
        if parts is None or parts[1] == "*":
            return False
        return is_loopback_address(parts[0]) or any(_host_matches(parts, entry) for entry in self.allowed_hosts)

    def host_refused(self, host: str) -> bool:
        if self.loopback or self.allowed_hosts:
            return not self.host_verified(host)
        return split_host(host) is None  # not even a Host header

    def origin_refused(self, origin: str, host: str) -> bool:
        if "*" in self.allowed_origins:
            return False
        parts = split_origin(origin)
        if parts is None or parts[2] == "*":
            return True
        if self.loopback and is_loopback_address(parts[1]):
            return False
        if any(_origin_matches(parts, entry) for entry in self.allowed_origins):
            return False
        # Same origin as a verified Host: the page was served under the very name this request is for.
        own = split_host(host)
        return not (
            own is not None
            and self.host_verified(host)
            and (parts[1], parts[2]) == (own[0], own[1] or _DEFAULT_PORTS[parts[0]])
        )


def _host_matches(host: tuple[str, str | None], entry: str) -> bool:
    allowed = split_host(entry)
    if allowed is None or allowed[0] != host[0]:
        return False
    return allowed[1] in (None, "*") or allowed[1] == host[1]


def _origin_matches(origin: tuple[str, str, str | None], entry: str) -> bool:
    allowed = split_origin(entry)
    if allowed is None or allowed[:2] != origin[:2]:
        return False
    return allowed[2] == "*" or allowed[2] == origin[2]


class HostGuard:
    """421 for a foreign Host, 403 for a foreign Origin, on every route (the SDK's status codes).

    `rules` is read on every request, so a reload that changes the allowed lists applies at once.
    """

    def __init__(self, app: ASGIApp, rules: Callable[[], HostRules]) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            rules = self.rules()
            hosts: list[str] = []
            origins: list[str] = []
            for name, value in scope["headers"]:
                if name == b"host":
                    hosts.append(value.decode("latin-1"))
                elif name == b"origin":
                    origins.append(value.decode("latin-1"))
            if len(hosts) != 1 or rules.host_refused(hosts[0]):
                await _refuse(scope, send, 421, b"Invalid Host header")
                return
            if len(origins) > 1 or (origins and rules.origin_refused(origins[0], hosts[0])):
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
