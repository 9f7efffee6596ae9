"""Observability: Prometheus metrics, OpenTelemetry spans, JSON and audit logs (docs/observability.md)."""
