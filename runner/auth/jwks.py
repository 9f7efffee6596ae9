"""An asynchronous, cached JWKS key set.

Why not `jwt.PyJWKClient`: it fetches with blocking urllib, which would stall
every request on the event loop while the issuer is slow. Here the fetch is
async with a hard deadline and a size cap, concurrent misses share one fetch
(a request that arrives while a fetch is in flight waits for that fetch and
never starts another, so its wait is at most one fetch deadline),
an unknown `kid` refetches at most once per `min_refetch_interval`, a failed
refresh keeps the last good keys for `max_stale` seconds, and the issuer's
`Cache-Control: max-age` sets how often the set is fetched again.

Waiting is bounded too, because a waiting request holds its connection as "serving" (never evicted):
while the issuer hung, requests naming made-up kids (no valid signature needed) each waited on the
shared fetch and, repeated on keep-alive sockets, held every connection slot, so clients with a
known kid were locked out (issue 22). So a request joins a fetch in flight only while the issuer's
last fetch succeeded and fewer than `max_waiting` requests wait on it already; otherwise it is
answered at once from the keys it has (503 with Retry-After for a kid it does not know).
"""

from __future__ import annotations

import logging
import math
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2

from runner.auth.defaults import KeysUnavailable
from runner.auth.keyset import KeySet, KeySetError, parse
from runner.observe import metrics
from runner.words import plural

__all__ = ["JWKSCache", "JWKSError", "KeysUnavailable", "UnknownKey", "refresh_interval", "waiting_bound"]

logger = logging.getLogger("runner.auth.jwks")

# One TLS context for every fetch: a new one per fetch costs ~15 ms of blocked event loop. Built on the
# first fetch, in a worker thread, not at import: a server without auth never pays for it (issue 12).
_TLS: ssl.SSLContext | None = None


async def _tls() -> ssl.SSLContext:
    global _TLS
    if _TLS is None:
        _TLS = await anyio.to_thread.run_sync(ssl.create_default_context)
    return _TLS


# The background refresher fetches at this fraction of the interval, so a known kid never waits on the network.
REFRESH_AHEAD = 0.8
# Of the connection limit: requests that may wait on one key fetch at once (each holds a connection meanwhile).
WAITING_SHARE = 0.1
_MAX_AGE = re.compile(r'max-age\s*=\s*"?(\d{1,10})"?', re.ASCII)
_SECONDS = re.compile(r"\d{1,10}", re.ASCII)


def waiting_bound(max_connections: int) -> int:
    """Requests that may wait on a key fetch at once, on a server of `max_connections`: a tenth, at least one."""
    return max(1, int(max_connections * WAITING_SHARE))


class JWKSError(Exception):
    """The key set could not be fetched or used; the message is safe to log."""


class UnknownKey(JWKSError):
    """The key set was fetched, but holds no usable key for the token's kid."""


