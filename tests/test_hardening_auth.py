"""Issue 22, items 4, 5, 8 and 9, against the real server and a real JWKS server on loopback.

- 4: text a client chose (a token header PyJWT quotes, logged arguments) never forges a log line
  or reaches the terminal raw, in either log format;
- 5: a hanging issuer costs each request at most one fetch: concurrent misses share it, measured
  by the JWKS server's own count of fetches when each answer arrives, not by a clock; and requests
  naming made-up kids, looped on keep-alive sockets, cannot hold every connection slot;
- 8: `scope` is split on U+0020 only;
- 9: a token cut to a log line's length is still redacted.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.helpers import JWKSServer, Key, b64url, mcp_client, unsigned_token
from tests.test_auth_adversarial import Guarded

pytestmark = pytest.mark.anyio

FAKE_AUDIT = "runner.audit: tool call delete_all by admin (client ops): ok in 1.0 ms"
FORGED_CRIT = f"\n2026-12-07 05:00:00,000 INFO {FAKE_AUDIT}\n\x1b[1A\x1b[2K"
# Characters that end a line for some reader (NEL, U+2028/9, CR, VT, FF), drive a terminal (ESC, CSI) or are C1.
RAW = ("\x1b", "\x9b", "\x85", "\u2028", "\u2029", "\r", "\x0b", "\x0c", "\x90", "\u202e")


@pytest.fixture(scope="module", params=["text", "json"])
def logged(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    """A guarded server logging arguments, in each log format."""
    jwks = JWKSServer(app_id="log-app", keys=[Key.new("good-kid")]).start()
    g = Guarded(tmp_path_factory.mktemp(f"logged-{request.param}"), jwks)
    g.runner.extra = ("--log-format", request.param, "--log-arguments")
    g.runner.start()
    yield g
    g.runner.stop()
    jwks.stop()


def records(g: Guarded) -> list[str]:
    """The log as lines, split wherever any reader might split it (str.splitlines: NEL, U+2028...)."""
    return g.runner.logged().splitlines()


def assert_no_raw_controls(log: str) -> None:
    for char in RAW:
        assert char not in log, f"{char!r} reached the log raw"


async def until_logged(g: Guarded, text: str) -> str:
    with anyio.fail_after(30):
        while text not in (log := g.runner.logged()):
            await anyio.sleep(0.05)
    return log


async def test_a_critical_header_cannot_forge_a_log_line(logged: Guarded) -> None:
    header = {"alg": "RS256", "typ": "JWT", "kid": "good-kid", "crit": [FORGED_CRIT]}
    head, claims, _ = unsigned_token(header, logged.issuer.claims(scope="mcp")).split(".")
    token = f"{head}.{claims}.{b64url(b'not a signature at all')}"  # the public kid, a garbage signature
    response = logged.post(token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == logged.invalid()
    log = await until_logged(logged, "Unsupported critical extension")
    assert_no_raw_controls(log)
    assert not any(FAKE_AUDIT in line and "Unsupported critical extension" not in line for line in records(logged))
    if "--log-format" in logged.runner.extra and "json" in logged.runner.extra:
        rejected = [json.loads(line) for line in records(logged) if "Unsupported critical extension" in line]
        assert rejected and FAKE_AUDIT in rejected[0]["message"]  # escaped, never lost


async def test_logged_arguments_cannot_break_a_line(logged: Guarded) -> None:
    fake = FAKE_AUDIT.replace("delete_all", "drop_tables")  # not the other test's, which shares this server
    hostile = "a\x85b\u2028c\u2029d\x9b2Ke\x1b[2Kf\x90g\u202eh\ri\n" + fake
    async with mcp_client(logged.runner.url, logged.token()) as client:
        result = await client.call_tool("echo", {"text": hostile})
    assert result.structured_content == {"result": hostile}  # the tool saw it all: only the log escapes
    log = await until_logged(logged, "arguments=")
    assert_no_raw_controls(log)
    lines = [line for line in records(logged) if fake in line]
    assert lines and all("arguments=" in line for line in lines)  # the fake line is inside the real one


async def test_a_token_as_an_argument_key_is_redacted(logged: Guarded) -> None:
    """A token sent as an argument's KEY (top level and nested) never reaches the log, in either format:
    the JSON format's `arguments` field included, which the message's redaction did not cover."""
    secret = logged.token(sub="the-subject-of-a-key-token", scope="mcp key-scope")
    header, claims, signature = secret.split(".")
    async with mcp_client(logged.runner.url, logged.token()) as client:
        await client.call_tool("echo", {"text": "keyed", secret: 1, "nested": {secret: "v", "bearer": [secret]}})
    log = await until_logged(logged, "keyed")
    for part in (header[:24], claims[:24], claims[40:64], signature[:24]):
        assert part not in log
    audit = [line for line in records(logged) if "keyed" in line]
    assert audit and all("[redacted]" in line for line in audit)
    if "json" in logged.runner.extra:
        fields = [json.loads(line) for line in audit]
        assert all("[redacted]" in field["arguments"] and "keyed" in field["arguments"] for field in fields)


SEPARATORS = {"NBSP": "\u00a0", "IDEOGRAPHIC": "\u3000", "TAB": "\t", "LF": "\n", "NEL": "\x85", "LS": "\u2028"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    jwks = JWKSServer(app_id="scope-app", keys=[Key.new("good-kid")]).start()
    g = Guarded(tmp_path_factory.mktemp("scopes"), jwks)
    g.runner.start()
    yield g
    g.runner.stop()
    jwks.stop()


def call(name: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": {}}}


@pytest.mark.parametrize("separator", SEPARATORS.values(), ids=SEPARATORS.keys())
def test_scopes_are_split_on_u0020_only(guarded: Guarded, separator: str) -> None:
    # `delete_all` needs admin and write; the token holds the scope-tokens "x<sep>admin" and "x<sep>write".
    token = guarded.token(scope=f"mcp x{separator}admin x{separator}write")
    response = guarded.post(token, call("delete_all"))
    assert response.status_code == 403, response.text
    assert response.headers["www-authenticate"] == guarded.forbidden("admin write", "mcp admin write")
    # The same scopes separated by U+0020 pass the scope check (the transport then wants a session).
    assert guarded.post(guarded.token(scope="mcp x admin x write"), call("delete_all")).status_code != 403


async def test_a_token_cut_to_a_log_lines_length_is_still_redacted(guarded: Guarded) -> None:
    secret = guarded.token(sub="the-subject-of-a-secret-token", scope="mcp secret-scope")
    header, claims, signature = secret.split(".")
    assert len(header) + len(claims) > 200  # cut before its second dot where names are cut
    async with mcp_client(guarded.runner.url, guarded.token()) as client:
        await client.call_tool(secret, {})  # a token as a tool name: the audit line shows 200 characters
        with pytest.raises(Exception):  # noqa: B017  # any refusal: only what reaches the log matters here
            await client.read_resource(secret)
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    headers |= {"Authorization": f"Bearer {guarded.token()}", "Mcp-Session-Id": secret}
    headers["Mcp-Protocol-Version"] = "2025-06-18"
    ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
    assert httpx2.post(guarded.runner.url, json=ping, headers=headers, timeout=30).status_code == 404
    log = await until_logged(guarded, 'resource read "')
    for part in (header[:24], claims[:24], claims[40:64], signature[:24]):
        assert part not in log
    assert "[redacted]" in log


# -- item 5: a hanging issuer ---------------------------------------------------------------------------------

HANG = 12.0  # seconds the JWKS endpoint takes to answer: well past the runner's 5 s fetch deadline


async def answers_with_fetch_counts(g: Guarded, tokens: list[str]) -> list[tuple[int, int]]:
    """POST each token at once; for each answer, its status and how many fetches the JWKS server had seen then."""
    seen: list[tuple[int, int]] = []

    async def one(token: str) -> None:
        response = await anyio.to_thread.run_sync(g.post, token)
        seen.append((response.status_code, g.jwks.hits))

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tasks:
            for token in tokens:
                tasks.start_soon(one, token)
    return seen


async def test_concurrent_cold_requests_share_one_fetch_of_a_hanging_issuer(tmp_path: Path) -> None:
    jwks = JWKSServer(app_id="hang-app", keys=[Key.new("cold-kid")], delay=HANG).start()
    g = Guarded(tmp_path, jwks)
    g.runner.start()
    try:
        with anyio.fail_after(30):
            while jwks.hits < 1:  # the start-up fetch is under way (and hangs)
                await anyio.sleep(0.02)
        seen = await answers_with_fetch_counts(g, [g.token() for _ in range(10)])
    finally:
        g.runner.stop()
        jwks.delay = 0.0
        jwks.stop()
    assert [status for status, _ in seen] == [503] * 10  # no key set could be fetched: the server's fault
    # Every request was answered when its shared fetch gave up: none waited for a second fetch of its own.
    # (Before: each waiter ran its own 5 s fetch in turn, the tenth answered after the eleventh fetch.)
    assert max(hits for _, hits in seen) <= 2, seen


async def test_made_up_kids_do_not_queue_a_real_rotated_kid_behind_their_fetches(tmp_path: Path) -> None:
    jwks = JWKSServer(app_id="rotate-app", keys=[Key.new("known-kid")]).start()
    g = Guarded(tmp_path, jwks)
    g.runner.start()
    try:
        assert g.post(g.token()).status_code == 200  # keys known
        time.sleep(2.1)  # past the refetch rate limit, so an unknown kid really fetches
        rotated = Key.new("rotated-kid")
        jwks.keys = [jwks.keys[0], rotated]
        jwks.delay = HANG
        before = jwks.hits
        tokens = [g.issuer.token(key=Key.new(f"made-up-{i}"), scope="mcp") for i in range(10)]
        tokens.append(g.issuer.token(key=rotated, scope="mcp"))
        seen = await answers_with_fetch_counts(g, tokens)
        assert g.post(g.token()).status_code == 200  # the known kid never waited on any of it
    finally:
        g.runner.stop()
        jwks.delay = 0.0
        jwks.stop()
    assert [status for status, _ in seen] == [503] * 11  # the fetch for their kids never answered in time
    assert max(hits for _, hits in seen) <= before + 2, (before, seen)


SLOTS = 10  # server.max_connections in the lock-out test: as many attacker sockets as slots


def read_answer(sock: socket.socket) -> bytes:
    """One HTTP response's head (its body read and dropped), or b"" when the server closed the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")), 0
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def made_up_kids(port: int, stop: threading.Event, heads: list[bytes], sent: list[int], slot: int) -> None:
    """A keep-alive socket POSTing, again and again, a token that names a made-up kid (no valid signature).

    A socket the server closes is not opened again: which connection a reconnecting flood pushes out is
    the connection limiter's business (tests/test_hardening_http.py), and here it would race the known-kid
    client's new connection (waiting for its head, it is evicted first). What is measured is whether the
    made-up kids keep every slot "serving" while they wait on the hanging issuer.
    """
    token = unsigned_token({"alg": "RS256", "typ": "JWT", "kid": uuid.uuid4().hex}, {"sub": "x"}) + "AAAA"
    request = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            while not stop.is_set():
                sock.sendall(request)
                sent[slot] += 1
                head = read_answer(sock)
                if not head or b"connection: close" in head.lower():
                    return
                heads.append(head)
    except OSError:
        return


