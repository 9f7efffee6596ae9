"""The Prometheus series the runner exports, in its own registry (see runner/observe/metrics.py).

Imported only by `metrics.enable()`, so that prometheus_client is loaded only by a
server that serves metrics.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runner.observe.metrics import AUTH_REASONS, CALL_BUCKETS, RELOAD_BUCKETS


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
