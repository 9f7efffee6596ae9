"""A replica's identity: the name its session ids carry so that a load balancer can route on them.

Default: `<hostname>-<port>`. The hostname alone is what a Kubernetes StatefulSet pod is called
(`mcp-0`), stable and known before the pod starts, so an nginx configuration can name it in
advance; the port makes two processes on one machine (a laptop, `--workers`) distinct without
any flag. A random default would be unique too, but no balancer could be configured for it.
"""

from __future__ import annotations

import re
import socket

# Letters, digits, '-' and '_': safe inside a session id (visible ASCII), an nginx regex and a
# DNS label, so no escaping is ever needed. '.' is the separator between replica and session.
REPLICA_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
SEPARATOR = "."
_ALLOWED = re.compile(REPLICA_ID)


def valid(replica_id: str) -> bool:
    return bool(_ALLOWED.match(replica_id))


def default_replica_id(port: int, hostname: str | None = None) -> str:
    """`<hostname>-<port>`, lower case, cut to what `REPLICA_ID` allows."""
    host = (hostname if hostname is not None else socket.gethostname()).split(".")[0].lower()
    host = re.sub(r"[^a-z0-9-]+", "-", host).strip("-") or "replica"
    suffix = f"-{port}"
    return host[: 63 - len(suffix)].rstrip("-") + suffix


def session_prefix(replica_id: str) -> str:
    return replica_id + SEPARATOR
