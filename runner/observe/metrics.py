"""Prometheus metrics, recorded only when `server.metrics` / `--metrics` turns them on.

The registry is the runner's own (not prometheus_client's global one), so a
scrape shows exactly these series. Instrumented code calls the module-level
functions below; while metrics are off they return at the first line, so a
server without metrics pays one global read per event.

Label values are bounded by construction: tool and prompt names and resource
URIs (or templates) come from the served manifest only, a name a client made
up is counted as `_unknown` (runner/observe/calls.py); every other label is
one of a fixed set of words.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Seconds: tool calls range from microseconds (an in-process function) to minutes (a slow API).
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RELOAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
AUTH_REASONS = ("missing", "invalid", "expired", "audience", "issuer", "scope", "keys_unavailable")


class _Sessions(Collector):
    """Open MCP sessions, read at scrape time from the live session table (nothing to keep in step)."""

    def __init__(self) -> None:
        self.table: Container[str] | None = None

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("mcp_runner_sessions", "Open handshake-era MCP sessions")
        table = self.table
        family.add_metric([], float(len(table)) if isinstance(table, dict) else 0.0)
        yield family


@dataclass
class Metrics:
    """Every series the runner exports, in one registry."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        self.calls = Counter(
            "mcp_runner_calls", "Tool calls, resource reads and prompt gets", ["kind", "name", "outcome"], registry=r
        )
        self.call_seconds = Histogram(
            "mcp_runner_call_duration_seconds",
            "Time to answer a tool call, resource read or prompt get",
            ["kind", "name"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.auth_rejections = Counter(
            "mcp_runner_auth_rejections", "Requests refused by the bearer gate, by reason", ["reason"], registry=r
        )
        for reason in AUTH_REASONS:  # present at 0 from the start, so a rate() sees the first one
            self.auth_rejections.labels(reason)
        self.listen_streams = Gauge(
            "mcp_runner_listen_streams", "Open subscriptions/listen streams (2026-07-28 clients)", registry=r
        )
        self.reloads = Counter("mcp_runner_reloads", "Reloads, by result", ["result"], registry=r)
        for result in ("ok", "failed"):
            self.reloads.labels(result)
        self.reload_seconds = Histogram(
            "mcp_runner_reload_duration_seconds", "Time a reload took", ["result"], buckets=RELOAD_BUCKETS, registry=r
        )
        self.jwks_fetches = Counter("mcp_runner_jwks_fetches", "Key set fetches, by result", ["result"], registry=r)
        for result in ("ok", "failed"):
            self.jwks_fetches.labels(result)
        self.manifest = Info("mcp_runner_manifest", "The manifest being served", registry=r)
        self.sessions = _Sessions()
        r.register(self.sessions)


active: Metrics | None = None  # set by `enable`, once, at start-up


def enable() -> Metrics:
    global active
    if active is None:
        disable_created_metrics()  # `_created` series double every counter for little use
        active = Metrics()
    return active


def call(kind: str, name: str, outcome: str, seconds: float) -> None:
    if (m := active) is not None:
        m.calls.labels(kind, name, outcome).inc()
        m.call_seconds.labels(kind, name).observe(seconds)


def auth_rejected(reason: str) -> None:
    if (m := active) is not None:
        m.auth_rejections.labels(reason if reason in AUTH_REASONS else "invalid").inc()


def listen_streams(delta: int) -> None:
    if (m := active) is not None:
        m.listen_streams.inc(delta)


def reloaded(ok: bool, seconds: float) -> None:
    if (m := active) is not None:
        result = "ok" if ok else "failed"
        m.reloads.labels(result).inc()
        m.reload_seconds.labels(result).observe(seconds)


def jwks_fetched(ok: bool) -> None:
    if (m := active) is not None:
        m.jwks_fetches.labels("ok" if ok else "failed").inc()


def manifest(path: str, sha256: str, name: str) -> None:
    if (m := active) is not None:
        m.manifest.info({"path": path, "sha256": sha256, "name": name})


def watch_sessions(table: Container[str]) -> None:
    """The session manager's live table, counted at each scrape."""
    if (m := active) is not None:
        m.sessions.table = table
