"""Issue 22, the HTTP layer: no single client locks the others out, against the real server on loopback.

Each attack is the attacker's own (raw sockets on loopback), at a size that fills a lowered limit
(`server.max_connections: 50` and the like, from the manifest) rather than the defaults; the legitimate
user is a real MCP client with a real token. bench/attacks.py runs the same attacks at full size.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from bench.attacks import (
    MODERN,
    big_head,
    closed_by_server,
    connect,
    endless_trailer,
    head,
    many_headers,
    never_reading,
    open_listen,
    owed_body_head,
    push_until_stuck,
    reset_by_server,
    response_head,
    status_of,
    statuses,
)
from runner.observe.endpoint import MAX_CONNECTIONS as MAX_METRICS_CONNECTIONS
from tests.helpers import (
    INITIALIZE,
    Issuer,
    JWKSServer,
    RunnerProcess,
    free_port,
    loopback_get,
    mcp_client,
    post_initialize,
    wait_for_port,
)

pytestmark = pytest.mark.anyio

TOOLS = "def add(a: int, b: int) -> int:\n    return a + b\n\n\ndef big(size: int) -> str:\n    return 'x' * size\n"
CONNECTIONS = 50
LIMITS = {
    "max_connections": CONNECTIONS,
    "max_sessions_per_client": 5,
    "max_sessions_per_subject": 8,
    "max_streams_per_client": 5,
    "max_streams_per_subject": 8,
    "max_streams": 30,
}


@dataclass
class Served:
    runner: RunnerProcess
    issuer: Issuer
    parser: str

    @property
    def port(self) -> int:
        return self.runner.port

    def token(self, sub: str = "user-1", client_id: str = "client-1") -> str:
        return self.issuer.token(sub=sub, client_id=client_id)

    async def served_legitimately(self) -> None:
        """A real MCP client (its own token) connects, calls a tool, and gets the answer."""
        async with mcp_client(self.runner.url, self.token(sub="legitimate")) as client:
            assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {"result": 5}


def serve(folder: Path, parser: str, jwks: JWKSServer, limits: dict[str, int]) -> Served:
    (folder / "hard_tools.py").write_text(TOOLS)
    runner = RunnerProcess(folder / "hard.yaml", extra=("--http", parser, "--no-reload"))
    settings = "".join(f"  {key}: {value}\n" for key, value in limits.items())
    (folder / "hard.yaml").write_text(
        f"name: hard\nsignin:\n  app_id: {jwks.app_id}\n  resource: {runner.url}\n  base_url: {jwks.base_url}\n"
        f"server:\n{settings}tools:\n  - function: hard_tools:add\n  - function: hard_tools:big\n"
    )
    runner.start()
    issuer = Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0])
    # Serving starts before the signing keys are in (their fetch runs in the background), and while that fetch is in
    # flight at most a tenth of max_connections requests wait on it: the others get 503 (runner/auth/jwks.py). An
    # attack's own tokens took those places and the legitimate client got 503 (seen under load). One request waits
    # for the keys here, so that every test starts where it means to: a server that has them.
    try:
        assert post_initialize(runner.url, issuer.token(sub="keys-in")).status_code == 200
    except BaseException:
        runner.stop()
        raise
    return Served(runner, issuer, parser)


@pytest.fixture(scope="module", params=["httptools", "h11"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer
) -> Iterator[Served]:
    served = serve(tmp_path_factory.mktemp(f"hardening-{request.param}"), request.param, jwks, LIMITS)
    yield served
    served.runner.stop()


NARROW = 10  # max_connections of `narrow`: few sockets fill it


@pytest.fixture(scope="module", params=["httptools", "h11"])
def narrow(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer
) -> Iterator[Served]:
    limits = {"max_connections": NARROW, "body_timeout": 2}
    served = serve(tmp_path_factory.mktemp(f"narrow-{request.param}"), request.param, jwks, limits)
    yield served
    served.runner.stop()


# -- raw sockets (the attacker's primitives are bench/attacks.py's) ----------------------------------


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


# -- 1. a complete head, and a body owed forever ---------------------------------------------------


async def test_sockets_owing_a_body_neither_lock_clients_out_nor_stay_open_once_answered(served: Served) -> None:
    """Every connection slot taken by a socket that sent a complete head with `Content-Length: 100000` and
    nothing more: unauthenticated ones the server answers (401, or 200 from /healthz), authenticated ones the
    app waits on for their body. They used to rank as serving and were never evicted: every newcomer got 503."""
    port, token = served.port, served.token(sub="mallory")
    answered, waiting = [], []
    try:
        for i in range(CONNECTIONS):
            sock = connect(port)
            if i % 3 == 2:  # the app waits on its body
                sock.sendall(owed_body_head(port, i, token))
                waiting.append(sock)
            else:  # answered: POST /mcp 401, or GET /healthz 200
                sock.sendall(owed_body_head(port, i))
                answered.append(sock)
        heads = [response_head(sock) for sock in answered]
        assert sorted({int(h.split(b" ", 2)[1]) for h in heads}) == [200, 401]
        await served.served_legitimately()
        # An answered request's connection is closed at once (nobody wants the rest of its body), and its
        # answer says so, so that a client never sends another request on it.
        assert all(b"\r\nconnection: close" in h for h in heads), heads[0]
        deadline = time.monotonic() + 30
        assert all(closed_by_server(sock, deadline) for sock in answered)
    finally:
        close_all(answered + waiting)


# -- a client that never reads its answers ----------------------------------------------------------


async def test_clients_that_never_read_their_answers_do_not_lock_others_out(narrow: Served) -> None:
    """Every connection slot taken by a socket (4 KiB receive buffer) that pipelines `GET /healthz` and never
    reads: the answers fill the buffers, uvicorn's cycle waits in `send` for ever, and the connection used to
    rank as serving, never evicted: every newcomer got 503. It waits on its client: it makes room now."""
    socks = [never_reading(narrow.port) for _ in range(NARROW)]
    try:
        pipelined = head(narrow.port, "GET /healthz HTTP/1.1") * 64
        sent = push_until_stuck(socks, pipelined, deadline=time.monotonic() + 120)
        assert min(sent) > 0
        await narrow.served_legitimately()
        await narrow.served_legitimately()
    finally:
        close_all(socks)


def test_a_client_that_never_reads_is_reset_after_body_timeout(narrow: Served) -> None:
    """20,000 pipelined `GET /healthz` (8 MB of answers) and never a read: once the server cannot send them,
    the client has `server.body_timeout` (2 s here) to read again, then the connection is reset (its place,
    its file descriptor and the kernel's buffers freed). The answer used to wait in uvicorn's `send` for ever."""
    sock = never_reading(narrow.port)
    try:
        sock.setblocking(True)
        sock.settimeout(30)
        try:
            sock.sendall(head(narrow.port, "GET /healthz HTTP/1.1") * 20000)
        except ConnectionResetError:  # reset before it took them all
            return
        assert reset_by_server(sock, time.monotonic() + 60)
    finally:
        sock.close()


def test_a_connection_closed_with_answers_its_client_never_reads_is_reset_after_body_timeout(narrow: Served) -> None:
    """A request that says `Connection: close` and asks for an 8 MB answer, from a client that never reads: uvicorn
    writes the answer and closes the transport, and a close waits for the buffer to drain. The connection kept its
    place and its file descriptor for ever (with h11, past the high-water mark or below it, it even ranked as
    serving: never evicted). The client has `server.body_timeout` (2 s here) to read, then it is reset."""
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    params = {"name": "big", "arguments": {"size": 8_000_000}, "_meta": meta}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).encode()
    request = head(
        narrow.port,
        "POST /mcp HTTP/1.1",
        f"Authorization: Bearer {narrow.token(sub='mallory')}",
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        f"MCP-Protocol-Version: {MODERN}",
        "Mcp-Method: tools/call",
        "Mcp-Name: big",
        "Connection: close",
        f"Content-Length: {len(body)}",
    )
    sock = never_reading(narrow.port)
    try:
        sock.setblocking(True)
        sock.settimeout(30)
        sock.sendall(request + body)
        assert reset_by_server(sock, time.monotonic() + 60)
    finally:
        sock.close()


def rss_mib(served: Served) -> int:
    assert served.runner.proc is not None
    status = Path(f"/proc/{served.runner.proc.pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) // 1024


def test_pipelined_requests_are_read_as_they_are_answered(narrow: Served) -> None:
    """httptools read on after every answer and queued every request of each read: 100,000 pipelined
    `GET /healthz` (4.5 MB) on one connection took the server from 79 to 363 MiB. The peak while they are
    served and the connection is reset (`body_timeout`) stays within 64 MiB of where it started."""
    before = peak = rss_mib(narrow)
    sock = never_reading(narrow.port)
    try:
        sock.setblocking(True)
        sock.settimeout(30)
        try:
            sock.sendall(head(narrow.port, "GET /healthz HTTP/1.1") * 100_000)
        except ConnectionResetError:  # reset (past `body_timeout`) before it took them all: bounded too
            pass
        deadline = time.monotonic() + 60
        while not reset_by_server(sock, min(deadline, time.monotonic() + 0.5)) and time.monotonic() < deadline:
            peak = max(peak, rss_mib(narrow))
        peak = max(peak, rss_mib(narrow))
        assert peak - before < 64, (before, peak)
    finally:
        sock.close()


def test_line_ends_after_an_answer_do_not_keep_a_connection_open(narrow: Served) -> None:
    """httptools skips line ends between requests, and they cancelled uvicorn's keep-alive timer with no head
    deadline armed instead: a connection sending `\r\n` every 2 s after an answer stayed open for ever. A head is
    owed from the first of them: the connection is closed within `header_timeout` (10 s)."""
    with connect(narrow.port) as sock:
        sock.sendall(head(narrow.port, "GET /healthz HTTP/1.1"))
        assert status_of(sock) == 200
        deadline = time.monotonic() + 60
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(b"\r\n")
            except OSError:  # reset by the server
                break
            closed = closed_by_server(sock, time.monotonic() + 0.5)
        assert closed or time.monotonic() < deadline


# -- 3. the request head is bounded, on both parsers ---------------------------------------------------


def test_a_request_head_past_the_bound_gets_431_and_the_connection_is_closed(served: Served) -> None:
    """httptools buffered a 64 MiB header and answered 200; h11 stopped at 16 KiB with a 400. Both: 431."""
    answer, sent = big_head(served.port, 4 * 1024 * 1024)  # 4 MiB at most; the server closes long before
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert sent < 4 * 1024 * 1024
    # A head under the bound is served as ever.
    big = "x" * 8000
    healthz_url = f"http://127.0.0.1:{served.port}/healthz"
    assert loopback_get(healthz_url, headers={"X-Big": big}, timeout=30).status_code == 200


@pytest.mark.parametrize("shape", ["headers", "url"])
def test_a_whole_head_past_the_bound_in_one_write_gets_431(served: Served, shape: str) -> None:
    """Counting only heads still incomplete let 2,000 small headers (17 KiB), or a 17 KB URL, sent whole, get 200."""
    port = served.port
    if shape == "headers":
        oversized = many_headers(port, 2000)
    else:
        oversized = head(port, f"GET /healthz?{'a' * 17000} HTTP/1.1")
    assert len(oversized) > 16384
    sock = connect(port)
    try:
        sock.sendall(oversized)
        assert statuses(sock, time.monotonic() + 30) == [431]
    finally:
        sock.close()
    # Just under the bound, whole: served.
    sock = connect(port)
    try:
        sock.sendall(many_headers(port, 1400))
        assert status_of(sock) == 200
    finally:
        sock.close()


def test_a_complete_request_before_an_oversized_head_gets_its_answer_first(served: Served) -> None:
    """In one write: a complete `GET /healthz`, then a 52 KiB head. The first used to lose its 200 (httptools)."""
    port = served.port
    sock = connect(port)
    try:
        sock.sendall(head(port, "GET /healthz HTTP/1.1") + many_headers(port, 6000))
        assert statuses(sock, time.monotonic() + 30) == [200, 431]
    finally:
        sock.close()


def test_an_endless_chunked_trailer_gets_431(served: Served) -> None:
    """httptools buffered a trailer section without bound (152 MiB from one connection in 25 s, RSS 79 -> 299
    MiB); h11 answered 431. Both: 431 after about max_head_size, and the connection is closed."""
    answer, sent = endless_trailer(served.port, served.token(sub="mallory"), 16 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert sent < 16 * 1024 * 1024


# -- 2. standing streams, per client, per subject and in all ------------------------------------------------


def open_session(port: int, token: str) -> str:
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
    }
    response = httpx2.post(f"http://127.0.0.1:{port}/mcp", json=INITIALIZE, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


def open_get_stream(port: int, token: str, session: str) -> tuple[socket.socket, int]:
    """A raw handshake-era GET stream on `session`."""
    sock = connect(port)
    headers = [
        f"Authorization: Bearer {token}",
        "Accept: text/event-stream",
        f"mcp-session-id: {session}",
        "mcp-protocol-version: 2025-06-18",
    ]
    sock.sendall(head(port, "GET /mcp HTTP/1.1", *headers))
    return sock, status_of(sock)


async def test_one_token_cannot_hold_every_connection_with_listen_streams(served: Served) -> None:
    """One token opening a listen stream per connection slot held them all: everyone else got 503."""
    token = served.token(sub="mallory")
    streams = []
    try:
        statuses = []
        for _ in range(CONNECTIONS):
            sock, status = open_listen(served.port, token)
            streams.append(sock)
            statuses.append(status)
        assert statuses.count(200) == LIMITS["max_streams_per_client"], statuses
        assert set(statuses[LIMITS["max_streams_per_client"] :]) == {429}
        await served.served_legitimately()
    finally:
        close_all(streams)
    # A stream closed by its client gives its place back: the same token can listen again, to its cap.
    again: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while len(again) < LIMITS["max_streams_per_client"]:
            sock, status = open_listen(served.port, token)
            if status == 200:
                again.append(sock)
                continue
            sock.close()
            assert status == 429 and time.monotonic() < deadline, "closed streams never gave their places back"
            time.sleep(0.05)
    finally:
        close_all(again)


async def test_handshake_era_get_streams_are_counted_too(served: Served) -> None:
    token = served.token(sub="mallory-legacy")
    sessions = [open_session(served.port, token) for _ in range(LIMITS["max_sessions_per_client"])]
    streams = []
    try:
        statuses = []
        for session in sessions:
            sock, status = open_get_stream(served.port, token, session)
            streams.append(sock)
            statuses.append(status)
        sock, status = open_listen(served.port, token)  # one more standing stream, of the other generation
        streams.append(sock)
        statuses.append(status)
        assert statuses == [200] * LIMITS["max_streams_per_client"] + [429]
        await served.served_legitimately()
    finally:
        close_all(streams)
        for session in sessions:
            headers = {"Authorization": f"Bearer {token}", "mcp-session-id": session}
            httpx2.delete(f"http://127.0.0.1:{served.port}/mcp", headers=headers, timeout=30)


# -- 7. per subject, across client ids ---------------------------------------------------------------------


async def test_one_subject_with_many_client_ids_is_capped_as_a_whole(served: Served) -> None:
    """Dynamic client registration hands out client ids freely: one subject with 33 of them held 999 sessions."""
    sub = "mallory-dcr"
    opened: list[tuple[str, str]] = []
    refusals: list[str] = []
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    try:
        for client in range(4):
            token = served.token(sub=sub, client_id=f"dcr-{client}")
            for _ in range(LIMITS["max_sessions_per_client"]):
                response = httpx2.post(
                    served.runner.url, json=INITIALIZE, headers={**headers, "Authorization": f"Bearer {token}"}
                )
                if response.status_code == 200:
                    opened.append((token, response.headers["mcp-session-id"]))
                else:
                    assert response.status_code == 429
                    refusals.append(response.json()["error"]["message"])
        assert len(opened) == LIMITS["max_sessions_per_subject"]
        assert "(server.max_sessions_per_subject)" in refusals[0]
        # Listen streams too: the subject's cap holds over all its client ids.
        streams, statuses = [], []
        for client in range(4):
            token = served.token(sub=sub, client_id=f"dcr-{client}")
            for _ in range(3):
                sock, status = open_listen(served.port, token)
                streams.append(sock)
                statuses.append(status)
        close_all(streams)
        assert statuses.count(200) == LIMITS["max_streams_per_subject"], statuses
        await served.served_legitimately()
    finally:
        for token, session in opened:
            auth = {"Authorization": f"Bearer {token}", "mcp-session-id": session}
            httpx2.delete(served.runner.url, headers=auth, timeout=30)


async def test_many_tokens_cannot_take_every_connection_with_streams(served: Served) -> None:
    """Under every per-client cap, many subjects together: streams stop at server.max_streams, below the
    connection limit, so plain requests still find a connection."""
    streams, statuses = [], []
    try:
        for who in range(12):
            token = served.token(sub=f"crowd-{who}")
            for _ in range(4):
                sock, status = open_listen(served.port, token)
                streams.append(sock)
                statuses.append(status)
        # At most server.max_streams stand (fewer while the server is still noticing another test's closed ones).
        assert 0 < statuses.count(200) <= LIMITS["max_streams"] and 503 in statuses, statuses
        assert set(statuses) == {200, 503}
        await served.served_legitimately()
    finally:
        close_all(streams)


# -- 12. the metrics port ---------------------------------------------------------------------------------


@dataclass
class Metered:
    runner: RunnerProcess
    port: int  # the metrics port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def threads(self) -> int:
        assert self.runner.proc is not None
        status = Path(f"/proc/{self.runner.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    folder = tmp_path_factory.mktemp("metered")
    (folder / "hard_tools.py").write_text(TOOLS)
    port = free_port()
    (folder / "metered.yaml").write_text(
        f"name: metered\nserver:\n  metrics: {{port: {port}}}\ntools:\n  - function: hard_tools:add\n"
    )
    runner = RunnerProcess(folder / "metered.yaml", extra=("--no-reload",)).start()
    wait_for_port(port)
    yield Metered(runner, port)
    runner.stop()


def test_the_metrics_port_checks_host_and_origin(metered: Metered) -> None:
    """Through DNS rebinding a page read the tool names, the manifest's path and the call rates."""
    assert loopback_get(metered.url, headers={"Host": "evil.example"}, timeout=30).status_code == 421
    assert loopback_get(metered.url, headers={"Host": f"evil.example:{metered.port}"}, timeout=30).status_code == 421
    assert loopback_get(metered.url, headers={"Origin": "http://evil.example"}, timeout=30).status_code == 403
    scraped = loopback_get(metered.url, timeout=30)
    assert scraped.status_code == 200 and "mcp_runner_calls" in scraped.text
    local = {"Host": f"localhost:{metered.port}", "Origin": f"http://localhost:{metered.port}"}
    assert loopback_get(metered.url, headers=local, timeout=30).status_code == 200


def test_idle_sockets_on_the_metrics_port_neither_pile_up_threads_nor_block_a_scrape(metered: Metered) -> None:
    """1,000 idle sockets made 1,004 threads, never reaped. Here 100: threads stay bounded, a scrape gets
    through, and every idle socket is closed by the server (made room for, or past its head deadline)."""
    before = metered.threads()
    idle = [socket.create_connection(("127.0.0.1", metered.port), timeout=30) for _ in range(100)]
    try:
        for sock in idle[:10]:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half a head, then nothing
        scraped = loopback_get(metered.url, timeout=30)
        assert scraped.status_code == 200 and "mcp_runner_calls" in scraped.text
        assert metered.threads() - before <= MAX_METRICS_CONNECTIONS + 2  # one per connection, bounded
        deadline = time.monotonic() + 60
        assert all(closed_by_server(sock, deadline) for sock in idle)
    finally:
        close_all(idle)


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_the_uvicorn_internals_the_new_bounds_rely_on_are_still_there(parser: str) -> None:
    """runner/http/limits_*.py also override these (test_http_edge.py checks the older ones): fail here, by name."""
    from uvicorn.protocols.http import h11_impl, httptools_impl

    module = httptools_impl if parser == "httptools" else h11_impl
    protocol = module.HttpToolsProtocol if parser == "httptools" else module.H11Protocol
    names = ["on_response_complete", "send_400_response", "data_received", "pause_writing", "resume_writing"]
    names += ["on_url", "on_header", "on_body"] if parser == "httptools" else ["handle_events"]
    for name in names:
        assert callable(getattr(protocol, name, None)), f"uvicorn's {parser} protocol no longer has {name!r}"
    assert "write_paused" in vars(module.FlowControl(None)), "uvicorn's FlowControl no longer has 'write_paused'"  # type: ignore[arg-type]
    assert callable(getattr(module.RequestResponseCycle, "send", None)), "uvicorn's cycle no longer has 'send'"
