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

from collections.abc import Container, Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.observe.series import Metrics

# The series live in runner/observe/series.py, imported by `enable`: a server without metrics
# never loads prometheus_client (~20 ms of start-up; tests/test_engine.py).

# Seconds: tool calls range from microseconds (an in-process function) to minutes (a slow API).
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RELOAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
AUTH_REASONS = ("missing", "invalid", "expired", "audience", "issuer", "scope", "keys_unavailable")


active: Metrics | None = None  # set by `enable`, once, at start-up


def enable() -> Metrics:
    global active
    if active is None:
        from prometheus_client import disable_created_metrics

        from runner.observe.series import Metrics

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


# The call series' label names, and which catalog of the served view each kind's names come from.
_CALL_LABELS = {"calls": ("kind", "name", "outcome"), "call_seconds": ("kind", "name")}
_CATALOGS = {"tool": "tools", "resource": "resources", "prompt": "prompts"}


def served(view: Mapping[str, Iterable[str]]) -> None:
    """After a good reload: remove the call series of names the manifest no longer serves.

    `view` holds the served names by catalog (tools, resources with templates, prompts), as the
    reloader's snapshot does. A removed name would otherwise keep its last values until a restart.
    A name served again starts from zero, which Prometheus's rate() reads as a counter reset.
    """
    if (m := active) is None:
        return
    keep = {kind: set(view.get(catalog, ())) for kind, catalog in _CATALOGS.items()}
    for attribute, names in _CALL_LABELS.items():
        metric = getattr(m, attribute)
        stale: set[tuple[str, ...]] = set()
        for family in metric.collect():
            for sample in family.samples:
                kind, name = sample.labels.get("kind"), sample.labels.get("name")
                if kind in keep and name != "_unknown" and name not in keep[kind]:
                    stale.add(tuple(sample.labels[label] for label in names))
        for labels in stale:
            try:
                metric.remove(*labels)
            except KeyError:  # already gone (a scrape's view and a removal raced): nothing to do
                pass


def watch_sessions(table: Container[str]) -> None:
    """The session manager's live table, counted at each scrape."""
    if (m := active) is not None:
        m.sessions.table = table
