"""The verifier's cost per request, cold (a token seen for the first time) and cached, next to the seed's verifier.

The seed verifier is the reference integration's logic (`mcp-signin-python.txt`): PyJWKClient,
key looked up by app id, jwt.decode. Its tokens here carry kid == app id so that its key lookup
works at all. A second measurement shows what each verifier's key fetch does to the event loop:
a ticker task counts how late it wakes while a verification fetches from a JWKS that takes 0.5 s.

    python bench/verifier.py [--tokens 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from runner.auth.verifier import JWKSTokenVerifier  # noqa: E402
from tests.helpers import Issuer, JWKSServer, Key  # noqa: E402

RESOURCE = "http://127.0.0.1:8000/mcp"


class SeedVerifier:
    """The reference integration's verify_token, minus its logging (it only reads what it decodes)."""

    def __init__(self, app_id: str, base_url: str) -> None:
        self.app_id = app_id
        self.base_url = base_url
        self.jwks_client = jwt.PyJWKClient(f"{base_url}/apps/{app_id}/discovery/v2.0/keys")

    async def verify_token(self, token: str) -> Any:
        key = self.jwks_client.get_signing_key(self.app_id)  # blocking I/O on a cache miss, outside the try
        try:
            payload = jwt.decode(token, key.key, algorithms=["RS256"], issuer=self.base_url, audience=RESOURCE)
            if payload.get("token_type") != "access":
                return None
            return payload
        except Exception:
            return None


async def per_call_us(verify: Any, tokens: list[str]) -> float:
    started = time.perf_counter()
    for token in tokens:
        assert await verify(token) is not None
    return (time.perf_counter() - started) / len(tokens) * 1e6


async def loop_stall_ms(verify: Any, token: str) -> float:
    """How late a 10 ms ticker wakes, worst case, while `verify` fetches keys from a slow JWKS."""
    worst = 0.0

    async def ticker(stop: anyio.Event) -> None:
        nonlocal worst
        while not stop.is_set():
            before = time.perf_counter()
            await anyio.sleep(0.01)
            worst = max(worst, (time.perf_counter() - before - 0.01) * 1000)

    stop = anyio.Event()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ticker, stop)
        await anyio.sleep(0.05)
        await verify(token)
        stop.set()
    return worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    app_id = "bench-app"
    jwks = JWKSServer(app_id=app_id, keys=[Key.new(app_id)]).start()
    try:
        issuer = Issuer(jwks.base_url, RESOURCE, jwks.keys[0])
        ours = JWKSTokenVerifier.for_signin(app_id, RESOURCE, jwks.base_url)
        seed = SeedVerifier(app_id, jwks.base_url)
        anyio.run(ours.verify_token, issuer.token())  # both fetch their key set once before timing
        anyio.run(seed.verify_token, issuer.token())
        results: dict[str, list[float]] = {"ours, cold": [], "ours, cached": [], "seed": []}
        for _ in range(args.rounds):
            fresh = [issuer.token() for _ in range(args.tokens)]
            results["ours, cold"].append(anyio.run(per_call_us, ours.verify_token, fresh))
            results["ours, cached"].append(anyio.run(per_call_us, ours.verify_token, fresh))  # the same tokens again
            fresh = [issuer.token() for _ in range(args.tokens)]
            results["seed"].append(anyio.run(per_call_us, seed.verify_token, fresh))
        print(f"verify_token cost per call ({args.tokens} tokens x {args.rounds} rounds, median of rounds)")
        for name, values in results.items():
            print(f"  {name:<13} {statistics.median(values):8.1f} us")
        seed_us = statistics.median(results["seed"])
        print(
            f"ratio ours cold / seed: {statistics.median(results['ours, cold']) / seed_us:.2f}; "
            f"ours cached / seed: {statistics.median(results['ours, cached']) / seed_us:.3f}"
        )

        jwks.delay = 0.5
        fresh_ours = JWKSTokenVerifier.for_signin(app_id, RESOURCE, jwks.base_url)
        fresh_seed = SeedVerifier(app_id, jwks.base_url)
        ours_stall = anyio.run(loop_stall_ms, fresh_ours.verify_token, issuer.token())
        seed_stall = anyio.run(loop_stall_ms, fresh_seed.verify_token, issuer.token())
        print("event loop stall while fetching keys from a JWKS that answers in 0.5 s (worst ticker delay)")
        print(f"  ours {ours_stall:7.1f} ms   seed {seed_stall:7.1f} ms")
    finally:
        jwks.stop()


if __name__ == "__main__":
    main()
