"""An nginx configuration for N replicas: sticky for handshake-era sessions, round-robin for the rest.

Stock nginx (Debian's `nginx` package, no Lua, no extra modules) routes on the `Mcp-Session-Id`
header with a `map`: an id that starts with `<replica>.` (runner/deploy/affinity.py) goes to that
replica's own upstream; anything else (initialize, 2026-07-28 requests, stateless mode, the
metadata and health routes) goes round-robin over all replicas. A session whose replica cannot be
reached is answered `404 Session not found` by nginx itself, the spec's signal for a handshake-era
client to initialize again; a session id naming a replica nginx does not know goes round-robin and
gets the same 404 from whichever replica receives it.

`mcp-runner nginx --replica ID=HOST:PORT ...` prints it (docs/deployment.md); the tests run this
exact output under a real nginx.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from runner.deploy.identity import valid

GONE = '{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}'


@dataclass(frozen=True)
class Upstream:
    replica_id: str
    address: str  # host:port, as nginx's `server` directive takes it

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """`ID=HOST:PORT`."""
        replica_id, sep, address = text.partition("=")
        if not sep or not valid(replica_id) or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}", address):
            raise ValueError(f"expected ID=HOST:PORT (ID: letters, digits, '-', '_'), got {text!r}")
        return cls(replica_id, address)

    @property
    def group(self) -> str:
        return "mcp_replica_" + self.replica_id.replace("-", "_")


PROXY = """
proxy_http_version 1.1;                 # keep-alive to the replicas, chunked streams
proxy_set_header Connection "";
proxy_set_header Host $http_host;       # the replica checks Host on a loopback bind
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_set_header X-Forwarded-Proto $scheme;
proxy_buffering off;                    # SSE events pass at once
proxy_cache off;
proxy_read_timeout 1h;                  # a standing GET / listen stream, a long tool call
proxy_send_timeout 1h;
proxy_connect_timeout 2s;               # a dead replica is skipped quickly
# A refused or failed connection goes to the next replica, POSTs included (non_idempotent). Why:
# a replica that leaves closes its idle keep-alive connections at once, and a request nginx had just
# written on one of them fails with "upstream prematurely closed" although the replica never read
# it (seen in CI as a failed call during a rolling restart). The price: a replica that dies in the
# middle of a call (kill -9, OOM) can see that call re-sent to another; a drain never does that,
# since it lets calls in flight finish. A 503 goes to the next replica too: a draining replica
# answers new work 503 (it still answers follow-ups), and every 503 a replica sends means "not
# taken" (draining, too many connections or sessions, signing keys unreachable). At most one retry.
proxy_next_upstream error timeout http_503 non_idempotent;
proxy_next_upstream_tries 2;
client_max_body_size 4m;                # the replica's own limit
"""


def http_block(upstreams: list[Upstream], *, listen: str = "127.0.0.1:8080", path: str = "/mcp") -> str:
    """What goes in nginx's `http {}` context (Debian: a file in /etc/nginx/conf.d/)."""
    if not upstreams:
        raise ValueError("at least one replica")
    ids = [u.replica_id for u in upstreams]
    if len(set(ids)) != len(ids):
        raise ValueError(f"replica ids must differ: {', '.join(ids)}")
    every = "\n".join(f"    server {u.address} max_fails=0;" for u in upstreams)
    each = "\n".join(f"upstream {u.group} {{\n    server {u.address};\n    keepalive 16;\n}}" for u in upstreams)
    proxy = "\n".join("        " + line for line in PROXY.strip().splitlines())
    routes = "\n".join(f'    "~^{u.replica_id}\\." {u.group};' for u in upstreams)
    return f"""# mcp-runner: {len(upstreams)} replica(s): {", ".join(ids)}
# Round-robin for requests without a session (initialize, 2026-07-28, stateless). max_fails=0: a
# replica that refuses a connection (draining, restarting) is skipped per request and never
# marked down, so a rolling restart never leaves nginx with "no live upstreams".
upstream mcp_all {{
{every}
    keepalive 32;
}}
# One group per replica, for the handshake-era sessions it holds.
{each}

# Mcp-Session-Id is "<replica>.<id>": route on the replica part.
map $http_mcp_session_id $mcp_upstream {{
    default mcp_all;
{routes}
}}
map $http_mcp_session_id $mcp_sticky {{
    default 0;
    "~^[A-Za-z0-9][A-Za-z0-9_-]*\\." 1;
}}

server {{
    listen {listen};

    location = {path} {{
        proxy_pass http://$mcp_upstream;
{proxy}
        # The session's replica is gone (refused, or no answer in time): the spec's 404, so the
        # client initializes again; nginx answers it because no replica holds the session.
        error_page 502 504 = @mcp_unreachable;
    }}
    location @mcp_unreachable {{
        default_type application/json;
        if ($mcp_sticky) {{
            return 404 '{GONE}';
        }}
        return 502 '{{"error": "no replica reachable"}}';
    }}
    # RFC 9728 metadata, /healthz, /readyz, the local issuer's keys: any replica answers.
    location / {{
        proxy_pass http://mcp_all;
{proxy}
    }}
}}
"""


def full_config(
    upstreams: list[Upstream], *, listen: str, path: str, prefix: Path, workers: str = "auto", user: str | None = None
) -> str:
    """A complete nginx.conf that keeps everything (pid, logs, temp files) under `prefix` (`nginx -p`)."""
    return f"""# Start: nginx -p {prefix} -c {prefix}/nginx.conf   (stop: kill the pid in {prefix}/nginx.pid)
{f"user {user};" if user else ""}
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
daemon off;
events {{
    worker_connections 4096;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
{_indent(http_block(upstreams, listen=listen, path=path))}
}}
"""


def write(
    folder: Path,
    upstreams: list[Upstream],
    *,
    listen: str,
    path: str = "/mcp",
    workers: str = "auto",
    user: str | None = None,
) -> Path:
    """`folder/nginx.conf`, with everything nginx writes kept in `folder`."""
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(full_config(upstreams, listen=listen, path=path, prefix=folder, workers=workers, user=user))
    return conf


def _indent(text: str) -> str:
    return "\n".join(("    " + line) if line else line for line in text.splitlines())
