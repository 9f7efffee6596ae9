"""Sending one operation's request: the only code that talks to the API.

What an argument can never do (tests/test_openapi_safety.py tries each):
- change the host: the URL is the manifest's `base_url` plus the operation's path, and the result
  is checked to have that scheme, host, port and path prefix before anything is sent;
- escape the operation's path: a path value is percent-encoded as one segment (`/`, `?`, `#`, `%`
  too), and a value of `.` or `..` is sent as `%2E` / `%2E%2E`, so no client or server folds it;
- inject a header or a request line: a header value with CR, LF or NUL is refused; query values
  are encoded by the HTTP client.
The client's bearer token is never forwarded: the request carries the manifest's `headers:` and
the operation's header arguments, nothing from the MCP request. Redirects are not followed (one
could lead to another host): a 3xx is answered like any other non-2xx status.
"""

from __future__ import annotations

import codecs
import functools
import json
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import quote

import anyio
import httpx2
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent

from runner.http.busy import slot
from runner.http.sessions import Principal
from runner.openapi.operations import Operation

KEEPALIVE_S = 60.0  # an idle pooled connection is kept this long (the API may close it sooner)
MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # a larger answer is a tool error, never read into memory whole
ERROR_BODY_CHARS = 300  # how much of a non-2xx answer's body the tool error carries
# A JSON answer up to this size is re-indented for reading; a larger one is passed on as the API sent it:
# indenting puts 2 spaces per level before every value, so 3.6 MiB of `[[[...[0,0,...]]]]` 20 deep became
# 78 MiB of text (and 300 MiB of RSS) per call. Small and shallow, the pretty text stays within ~4 MiB.
MAX_PRETTY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 64  # a deeper JSON answer is a tool error (Python's parser itself stops near 1000, with a crash)
logger = logging.getLogger("runner")


@functools.cache
def tls() -> ssl.SSLContext:
    """One TLS context for every API's client: making one loads the trust store (some 60 ms), once per process.

    `mount_apis` calls it while building, so no call pays for it."""
    return httpx2.create_ssl_context()


@dataclass
class Api:
    """One API: its base URL, static headers and the one HTTP client every call shares (connection pooling)."""

    name: str
    base_url: str
    headers: dict[str, str]
    timeout: float
    _client: httpx2.AsyncClient | None = field(default=None, repr=False)
    _inflight: int = 0
    _retired: bool = False
    # The last call's outcome kind (`ok`, `http 503`, `connect error`, `timed out`, `too large`) and when
    # (time.time()), for /healthz: a kind only, never a URL, header or body (runner/openapi/health.py).
    last: tuple[str, float] | None = None

    def outcome(self, kind: str) -> None:
        self.last = (kind, time.time())

    def client(self) -> httpx2.AsyncClient:
        if self._client is None:  # made on the first call, on the serving loop
            self._client = httpx2.AsyncClient(
                headers=self.headers,
                timeout=self.timeout,
                follow_redirects=False,
                trust_env=False,  # no proxy or netrc from the environment: the manifest says where requests go
                verify=tls(),
                limits=httpx2.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_S),
            )
        return self._client

    async def retire(self) -> None:
        """A reload replaced this API: close now if idle, else when its last call in flight ends."""
        self._retired = True
        if self._inflight == 0:
            await self.aclose()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def segment(value: Any) -> str:
    """A path parameter's value, encoded so it stays inside its segment (module docstring)."""
    if isinstance(value, list):
        return ",".join(segment(v) for v in value)  # style: simple
    text = _text(value)
    if text in ("", ".", ".."):
        if not text:
            raise ToolError("a path parameter cannot be empty")
        return text.replace(".", "%2E")
    return quote(text, safe="")


def _header(name: str, value: Any) -> str:
    text = ",".join(_text(v) for v in value) if isinstance(value, list) else _text(value)
    if any(c in text for c in "\r\n\0"):
        raise ToolError(f"header {name!r} cannot hold a line break or NUL")
    if not text.isascii():  # HTTP header values are bytes; the client would fail on it mid-send
        raise ToolError(f"header {name!r} must be ASCII text")
    return text


