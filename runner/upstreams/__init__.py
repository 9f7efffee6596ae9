"""Other MCP servers mounted next to the manifest's own entries (`upstreams:`, docs/upstreams.md).

One `Upstreams` per process (pool.py) holds a connection per upstream (connection.py), opened once
and reused for every call; the served names, scopes and overrides come from the manifest's entries
(served.py), so a reload changes what is served without touching a connection that did not change.
"""
# Nothing imported here: `python -m runner.upstreams.orphan`, which starts every stdio upstream, loads this first.
