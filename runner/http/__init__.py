"""The HTTP edge: what every request meets before the MCP endpoint (host rule, limits, session caps, log redaction)."""
