"""Auth names the rest of the runner needs without loading a JWT library.

Why a module of its own: the manifest, the start-up block and the CLI name
these, and a server without auth must not import PyJWT for them (issue 12:
start-up cost). `verifier.py` and `local_issuer.py` re-export them.
"""

from __future__ import annotations

DEFAULT_BASE_URL = "https://mcpsignin.com"
DEFAULT_MAX_LIFETIME = 86_400  # seconds: the longest exp - iat accepted unless signin.max_token_lifetime says otherwise
STATE_DIR = ".mcp-runner"  # the local issuer's keys and the running servers' records, next to the manifest


def jwks_url(base_url: str, app_id: str) -> str:
    """MCP SignIn's key set layout."""
    return f"{base_url.rstrip('/')}/apps/{app_id}/discovery/v2.0/keys"
