"""Real parts for tests: a JWKS server on loopback, RS256 keys and tokens, the runner as a process."""

from __future__ import annotations

import atexit
import base64
import hashlib
import hmac
import itertools
import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent


# Ports for the servers the tests start come from a block of their own per pytest-xdist worker, below
# the kernel's ephemeral range (32768-60999 here). A port the kernel hands out for port 0 can be handed
# to the other worker too before the first server binds it; then one server fails to bind while the
# port answers, for the other worker's server (a CI run failed on "Not Found" from /healthz that way).
# Every client connection also takes its source port from the ephemeral range.
_PORT_BASE = 20000
_PORT_BLOCK = 2400
_BLOCKS = (32768 - _PORT_BASE) // _PORT_BLOCK  # every block below the ephemeral range


def _port_block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    start = _PORT_BASE + (int(worker) if worker.isdigit() else 0) % _BLOCKS * _PORT_BLOCK
    return range(start, start + _PORT_BLOCK)


_ports: Iterator[int] | None = None


def free_port() -> int:
    """A loopback port free now, from this worker's block, each handed out once per walk of the block."""
    global _ports
    if _ports is None:
        block = _port_block()
        # A random start, so that two test runs at once (a fresh-clone CI beside a working copy) do not
        # walk the same ports in step.
        first = secrets.randbelow(len(block))
        _ports = itertools.cycle([*block[first:], *block[:first]])
    for port in itertools.islice(_ports, _PORT_BLOCK):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {_port_block()}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Key:
    private: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def new(cls, kid: str | None = None, bits: int = 2048) -> Key:
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits) if bits >= 1024 else _weak_rsa(bits)
        return cls(private, kid or uuid.uuid4().hex[:12])

    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, use="sig", alg="RS256")
        return data

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _weak_rsa(bits: int) -> rsa.RSAPrivateKey:
    """An RSA key too short for `cryptography` to generate (it stops at 1024 bits); a hostile key set may hold one."""
    e = 65537
    while True:
        p, q = _prime(bits // 2), _prime(bits - bits // 2)
        phi = (p - 1) * (q - 1)
        if p != q and (p * q).bit_length() == bits and math.gcd(e, phi) == 1:
            break
    d = pow(e, -1, phi)
    public = rsa.RSAPublicNumbers(e, p * q)
    return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), public).private_key()


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1  # top two bits set: p * q has the full length
        if all(candidate % small for small in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31)) and _miller_rabin(candidate):
            return candidate


