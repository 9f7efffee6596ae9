"""Real parts for the scale-out tests: nginx from the Debian package, and replicas of one manifest behind it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from runner.deploy.nginx import Upstream, write
from tests.helpers import Issuer, JWKSServer, RunnerProcess, debian_binary, free_port, loopback_get, wait_for_port

MANIFEST = """\
name: scale test
signin:
  app_id: ${MCP_APP_ID}
  base_url: ${JWKS_BASE}
  resource: ${MCP_APP_RESOURCE}
tools:
  - function: tools:whoami
  - function: tools:hold
  - function: tools:ask
"""

TOOLS = '''\
"""Tools that say which replica answered, and one that holds a call open until the test releases it."""

import os
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context
from pydantic import BaseModel


class Name(BaseModel):
    name: str


async def ask(ctx: Context) -> str:
    """Ask the client for a name: a server-to-client request (elicitation)."""
    answer = await ctx.elicit("Your name?", Name)
    return f"{answer.action}: {answer.data.name if answer.data else '-'}"


def whoami() -> str:
    """The replica that served this call."""
    return os.environ["REPLICA"]


async def hold(name: str) -> str:
    """Mark `name`.started, then wait for `name`.release (at most 60 s); returns the replica."""
    folder = Path(os.environ["HOLD_DIR"])
    (folder / f"{name}.started").touch()
    with anyio.move_on_after(60):
        while not (folder / f"{name}.release").exists():
            await anyio.sleep(0.02)
    return os.environ["REPLICA"]
'''


def nginx_binary() -> str:
    return debian_binary("nginx", "/usr/sbin/nginx", "nginx")


# An access log that says where each request went: the replica that answered (the last upstream
# address) and the JSON-RPC body, one JSON object per line (`Nginx.routed`).
ROUTED_LOG = """log_format routed escape=json '{"upstream":"$upstream_addr","status":"$status","body":"$request_body"}';
    access_log PREFIX/access.log routed;"""

# What a plain round-robin reverse proxy looks like, for the tests that want no session routing at all.
PLAIN = """worker_processes 1;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
daemon off;
events {{
    worker_connections 1024;
}}
http {{
    {log}
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    upstream replicas {{
{servers}
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    """nginx on a free loopback port, everything it writes in `folder`, stopped by PID.

    The configuration is what `mcp-runner nginx` writes, or with `plain` a bare round-robin proxy;
    `routed` logs which replica answered each request, with its body.
    """

    folder: Path
    upstreams: list[Upstream]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    plain: bool = False
    routed: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def _write(self, user: str | None) -> Path:
        listen = f"127.0.0.1:{self.port}"
        if not self.plain:
            conf = write(self.folder, self.upstreams, listen=listen, workers="1", user=user)
            if self.routed:
                logged = f"access_log {self.folder}/access.log;"
                conf.write_text(conf.read_text().replace(logged, ROUTED_LOG.replace("PREFIX", str(self.folder))))
            return conf
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.folder / "nginx.conf"
        log = ROUTED_LOG if self.routed else "access_log PREFIX/access.log;"
        servers = "\n".join(f"        server {u.address};" for u in self.upstreams)
        text = PLAIN.format(
            user=f"user {user};" if user else "",
            prefix=self.folder,
            log=log.replace("PREFIX", str(self.folder)),
            servers=servers,
            listen=listen,
        )
        conf.write_text(text)
        return conf

    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        """With `routed`: (replica, JSON-RPC body) of every logged request that had a JSON body, in order."""
        replicas = {u.address: u.replica_id for u in self.upstreams}
        logged = []
        for line in (self.folder / "access.log").read_text().splitlines():
            entry = json.loads(line)
            try:
                body = json.loads(entry["body"])
            except ValueError:
                continue
            # "a, b": nginx tried a, then b answered
            logged.append((replicas[entry["upstream"].split(", ")[-1]], body))
        return logged

    def start(self) -> Nginx:
        user = "root" if os.geteuid() == 0 else None  # workers must read the test's private tmp folder
        conf = self._write(user)
        self.proc = subprocess.Popen(
            [nginx_binary(), "-p", str(self.folder), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_port(self.port, proc=self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: the master stops its workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


@dataclass
class Cluster:
    """Replicas `r1`, `r2`, ... of one manifest behind one nginx, with real RS256 tokens from `jwks`.

    `manifest` and `files` (file name -> text) are what the replicas serve, `env` is added to theirs.
    With `own_manifests` each replica serves its own copy, `<replica>.yaml`, and reloads when it
    changes: an edit reaches one replica at a time. `plain` and `routed` are nginx's (`Nginx`).
    """

    folder: Path
    jwks: JWKSServer
    count: int = 2
    extra: tuple[str, ...] = ()
    replicas: dict[str, RunnerProcess] = field(default_factory=dict)
    nginx: Nginx | None = None
    manifest: str = MANIFEST
    files: dict[str, str] = field(default_factory=lambda: {"tools.py": TOOLS})
    env: dict[str, str] = field(default_factory=dict)
    own_manifests: bool = False
    plain: bool = False
    routed: bool = False

    def manifest_of(self, replica: str) -> Path:
        return self.folder / (f"{replica}.yaml" if self.own_manifests else "scale.yaml")

    def start(self) -> Cluster:
        for name, text in self.files.items():
            (self.folder / name).write_text(text)
        (self.folder / "hold").mkdir(exist_ok=True)
        ports = {f"r{i + 1}": free_port() for i in range(self.count)}
        for replica in ports:
            self.manifest_of(replica).write_text(self.manifest)
        upstreams = [Upstream(r, f"127.0.0.1:{p}") for r, p in ports.items()]
        self.nginx = Nginx(self.folder / "nginx", upstreams, plain=self.plain, routed=self.routed)
        for replica, port in ports.items():
            self.replicas[replica] = self._replica(replica, port)
        try:
            with ThreadPoolExecutor() as starting:  # the replicas start side by side
                list(starting.map(RunnerProcess.start, self.replicas.values()))
            self.nginx.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _replica(self, replica: str, port: int) -> RunnerProcess:
        env = {
            "MCP_APP_ID": self.jwks.app_id,
            "JWKS_BASE": self.jwks.base_url,
            "MCP_APP_RESOURCE": self.url,  # one audience: the URL clients use, nginx's
            "REPLICA": replica,
            "HOLD_DIR": str(self.folder / "hold"),
            **self.env,
        }
        extra = (*(() if self.own_manifests else ("--no-reload",)), "--replica-id", replica, *self.extra)
        return RunnerProcess(
            self.manifest_of(replica), port=port, extra=extra, env=env, log=self.folder / f"{replica}.log"
        )

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return self.nginx.url

    def issuer(self) -> Issuer:
        return Issuer(base_url=self.jwks.base_url, resource=self.url, key=self.jwks.keys[0])

    def restart(self, replica: str) -> RunnerProcess:
        """A new process for `replica`, on its port, once the old one has exited."""
        old = self.replicas[replica]
        assert old.proc is not None and old.proc.poll() is not None, "stop it first"
        new = self._replica(replica, old.port)
        new.log = self.folder / f"{replica}.{time.monotonic_ns()}.log"
        self.replicas[replica] = new.start()
        return new

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for replica in self.replicas.values():
            if replica.proc is not None and replica.proc.poll() is None:
                replica.stop()


def ready(port: int) -> int | None:
    """A replica's /readyz status, or None when nothing accepts the connection."""
    try:
        return loopback_get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
    except httpx2.TransportError:
        return None


def wait_until(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


async def whoami(client: object) -> str:
    """The replica that answered: the test manifest's `whoami` tool returns its id."""
    result = await client.call_tool("whoami", {})  # type: ignore[attr-defined]
    assert not result.is_error, result
    return str(result.structured_content["result"])
