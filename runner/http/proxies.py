"""Whose `X-Forwarded-For` the server believes: nobody's, unless the operator names its proxies.

Without auth, the client's address is its identity: per-client session, stream and task caps
count by it, and a task belongs to it (runner/tasks). uvicorn by default rewrites the client
address from `X-Forwarded-For` when the peer is 127.0.0.1, so any local peer (an SSH tunnel,
a sidecar, another user on the host) could name itself any address, take another address's
slots and read its tasks. So the runner turns that off unless `server.forwarded_allow_ips` /
`--forwarded-allow-ips` names the proxies (addresses or networks, or `*`) whose headers count,
as behind the nginx that `mcp-runner nginx` configures (docs/deployment.md).
"""

from __future__ import annotations

import ipaddress
from typing import Any


def trusted_proxy(value: str) -> str:
    """One entry: `*`, an IP address or a network (`10.0.0.0/8`); raises ValueError otherwise."""
    text = value.strip()
    if text != "*":
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"must be an IP address, a network such as 10.0.0.0/8, or '*', got {value!r}") from None
    return text


def uvicorn_options(trusted: list[str]) -> dict[str, Any]:
    """uvicorn.Config's proxy options: no proxy headers at all unless some proxy is trusted."""
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": list(trusted)}


def trusted_proxies(manifest: list[str], flag: tuple[str, ...] | None) -> list[str]:
    """`--forwarded-allow-ips` if given (even empty: none), else `server.forwarded_allow_ips`."""
    return list(manifest if flag is None else flag)
