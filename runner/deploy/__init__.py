"""Running several replicas behind a load balancer: replica identity, sticky session ids, drain, nginx config.

See docs/deployment.md. Everything here works with stock parts: a Debian `nginx` routing on the
`Mcp-Session-Id` header (no Lua, no modules), and the SDK's own stateless mode.
"""