def _miller_rabin(n: int, rounds: int = 40) -> bool:
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@dataclass
class Issuer:
    """Mints tokens the way MCP SignIn does, for a JWKS server's keys."""

    base_url: str
    resource: str
    key: Key

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.base_url,
            "aud": self.resource,
            "sub": "user-1",
            "client_id": "client-1",
            "token_type": "access",
            "scope": "read write",
            "iat": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,  # every token distinct, so the server's verified-token cache never hides a case
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: Key | None = None, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        key = key or self.key
        header = {"kid": key.kid, **(headers or {})}
        return jwt.encode(self.claims(**claims), key.private, algorithm="RS256", headers=header)


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None = None) -> str:
    """Hand-built JWTs that PyJWT refuses to make: alg=none, HS256 keyed with a public key."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@dataclass
class JWKSServer:
    """MCP SignIn's key endpoint, on loopback, in a thread: `{base}/apps/{app_id}/discovery/v2.0/keys`."""

    app_id: str = "test-app"
    keys: list[Key] = field(default_factory=list)
    mode: str = "good"  # good | down | error | garbage | non-utf8 | huge | redirect | html | trickle
    delay: float = 0.0
    cache_control: str | None = None  # sent as Cache-Control with the key set, when set
    hits: int = 0
    port: int = field(default_factory=free_port)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _app(self) -> Starlette:
        async def keys(request: Request) -> Response:
            self.hits += 1
            if self.delay:
                await anyio.sleep(self.delay)
            if self.mode == "down":
                return Response("unavailable", status_code=503)
            if self.mode == "error":
                return Response("internal error", status_code=500)
            if self.mode == "garbage":
                return Response(b"{not json", media_type="application/json")
            if self.mode == "non-utf8":
                return Response(b'{"keys": ["\xff\xfe"]}', media_type="application/json")
            if self.mode == "huge":
                filler = [{"kty": "RSA", "kid": f"pad-{i}", "n": "A" * 1000, "e": "AQAB"} for i in range(400)]
                return JSONResponse({"keys": [k.jwk() for k in self.keys] + filler})
            if self.mode == "redirect":
                return Response(status_code=302, headers={"Location": "http://127.0.0.1:9/keys"})
            if self.mode == "nested":
                return Response(b'{"keys": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", media_type="application/json")
            if self.mode == "html":
                return Response("<html>maintenance</html>", media_type="text/html")
            if self.mode == "trickle":
                document = json.dumps({"keys": [k.jwk() for k in self.keys]}).encode()

                async def drip() -> Any:
                    for i in range(0, len(document), 16):
                        await anyio.sleep(0.2)
                        yield document[i : i + 16]

                return StreamingResponse(drip(), media_type="application/json")
            headers = {"Cache-Control": self.cache_control} if self.cache_control else None
            return JSONResponse({"keys": [k.jwk() for k in self.keys]}, headers=headers)

        return Starlette(routes=[Route(f"/apps/{self.app_id}/discovery/v2.0/keys", keys)])

    def start(self) -> JWKSServer:
        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def runner_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "runner.cli", *args]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        runner_cmd(*args),
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class RunnerProcess:
    """`mcp-runner serve` as a real child process on a free loopback port."""

    manifest: Path
    port: int = field(default_factory=free_port)
    extra: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    log: Path | None = None  # where stdout and stderr go (else a temporary file), readable while it runs
    proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/healthz"

    def launch(self, argv: list[str], cwd: Path | None = None) -> subprocess.Popen[str]:
        """Start `argv` (in `cwd`, else the manifest's folder) as this runner's process, writing to `log`."""
        if self.log is None:
            # Never a pipe: a pipe nobody reads fills after about 64 KB (some 600 access lines) and the
            # server then blocks on its next log line, mid-request. A file never fills.
            fd, name = tempfile.mkstemp(prefix="mcp-runner-", suffix=".log")
            os.close(fd)
            self.log = Path(name)
            atexit.register(self.log.unlink, missing_ok=True)
        with self.log.open("w") as log:  # the child has its own descriptor
            self.proc = subprocess.Popen(
                argv, cwd=cwd or self.manifest.parent, env={**os.environ, **self.env}, stdout=log, stderr=log, text=True
            )
        return self.proc

    def start(self) -> RunnerProcess:
        self.launch(runner_cmd("serve", str(self.manifest), "--port", str(self.port), *self.extra))
        try:
            wait_for_port(self.port, proc=self.proc)
        except BaseException as exc:
            self.stop()  # a server that never came up must not outlive the test that started it
            if isinstance(exc, RuntimeError):
                raise RuntimeError(f"{exc}{self.logged()}") from None
            raise
        return self

    def logged(self) -> str:
        """What the process has written (stderr, and stdout, which serving leaves empty) so far."""
        assert self.log is not None
        return self.log.read_text()

    def stop(self) -> str:
        """Stop by PID; returns what the process wrote."""
        assert self.proc is not None
        stop_process(self.proc)
        return self.logged()


def loopback_get(url: str, **kwargs: Any) -> httpx2.Response:
    """`httpx2.get` for the plain-HTTP loopback servers the tests start, without building a TLS context.

    `httpx2.get` makes a client, and a client loads the CA bundle into a new SSL context: about 20 ms of
    CPU, for every poll of /healthz (every 20 ms while a test waits for a reload), which made waiting as
    costly as a busy core. A URL here is never https, so there is nothing to verify.
    """
    assert url.startswith("http://"), url
    kwargs.setdefault("timeout", 10)
    with httpx2.Client(verify=False, timeout=kwargs.pop("timeout")) as client:
        return client.get(url, **kwargs)


def healthz(health_url: str) -> dict[str, Any]:
    return loopback_get(health_url).json()  # type: ignore[no-any-return]


async def wait_for_health(health_url: str, condition: Any, what: str, timeout: float = 60) -> dict[str, Any]:
    """Poll /healthz (bounded) until `condition(body)`; a timeout fails naming `what` and the last body."""
    health: dict[str, Any] = {}
    with anyio.move_on_after(timeout):
        while not condition(health := healthz(health_url)):
            await anyio.sleep(0.02)
        return health
    raise AssertionError(f"/healthz never showed {what} within {timeout:g} s; last: {health}")


def _settled(health: dict[str, Any]) -> bool:
    return health["reload_pending"] is False and health["reload_running_s"] is None


