"""Observability: Prometheus metrics, OpenTelemetry spans, JSON and audit logs (README "Observability")."""
