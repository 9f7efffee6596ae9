"""A real `redis-server` (Debian package `redis-server`) on a free loopback port, stopped by PID."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field

from tests.helpers import debian_binary, free_port, stop_process, wait_for_port

BINARY = "/usr/bin/redis-server"


def redis_binary() -> str:
    return debian_binary("redis-server", BINARY, "redis-server")


@dataclass
class RedisServer:
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    config: str = ""  # redis.conf lines (users, limits), written to a file the server is started with

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        conf: list[str] = []
        if self.config:
            with tempfile.NamedTemporaryFile("w", prefix="redis-", suffix=".conf", delete=False) as file:
                file.write(self.config)
            conf = [file.name]
        self.proc = subprocess.Popen(
            [redis_binary(), *conf, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            wait_for_port(self.port, proc=self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, timeout=10)
        self.proc = None
