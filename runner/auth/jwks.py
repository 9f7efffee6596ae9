"""An asynchronous, cached JWKS key set.

Why not `jwt.PyJWKClient`: it fetches with blocking urllib, which would stall
every request on the event loop while the issuer is slow. Here the fetch is
async with a hard deadline and a size cap, concurrent misses share one fetch,
an unknown `kid` refetches at most once per `min_refetch_interval`, and a
failed refresh keeps the last good keys for `max_stale` seconds.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import jwt

logger = logging.getLogger("runner.auth.jwks")

# Built once at import: a new TLS context per fetch costs ~15 ms of blocked event loop.
_TLS = ssl.create_default_context()


class JWKSError(Exception):
    """The key set could not be fetched or used; the message is safe to log."""


@dataclass
class JWKSCache:
    url: str
    ttl: float = 300.0
    fetch_timeout: float = 5.0
    max_bytes: int = 256 * 1024
    min_refetch_interval: float = 2.0
    max_stale: float = 3600.0

    _keys: dict[str, Any] = field(default_factory=dict, init=False)
    _fetched_at: float = field(default=float("-inf"), init=False)  # last success
    _attempted_at: float = field(default=float("-inf"), init=False)  # last try, success or not
    _lock: anyio.Lock = field(default_factory=anyio.Lock, init=False)
    _refresher_running: bool = field(default=False, init=False)

    async def key(self, kid: str) -> Any:
        """The public key for `kid`, refreshing the set when stale or when `kid` is new.

        A known kid never waits on the network while the background refresher runs
        (stale-while-revalidate); only a request naming a new kid waits for a refetch.
        """
        age = time.monotonic() - self._fetched_at
        if kid in self._keys and (age < self.ttl or (self._refresher_running and age < self.ttl + self.max_stale)):
            return self._keys[kid]  # the hot path: no lock, no I/O
        async with self._lock:
            now = time.monotonic()
            stale = now - self._fetched_at >= self.ttl
            unknown = kid not in self._keys
            # Rate-limit refetches so a stream of made-up kids cannot make us hammer the issuer;
            # with no key at all (cold start, outage) retry sooner, since every request fails meanwhile.
            interval = self.min_refetch_interval if self._keys else min(1.0, self.min_refetch_interval)
            if (stale or unknown) and now - self._attempted_at >= interval:
                await self._refresh()
        if kid in self._keys and time.monotonic() - self._fetched_at < self.ttl + self.max_stale:
            return self._keys[kid]
        if not self._keys:
            raise JWKSError(f"no signing keys available from {self.url}")
        raise JWKSError(f"unknown key id {kid[:64]!r}")

    async def keep_fresh(self) -> None:
        """Refresh ahead of expiry, forever (run it as a background task); failures retry sooner."""
        self._refresher_running = True
        try:
            while True:
                if self._fetched_at == float("-inf"):
                    due = self._attempted_at + min(1.0, self.min_refetch_interval)
                elif self._attempted_at > self._fetched_at:  # the last try failed
                    due = self._attempted_at + self.min_refetch_interval
                else:
                    due = self._fetched_at + self.ttl * 0.8
                await anyio.sleep(max(0.0, due - time.monotonic()))
                async with self._lock:
                    if time.monotonic() >= due:
                        await self._refresh()
        finally:
            self._refresher_running = False

    async def warm(self) -> None:
        """Fetch once at start-up; a failure is logged, never fatal (the issuer may come back)."""
        async with self._lock:
            try:
                await self._refresh(raise_errors=True)
            except JWKSError as exc:
                logger.warning("JWKS not reachable at start-up (%s); requests get 401 until it is", exc)

    async def run(self) -> None:
        """Warm the cache, then keep it fresh: the background task the server runs."""
        await self.warm()
        await self.keep_fresh()

    async def _refresh(self, raise_errors: bool = False) -> None:
        self._attempted_at = time.monotonic()
        try:
            try:
                keys = _parse(await self._fetch())
            except JWKSError:
                raise
            except Exception as exc:  # whatever the issuer sends, a refresh fails; it never crashes the server
                raise JWKSError(f"unusable answer from {self.url}: {type(exc).__name__}: {exc}") from None
        except JWKSError as exc:
            if raise_errors:
                raise
            logger.warning("JWKS refresh failed, keeping %d cached key(s): %s", len(self._keys), exc)
            return
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def _fetch(self) -> bytes:
        try:
            with anyio.fail_after(self.fetch_timeout):
                async with httpx2.AsyncClient(
                    timeout=self.fetch_timeout, follow_redirects=False, verify=_TLS
                ) as client:
                    async with client.stream("GET", self.url, headers={"Accept": "application/json"}) as response:
                        if response.status_code != 200:
                            raise JWKSError(f"GET {self.url} answered HTTP {response.status_code}")
                        body = bytearray()
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > self.max_bytes:
                                raise JWKSError(f"GET {self.url} returned more than {self.max_bytes} bytes")
                        return bytes(body)
        except TimeoutError:
            raise JWKSError(f"GET {self.url} took longer than {self.fetch_timeout:g}s") from None
        except httpx2.HTTPError as exc:
            raise JWKSError(f"GET {self.url} failed: {type(exc).__name__}: {exc}") from None


def _parse(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise JWKSError(f"the JWKS is not JSON: {type(exc).__name__}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JWKSError('the JWKS has no "keys" list')
    keys: dict[str, Any] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        # Only RSA signing keys meant for RS256: never let a JWK pick the algorithm.
        if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
            continue
        try:
            keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="RS256").key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            logger.warning("skipping an unusable JWK with kid %r", jwk["kid"][:64])
    if not keys:
        raise JWKSError("the JWKS holds no usable RS256 signing key")
    return keys