def refresh_interval(cache_control: str | None, age: str | None, default: float, lo: float, hi: float) -> float:
    """Seconds until the key set should be fetched again, from the response's caching headers.

    `max-age` less `Age` (the time a shared cache already held the answer), clamped to
    [lo, hi]; `no-cache`/`no-store` mean the floor; no usable directive means `default`.
    """
    if not cache_control:
        return default
    directives = [d.strip().lower() for d in cache_control.split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return lo
    for directive in directives:
        match = _MAX_AGE.fullmatch(directive)
        if match:
            held = int(age) if age is not None and _SECONDS.fullmatch(age.strip()) else 0
            return min(hi, max(lo, float(int(match.group(1)) - held)))
    return default


@dataclass
class JWKSCache:
    """The key set of one URL, refreshed as often as the issuer's `Cache-Control: max-age` says, within bounds.

    `ttl` is the refresh interval when the issuer sends no max-age; a max-age (less any
    `Age`), `no-cache` or `no-store` is clamped to [`min_ttl`, `max_ttl`]: the floor
    stops an issuer from making every request a fetch, the ceiling bounds how long a
    withdrawn key keeps working. The set fetched last is authoritative: a kid missing
    from it is gone at once, however recently it verified a token.
    """

    url: str
    ttl: float = 300.0
    min_ttl: float = 60.0
    max_ttl: float = 3600.0
    fetch_timeout: float = 5.0
    max_bytes: int = 256 * 1024
    min_refetch_interval: float = 2.0
    max_stale: float = 3600.0
    max_waiting: int = 100  # requests waiting on one fetch at once (the server sets `waiting_bound`)

    _keys: dict[str, Any] = field(default_factory=dict, init=False)
    _prints: dict[str, tuple[str, str]] = field(default_factory=dict, init=False)
    _refused: dict[str, str] = field(default_factory=dict, init=False)
    _interval: float = field(default=0.0, init=False)  # the refresh interval the last fetch set
    _fetched_at: float = field(default=float("-inf"), init=False)  # last success
    _attempted_at: float = field(default=float("-inf"), init=False)  # last try, success or not
    _flight: anyio.Event | None = field(default=None, init=False)  # set when the fetch in flight ends
    _refresher_running: bool = field(default=False, init=False)
    _failures: int = field(default=0, init=False)  # failed fetches in a row, for a log that does not flood
    _failing_since: float = field(default=0.0, init=False)
    _waiting: int = field(default=0, init=False)  # requests waiting on the fetch in flight

    def __post_init__(self) -> None:
        self._interval = self.ttl

    @property
    def refresh_interval(self) -> float:
        """Seconds a fetched key set is used before it is fetched again (from the last fetch's headers)."""
        return self._interval

    def current(self, kid: str) -> Any | None:
        """The key for `kid` if the cached set has it and is still usable; never any I/O.

        Usable: younger than the refresh interval, or, while the background refresher
        runs, stale by at most `max_stale` (the issuer is down; keep serving). The
        verifier calls this on every cached-token hit, and compares the key object:
        a kid withdrawn or re-keyed by the last fetch ends its cached verifications.
        """
        key = self._keys.get(kid)
        if key is None:
            return None
        age = time.monotonic() - self._fetched_at
        if age < self._interval or (self._refresher_running and age < self._interval + self.max_stale):
            return key
        return None

    async def key(self, kid: str) -> Any:
        """The public key for `kid`, refreshing the set when stale or when `kid` is new.

        A known kid never waits on the network while the background refresher runs
        (stale-while-revalidate); only a request naming a new kid waits for a refetch, and only
        while the issuer answered its last fetch and fewer than `max_waiting` requests wait already.
        """
        key = self.current(kid)
        if key is not None:
            return key  # the hot path: no I/O
        if self._flight is not None:
            # Join the fetch in flight, whatever it finds: never a second one after it. Unless the issuer failed
            # its last fetch (this one will most likely fail too: the background refresher keeps trying) or
            # enough requests wait already: then answer now from what is known, and keep the connection free.
            if not self._failures and self._waiting < self.max_waiting:
                self._waiting += 1
                try:
                    await self._flight.wait()
                finally:
                    self._waiting -= 1
        else:
            now = time.monotonic()
            stale = now - self._fetched_at >= self._interval
            unknown = kid not in self._keys
            # Rate-limit refetches so a stream of made-up kids cannot make us hammer the issuer;
            # with no key at all (cold start, outage) retry sooner, since every request fails meanwhile.
            interval = self.min_refetch_interval if self._keys else min(1.0, self.min_refetch_interval)
            if (stale or unknown) and now - self._attempted_at >= interval:
                await self._shared_refresh()
        usable = time.monotonic() - self._fetched_at < self._interval + self.max_stale
        if kid in self._keys and usable:
            return self._keys[kid]
        if kid in self._refused and usable:
            raise UnknownKey(f"kid {kid[:64]!r} is refused: {self._refused[kid]}")
        if not usable or self._attempted_at > self._fetched_at:  # no set to trust, or the fetch for this kid failed
            raise KeysUnavailable(
                f"no usable key set from {self.url}: {plural(self._failures, 'failed fetch')} in a row",
                retry_after=max(1, math.ceil(self.min_refetch_interval)),
            )
        if not self._keys:
            raise JWKSError(f"no signing keys available from {self.url}")
        raise UnknownKey(f"kid {kid[:64]!r} is not in the key set at {self.url}")

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
                    due = self._fetched_at + self._interval * REFRESH_AHEAD
                await anyio.sleep(max(0.0, due - time.monotonic()))
                if self._flight is not None:
                    await self._flight.wait()  # a request's fetch is under way: the next `due` counts from it
                elif time.monotonic() >= due:
                    await self._shared_refresh()
        finally:
            self._refresher_running = False

    def seed(self, body: bytes) -> None:
        """Start from this key set as if it had just been fetched. For the local issuer's own set
        (runner/build/server.py), which the server would otherwise fetch from itself over HTTP when the first
        token arrives: 70-90 ms of CPU before that first answer. An unusable body seeds nothing."""
        try:
            found = parse(body)
        except KeySetError:
            return
        self._install(found)
        self._interval = self.ttl
        self._fetched_at = self._attempted_at = time.monotonic()

    async def warm(self) -> None:
        """Fetch once at start-up; a failure is logged, never fatal (the issuer may come back)."""
        if self._flight is not None:
            await self._flight.wait()
        if time.monotonic() - self._fetched_at < self._interval:
            return  # seeded and fresh: `keep_fresh` refetches it when due
        try:
            await self._shared_refresh(raise_errors=True)
        except JWKSError as exc:
            logger.warning("JWKS not reachable at start-up (%s); requests get 503 until it is", exc)

    async def run(self) -> None:
        """Warm the cache, then keep it fresh: the background task the server runs."""
        await self.warm()
        await self.keep_fresh()

    async def _shared_refresh(self, raise_errors: bool = False) -> None:
        """Fetch now, as the one fetch in flight: whoever asks meanwhile waits on `_flight` instead of fetching.

        Shielded: the request that happened to start the fetch may be cancelled (its client went away)
        while others wait on it; the fetch still ends within its own deadline (`fetch_timeout`).
        The caller has checked that no fetch is in flight, with no await since.
        """
        flight = self._flight = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                await self._refresh(raise_errors)
        finally:
            self._flight = None
            flight.set()

    async def _refresh(self, raise_errors: bool = False) -> None:
        self._attempted_at = time.monotonic()
        try:
            try:
                body, headers = await self._fetch()
                found = parse(body)
            except KeySetError as exc:
                raise JWKSError(f"unusable answer from {self.url}: {exc}") from None
            except JWKSError:
                raise
            except Exception as exc:  # whatever the issuer sends, a refresh fails; it never crashes the server
                raise JWKSError(f"unusable answer from {self.url}: {type(exc).__name__}: {exc}") from None
        except JWKSError as exc:
            metrics.jwks_fetched(False)
            self._failures += 1
            if self._failures == 1:
                self._failing_since = self._attempted_at
            if raise_errors:
                raise
            self._report(exc)
            return
        metrics.jwks_fetched(True)
        if self._failures:
            logger.warning(
                "JWKS %s answers again, after %s over %.0f s",
                self.url,
                plural(self._failures, "failed fetch"),
                time.monotonic() - self._failing_since,
            )
            self._failures = 0
        self._install(found)
        self._interval = refresh_interval(
            headers.get("cache-control"), headers.get("age"), self.ttl, self.min_ttl, self.max_ttl
        )
        self._fetched_at = time.monotonic()

    def _report(self, exc: JWKSError) -> None:
        """Log a failed fetch on the 1st, 2nd, 4th, 8th... failure in a row: an outage of an hour, retried every
        second or two, is a dozen lines, not thousands, and each says how long it has lasted."""
        if self._failures & (self._failures - 1):  # not a power of two
            return
        kept = plural(len(self._keys), "cached key")
        if self._failures == 1:
            logger.warning("JWKS refresh failed, keeping %s: %s", kept, exc)
            return
        logger.warning(
            "JWKS refresh failed %d times in a row over %.0f s, keeping %s (next report at %d): %s",
            self._failures,
            time.monotonic() - self._failing_since,
            kept,
            self._failures * 2,
            exc,
        )

    def _install(self, found: KeySet) -> None:
        """Make `found` the key set; an unchanged key keeps its object, so its cached verifications stand."""
        for kid, reason in found.refused.items():
            if self._refused.get(kid) != reason:
                logger.warning("JWKS %s: refusing kid %r: %s", self.url, kid[:64], reason)
        gone = [kid for kid in self._keys if kid not in found.keys]
        if gone:
            logger.warning("JWKS %s: key(s) %s withdrawn; their tokens are refused from now on", self.url, gone)
        if not found.keys:
            logger.warning("JWKS %s holds no usable RS256 signing key: every token is refused", self.url)
        self._keys = {
            kid: self._keys[kid] if self._prints.get(kid) == fingerprint else found.keys[kid]
            for kid, fingerprint in found.prints.items()
        }
        self._prints = found.prints
        self._refused = found.refused

    async def _fetch(self) -> tuple[bytes, httpx2.Headers]:
        try:
            with anyio.fail_after(self.fetch_timeout):
                async with httpx2.AsyncClient(
                    timeout=self.fetch_timeout, follow_redirects=False, verify=await _tls()
                ) as client:
                    async with client.stream("GET", self.url, headers={"Accept": "application/json"}) as response:
                        if response.status_code != 200:
                            raise JWKSError(f"GET {self.url} answered HTTP {response.status_code}")
                        body = bytearray()
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > self.max_bytes:
                                raise JWKSError(f"GET {self.url} returned more than {self.max_bytes} bytes")
                        return bytes(body), response.headers
        except TimeoutError:
            raise JWKSError(f"GET {self.url} took longer than {self.fetch_timeout:g}s") from None
        except httpx2.HTTPError as exc:
            raise JWKSError(f"GET {self.url} failed: {type(exc).__name__}: {exc}") from None