def request_parts(api: Api, op: Operation, arguments: dict[str, Any]) -> dict[str, Any]:
    """The method, checked URL, query, headers and JSON body for a call (ToolError for a value it refuses)."""
    path = op.path
    query: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    body: Any = None
    props: dict[str, Any] = {}
    for arg in op.args:
        if arg.argument not in arguments:
            continue
        value = arguments[arg.argument]
        if arg.where == "path":
            path = path.replace("{" + arg.name + "}", segment(value))
        elif arg.where == "query":
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]  # style: form, explode: true
            query.extend((arg.name, _text(v)) for v in values)
        elif arg.where == "header":
            headers[arg.name] = _header(arg.name, value)
        elif arg.where == "body":
            body = value
        else:
            props[arg.name] = value
    if props:
        body = props
    base = httpx2.URL(api.base_url)
    try:
        url = httpx2.URL(api.base_url.rstrip("/") + path)
    except httpx2.InvalidURL:  # a path value too long for a URL, say
        raise ToolError("the arguments do not make a valid URL (a path value too long?)") from None
    prefix = base.raw_path.rstrip(b"/") + b"/"
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port) or not url.raw_path.startswith(prefix):
        raise ToolError("the arguments would leave the API's base URL")  # unreachable by construction: fail closed
    parts: dict[str, Any] = {"method": op.method, "url": url, "params": query, "headers": headers}
    if body is not None or (op.has_body and op.body_required):
        parts["json"] = body if body is not None else {}
    return parts


async def send(api: Api, op: Operation, arguments: dict[str, Any], who: Principal, per_client: int) -> CallToolResult:
    """One call: at most `per_client` in flight for `who`, and runner/http/busy.py's bounds for its user and for all
    clients, all below the pool's 100 connections (refused at once beyond); `timeout` is a total deadline for the
    whole exchange (httpx2's timeout is per read: a trickle would reset it)."""
    try:
        parts = request_parts(api, op, arguments)
    except ToolError as exc:  # a value refused before anything is sent: named like every other failure
        raise ToolError(f"{api.name}: {exc}") from None
    with slot("API", api.name, who, per_client, api.timeout, api.base_url):
        api._inflight += 1
        try:
            with anyio.fail_after(api.timeout):
                async with api.client().stream(**parts) as response:
                    data = bytearray()
                    async for chunk in response.aiter_bytes():
                        data += chunk
                        if len(data) > MAX_RESPONSE_BYTES:
                            api.outcome("too large")
                            limit = MAX_RESPONSE_BYTES // 1048576
                            raise ToolError(f"{api.name}: the response is larger than {limit} MiB")
        except (httpx2.TimeoutException, TimeoutError):
            api.outcome("timed out")
            raise ToolError(f"{api.name}: no answer within {api.timeout:g} s") from None
        except httpx2.HTTPError as exc:
            api.outcome("connect error" if isinstance(exc, httpx2.ConnectError) else "transport error")
            raise ToolError(f"{api.name}: cannot reach the API: {type(exc).__name__}") from None
        finally:
            api._inflight -= 1
            if api._retired and api._inflight == 0:
                await api.aclose()
    return _result(api, bytes(data), response)


def _result(api: Api, body: bytes, response: httpx2.Response) -> CallToolResult:
    """The API's answer as a tool result (docs/openapi.md "Results")."""
    api.outcome("ok" if 200 <= response.status_code < 300 else f"http {response.status_code}")
    kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not 200 <= response.status_code < 300:
        text = _decoded(body, response)[:ERROR_BODY_CHARS]
        raise ToolError(f"{api.name}: HTTP {response.status_code} {response.reason_phrase}: {text}".rstrip(": "))
    if kind == "application/json" or kind.endswith("+json"):
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = ...
        except RecursionError:  # some 1000 levels: Python's parser gives up
            _too_deep(api)
        if parsed is not ...:
            if _depth(parsed) > MAX_JSON_DEPTH:
                _too_deep(api)
            structured = parsed if isinstance(parsed, dict) else {"result": parsed}
            if len(body) <= MAX_PRETTY_BYTES:
                text = json.dumps(parsed, ensure_ascii=False, indent=2)
            else:
                text = _decoded(body, response)
            return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)
    if not body:
        return CallToolResult(content=[TextContent(type="text", text=f"HTTP {response.status_code}, no content")])
    if kind.startswith("text/") or "xml" in kind or "json" in kind or kind in ("", "application/x-www-form-urlencoded"):
        return CallToolResult(content=[TextContent(type="text", text=_decoded(body, response))])
    return CallToolResult(content=[TextContent(type="text", text=f"{len(body)} bytes of {kind}")])


def _too_deep(api: Api) -> NoReturn:
    api.outcome("too deep")
    raise ToolError(f"{api.name}: the JSON answer is nested more than {MAX_JSON_DEPTH} levels deep")


def _depth(value: Any) -> int:
    """How deeply `value` nests lists and objects, level by level (no recursion), stopping past MAX_JSON_DEPTH."""
    depth = 0
    level = [value] if isinstance(value, dict | list) else []
    while level and depth <= MAX_JSON_DEPTH:
        depth += 1
        items = (v for node in level for v in (node.values() if isinstance(node, dict) else node))
        level = [v for v in items if isinstance(v, dict | list)]
    return depth


def _decoded(body: bytes, response: httpx2.Response) -> str:
    """The body as text in its declared charset; UTF-8 when that charset is not one Python knows."""
    charset = response.charset_encoding or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    return body.decode(charset, errors="replace")