def served_within(g: Guarded, attempts: int) -> int:
    """The status of a call with a known kid, retried on the connection limiter's 503 up to `attempts` times."""
    status = 0
    for _ in range(attempts):
        response = g.post(g.token())
        status = response.status_code
        if not (status == 503 and response.text == "Too many connections"):
            break
        time.sleep(0.5)
    return status


def test_made_up_kids_on_keep_alive_sockets_cannot_lock_a_known_kid_out(tmp_path: Path) -> None:
    jwks = JWKSServer(app_id="slots-app", keys=[Key.new("known-kid")]).start()
    g = Guarded(tmp_path, jwks)
    manifest_path = tmp_path / "guarded.yaml"
    manifest_path.write_text(manifest_path.read_text() + f"server:\n  max_connections: {SLOTS}\n")
    g.runner.start()
    stop = threading.Event()
    heads: list[bytes] = []
    sent = [0] * SLOTS
    attackers = [
        threading.Thread(target=made_up_kids, args=(g.runner.port, stop, heads, sent, i), daemon=True)
        for i in range(SLOTS)
    ]
    try:
        assert g.post(g.token()).status_code == 200  # keys known
        time.sleep(2.1)  # past the refetch rate limit, so a made-up kid really fetches
        before = jwks.hits
        jwks.delay = HANG  # the issuer hangs from now on
        for attacker in attackers:
            attacker.start()
        deadline = time.monotonic() + 30
        while (jwks.hits == before or min(sent) == 0) and time.monotonic() < deadline:
            time.sleep(0.02)  # every socket has sent, and a fetch for a made-up kid hangs at the issuer
        assert jwks.hits > before and min(sent) > 0, (before, jwks.hits, sent)
        # A client with a known kid, meanwhile: each attempt on a new connection. Before, every slot was held
        # by a request waiting on the hanging fetch, and each attempt got "503 Too many connections".
        # Each call may be retried twice on "Too many connections", as a client does with a 503: thirty sockets
        # sending back to back keep most slots busy for a moment on a loaded machine, which is the connection
        # limiter's business; what must not happen is every slot held for the length of the issuer's hang.
        statuses = [served_within(g, attempts=3) for _ in range(5)]
    finally:
        stop.set()
        for attacker in attackers:
            attacker.join(timeout=40)
        g.runner.stop()
        jwks.delay = 0.0
        jwks.stop()
    assert statuses == [200] * 5
    # The made-up kids were answered 503 with Retry-After (the token could not be checked), never let through.
    assert heads and all(head.startswith(b"HTTP/1.1 503") for head in heads), heads[:3]
    assert any(b"retry-after: 2" in head.lower() for head in heads)


