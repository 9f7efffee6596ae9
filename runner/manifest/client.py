"""The manifest as the client commands read it: `list`, `call`, `read`, `prompt`, `token`, `install`.

They need what finds the server and authenticates to it: `name`, `signin`, the `server:` block's host,
port and path, the local issuer's key (in the manifest's folder), and the entries' names, prefixes and
scopes (to say which scope a hidden tool needs). They do not need the server's own credentials, which
an operator keeps out of the client's shell: an upstream's `headers`, `env`, `command` and `url`, an
API's `headers`, `spec` and `base_url`, the `server.bus` URL and `server.request_state_keys`.

Those parts are never built for a client command (runner/manifest/source.py), so their `${VAR}`s are
not substituted: the values are never read, so never printed or sent, and a variable that is not set
is no problem there. `serve` and `check` read the whole manifest: for them a missing variable stays a
located error. Where the schema requires a key the client leaves out (an upstream is either `command`
or `url`; an API has a `spec`), a stand-in keeps the entry's shape, and with it the rest of validation.
"""

from __future__ import annotations

from typing import Any

from runner.manifest.source import OMIT, Path

# Section -> key of an entry -> its stand-in (OMIT: left out; a callable: a fresh stand-in each time).
_ENTRIES: dict[str, dict[str, Any]] = {
    "upstreams": {
        "headers": OMIT,
        "env": OMIT,
        "command": lambda: ["withheld"],
        "url": lambda: "http://withheld.invalid/",
    },
    "openapi": {"headers": OMIT, "base_url": OMIT, "spec": dict},
}
_SERVER = ("bus", "request_state_keys")  # the `server:` block's secrets; its host, port and path are read


def withheld(path: Path) -> Any:
    """What stands in, for a client command, for the value at `path` (None: it is read as usual)."""
    if len(path) == 2 and path[0] == "server" and path[1] in _SERVER:
        return OMIT
    if len(path) == 3 and isinstance(path[0], str) and isinstance(path[1], int) and isinstance(path[2], str):
        stand_in = _ENTRIES.get(path[0], {}).get(path[2])
        return stand_in() if callable(stand_in) else stand_in
    return None
