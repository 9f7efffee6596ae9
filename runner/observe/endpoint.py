"""The metrics port: Prometheus's text from threads of its own, behind the MCP port's Host/Origin rules, bounded.

prometheus_client's `start_http_server` was used before: it checks no Host or Origin (through DNS
rebinding a web page read the tool names, the manifest's absolute path and the call rates) and runs
one thread per connection with no timeout (1,000 idle sockets made 1,004 threads, never reaped).

This server keeps what made a thread worth having, a scrape answered while the event loop is busy,
and bounds the rest the way runner/http/limits.py bounds the MCP port:

- the Host and Origin headers are checked with the MCP port's rules (runner/http/security.py), for
  the metrics address: on loopback, Host must name this machine or a `server.allowed_hosts` entry;
  an Origin must be this machine's or a `server.allowed_origins` entry (421 and 403, as there);
- at most `max_connections` connections (one thread each), one request per connection (HTTP/1.0);
- a connection must send its request head within `header_timeout` of opening, and a slow reader
  gets as long to take the answer; at the bound, a newcomer makes room by closing the oldest
  connection still owing its head, and only when every connection is busy answering is it refused
  with a 503. A scraper never waits behind sockets that send nothing.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from runner.http.security import HostRules

logger = logging.getLogger("runner.observe")

MAX_CONNECTIONS = 16  # a scraper or two, and room for a person with curl
HEADER_TIMEOUT = 10.0  # the MCP port's default server.header_timeout
_REFUSAL = (
    b"HTTP/1.0 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 20\r\nconnection: close\r\n\r\nToo many connections"
)


class MetricsServer(ThreadingHTTPServer):
    """A bounded threading HTTP server for one registry."""

    daemon_threads = True
    block_on_close = False  # closing the server never waits for a stalled client's thread
    request_queue_size = 512  # socketserver's 5 made connections wait seconds for SYN retries under a flood

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry,
        rules: Callable[[], HostRules],
        *,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.registry = registry
        self.rules = rules
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._waiting: OrderedDict[socket.socket, float] = OrderedDict()  # owing their head, oldest first

    def server_bind(self) -> None:
        """HTTPServer's, without its reverse DNS look-up of the bind address (`socket.getfqdn`)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._open)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Take a place (making room from the oldest connection still owing its head), then start a thread."""
        with self._lock:
            if len(self._open) >= self.max_connections:
                if not self._waiting:
                    self._refuse(request)
                    return
                self._evict(next(iter(self._waiting)))
            self._open.add(request)
            self._waiting[request] = time.monotonic()
        request.settimeout(self.header_timeout)
        super().process_request(request, client_address)

    def head_read(self, request: socket.socket) -> None:
        """The request head has arrived: the connection is busy answering, no longer evictable."""
        with self._lock:
            self._waiting.pop(request, None)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.discard(request)
            self._waiting.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Between accepts (every half second at most): close connections past their head deadline."""
        now = time.monotonic()
        with self._lock:
            late = [sock for sock, opened in self._waiting.items() if now - opened > self.header_timeout]
            for sock in late:
                self._evict(sock)

    def _evict(self, sock: socket.socket) -> None:
        """Free `sock`'s place now; its thread sees the shutdown, ends, and closes it (lock held)."""
        self._open.discard(sock)
        self._waiting.pop(sock, None)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.setblocking(False)
            request.send(_REFUSAL)
        except OSError:
            pass
        request.close()
        logger.debug("metrics: connection limit (%d) reached, refused a connection", self.max_connections)


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive holds a thread

    def do_GET(self) -> None:
        self.server.head_read(self.request)
        hosts, origins = self.headers.get_all("Host") or [], self.headers.get_all("Origin") or []
        rules = self.server.rules()
        if len(hosts) != 1 or rules.host_refused(hosts[0]):
            self._answer(421, b"Invalid Host header", "text/plain; charset=utf-8")
            return
        if len(origins) > 1 or (origins and rules.origin_refused(origins[0], hosts[0])):
            self._answer(403, b"Invalid Origin header", "text/plain; charset=utf-8")
            return
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        self._answer(200, encoder(self.server.registry), content_type)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """No access line per scrape (the base class writes one to stderr)."""


def serve_metrics(
    address: tuple[str, int], registry: CollectorRegistry, rules: Callable[[], HostRules]
) -> MetricsServer:
    """Start the metrics server on a daemon thread; raises OSError when the address is taken."""
    server = MetricsServer(address, registry, rules)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