def test_an_unknown_kid_does_not_wait_on_a_fetch_once_the_issuer_has_failed(tmp_path: Path) -> None:
    """Once a fetch has failed, a request naming an unknown kid is answered without joining the next fetch.

    Ordering, not clocks: the second failed fetch is logged before anyone waiting on it is woken, so an
    answer that arrives while that line is not yet in the log did not wait on that fetch.
    """
    jwks = JWKSServer(app_id="failed-app", keys=[Key.new("known-kid")]).start()
    g = Guarded(tmp_path, jwks)
    g.runner.start()
    pending: list[httpx2.Response] = []
    starter = threading.Thread(target=lambda: pending.append(g.post(made_up(g, "second"))), daemon=True)
    try:
        assert g.post(g.token()).status_code == 200  # keys known
        time.sleep(2.1)  # past the refetch rate limit, so a made-up kid really fetches
        before = jwks.hits
        jwks.delay = HANG
        assert g.post(made_up(g, "first")).status_code == 503  # its fetch failed after the 5 s deadline
        assert "JWKS refresh failed, keeping" in g.runner.logged()
        starter.start()  # (past the rate limit again:) starts the next fetch, which hangs too
        deadline = time.monotonic() + 30
        while jwks.hits < before + 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert jwks.hits == before + 2, (before, jwks.hits)
        answer = g.post(made_up(g, "third"))
        log = g.runner.logged()
        assert g.post(g.token()).status_code == 200  # a known kid meanwhile, as ever
    finally:
        starter.join(timeout=60)
        g.runner.stop()
        jwks.delay = 0.0
        jwks.stop()
    assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
    assert "failed 2 times in a row" not in log  # answered while the fetch in flight still hung
    assert pending and pending[0].status_code == 503


def made_up(g: Guarded, name: str) -> str:
    return g.issuer.token(key=Key.new(f"made-up-{name}"), scope="mcp")
