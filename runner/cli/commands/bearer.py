"""When the CLI's client sends its bearer token: at once, or only after the server asks for one.

A token is a secret: it goes only where it is needed. The CLI knows it is needed when the
manifest says its server requires sign-in (`signin:`) and the CLI talks to that very server
(found through its record or its `server:` block); then the token goes with the first request.
Everywhere else (a URL given as the target or with `--url`, or a manifest without `signin:`)
the CLI cannot know what the server needs, so a token from `--token` or `MCP_TOKEN` is held back
until the server answers 401 with a `Bearer` challenge (RFC 6750 §3), and then sent with that
request's retry and every later request of the command. A server that needs no token never
sees it.
"""

from __future__ import annotations

import re
from collections.abc import Generator

import httpx2

_BEARER = re.compile(r"(?:^|,)\s*bearer(?:\s|,|$)", re.IGNORECASE)


class Bearer(httpx2.Auth):
    """httpx auth flow: the Authorization header now (`upfront`), or from the first Bearer challenge on."""

    def __init__(self, token: str, upfront: bool) -> None:
        self._header = f"Bearer {token}"
        self.asked = upfront

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        if self.asked:
            request.headers["Authorization"] = self._header
            yield request
            return
        response = yield request
        if response.status_code == 401 and challenged(response):
            self.asked = True
            request.headers["Authorization"] = self._header
            yield request


def challenged(response: httpx2.Response) -> bool:
    """Does the 401 ask for a bearer token (`WWW-Authenticate: Bearer ...`)?"""
    return any(_BEARER.search(value) for value in response.headers.get_list("WWW-Authenticate"))
