"""Turn on what the flags, the environment and the manifest ask for, once, when `serve` starts.

Precedence, for each setting: the command-line flag, then the environment
(`MCP_RUNNER_LOG_FORMAT`, the `OTEL_*` variables), then the manifest's
`server:` block. Changing them in the manifest needs a restart (a reload
says so), like the other start-up settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from runner.http.security import HostRules, is_loopback_address
from runner.observe import logs, metrics, sdkspans, tracing
from runner.observe.calls import Observer

if TYPE_CHECKING:
    from runner.attach import LiveServer
    from runner.manifest.model import Manifest

_TOKEN_LINES = ("token:", "(valid ", "connect:")


@dataclass(frozen=True)
class Flags:
    """The observability flags of `mcp-runner serve`."""

    metrics: tuple[str, int] | None = None  # --metrics HOST:PORT
    log_format: str | None = None  # --log-format
    log_arguments: bool = False  # --log-arguments


@dataclass
class Observability:
    json: bool = False
    log_arguments: bool = False
    metrics_url: str | None = None
    traces_to: str | None = None

    def attach(self, server: LiveServer, manifest_file: str, digest: str) -> None:
        """Observe `server`'s calls (it stays the live server across reloads, so once is enough)."""
        sdkspans.skip_while_idle(server)
        server.add_middleware(Observer(server, self.log_arguments), edits_results=False)
        if tracing.exporting:  # inside the SDK's request span (the list's first): see runner/observe/httpspan.py
            from runner.observe.httpspan import link_transport

            server.add_middleware(link_transport, edits_results=False)
        metrics.manifest(manifest_file, digest, server.name)

    def lines(self) -> list[str]:
        """For the start-up block."""
        lines = []
        if self.metrics_url is not None:
            lines.append(f"  metrics:   {self.metrics_url} (Prometheus; no auth: keep it off public networks)")
        if self.traces_to is not None:
            lines.append(f"  traces:    OTLP/HTTP to {self.traces_to}")
        return lines

    def announce(self, banner: str, out: TextIO) -> None:
        """Print the start-up block; in JSON mode, log it as one record, without the token lines.

        With JSON logs stderr is a log stream, and a token never goes to a log: `mcp-runner token` prints one.
        """
        text = "\n".join([banner, *self.lines()])
        if not self.json:
            print(text, file=out, flush=True)
            return
        kept = [line for line in text.splitlines() if not line.lstrip().startswith(_TOKEN_LINES)]
        logging.getLogger("runner").info("%s", "\n".join(kept))


def start(manifest: Manifest, flags: Flags) -> Observability:
    """Log format, metrics endpoint (raises OSError when its port is taken), trace export."""
    settings = manifest.server
    fmt = logs.chosen(flags.log_format, settings.log_format)
    logs.configure(fmt)
    observability = Observability(json=fmt == "json", log_arguments=flags.log_arguments or settings.log_arguments)
    where = flags.metrics or ((settings.metrics.host, settings.metrics.port) if settings.metrics else None)
    if where is not None:
        from runner.observe.endpoint import serve_metrics

        registry = metrics.enable().registry
        # The MCP port's Host/Origin rules, for the metrics address and the manifest's allowed lists.
        rules = HostRules(is_loopback_address(where[0]), tuple(settings.allowed_hosts), tuple(settings.allowed_origins))
        # Threads of its own, bounded: a scrape is answered even while the event loop is busy.
        try:
            server = serve_metrics(where, registry, lambda: rules)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {where[0]}:{where[1]}: {exc.strerror or exc}") from None
        host = f"[{where[0]}]" if ":" in where[0] else where[0]
        observability.metrics_url = f"http://{host}:{server.server_port}/metrics"
    # The tracer provider flushes its last spans at exit by itself (an atexit hook of the OpenTelemetry SDK).
    observability.traces_to = tracing.setup()
    return observability