async def reloaded(health_url: str, before: int, what: str = "a reload", timeout: float = 60) -> dict[str, Any]:
    """Wait until a reload counted after `before` has read the files as they are now; its /healthz.

    `reload_pending` false says the last finished reload read the manifest and every module it had
    loaded as they are on disk now (runner/reload/reloader.py `pending`): so, after a write, that
    reload is one that read the write. That holds whatever ran before: a reload already running
    when the file was written (set off by an earlier write) leaves the file changed since it read
    it, so `reload_pending` stays true until the reload after it. A count of reloads alone took that
    earlier reload for this one (seen in CI: "no visible change"). `reloads > before` adds that a
    reload ran at all, for a file no reload has read yet; `reload_running_s` None, that no abandoned
    build is still running.
    """
    return await wait_for_health(health_url, lambda h: h["reloads"] > before and _settled(h), what, timeout)


async def settled_reloads(health_url: str, timeout: float = 60) -> int:
    """The reload count once no reload is under way or due: read it before writing, for `reloaded`."""
    return int((await wait_for_health(health_url, _settled, "no reload running or due", timeout))["reloads"])


def write_atomically(path: Path, text: str) -> None:
    """Write a sibling temporary file, then rename it over `path`: no reader sees a half-written file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


async def edit_and_wait(folder: Path, health_url: str, name: str, text: str, *, timeout: float = 60) -> dict[str, Any]:
    """Write `folder/name` and wait for the finished reload that read it; returns its /healthz.

    The caller asserts on the reload's result (`last_reload`, `status`, `tools`...). A manifest
    reload that succeeded also serves the text written: its `manifest_sha256` is checked.
    """
    before = await settled_reloads(health_url, timeout)
    write_atomically(folder / name, text)
    health = await reloaded(health_url, before, f"the reload that read {name}", timeout)
    if Path(health["manifest"]).name == name and health["last_reload"]["result"] == "ok":
        wanted = hashlib.sha256(text.encode()).hexdigest()
        assert health["manifest_sha256"] == wanted, f"the reload after writing {name} served other text: {health}"
    return health


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15) -> Any:
    """SIGTERM, then SIGKILL if it is still there after `timeout`; returns its stderr if that was a pipe."""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@asynccontextmanager
async def mcp_client(url: str, token: str | None = None, mode: str = "auto", **options: Any) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    plain = url.startswith("http://")  # no TLS: no CA bundle to load (~20 ms of CPU a client, see loopback_get)
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=60.0), verify=not plain) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, **options) as client:  # type: ignore[arg-type]
            yield client


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}


def post_initialize(url: str, token: str | None, raw_header: str | None = None) -> httpx2.Response:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if raw_header is not None:
        headers["Authorization"] = raw_header
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    assert url.startswith("http://"), url
    with httpx2.Client(verify=False, timeout=30) as client:  # plain HTTP on loopback: see loopback_get
        return client.post(url, json=INITIALIZE, headers=headers)


def run_main(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI's own `main` in this process: the same code as `run_cli` (and the same real servers),
    without the ~1.4 s of CPU a new interpreter spends importing. For commands that start no server.

    The user's modules it imports (from a test's own folder) are forgotten afterwards, with the
    folder on `sys.path`, so the next call imports the next test's files as a new process would.
    """
    import contextlib
    import importlib
    import io

    from runner.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    saved = {key: os.environ.get(key) for key in env or {}}
    modules, path, here = set(sys.modules), list(sys.path), Path.cwd()
    os.environ.update(env or {})
    try:
        if cwd is not None:
            os.chdir(cwd)
        importlib.invalidate_caches()  # files the test just wrote must be seen
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(here)
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if _users_module(sys.modules[name]):
                del sys.modules[name]
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def _users_module(module: object) -> bool:
    """Imported from a test's files, not from the runner, the project's demo servers or an installed package."""
    files = [getattr(module, "__file__", None) or "", *list(getattr(module, "__path__", []) or [])]
    kept = (str(ROOT / "runner"), str(ROOT / "servers"), str(ROOT / "tests"), sys.prefix, sys.base_prefix)
    return any(f and not f.startswith(kept) for f in files)


def debian_binary(name: str, path: str, package: str) -> str:
    """A binary the tests need from a Debian package; its absence fails the test, naming the package (never a skip)."""
    found = shutil.which(name) or (path if Path(path).exists() else None)
    if found is None:
        pytest.fail(f"{name} is not installed: install the Debian package `{package}` (apt-get install {package})")
    return found
