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


class KeysUnavailable(Exception):
    """No key set to check a token against: the issuer could not be reached (or answered nonsense).

    The fault is the server's, not the token's: the gate answers 503 with Retry-After, never 401
    (which tells a client to throw its token away) and never lets the request through (fail closed).
    Raised by runner/auth/jwks.py; defined here so that the gate, which every server loads, catches
    it without loading a JWT library.
    """

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
