"""Real redis-server and webdis on loopback for the fleet-counter tests (issue 7).

`RedisFleet` starts redis-server (AOF on, so a stop/start keeps the totals as a real outage
would) and webdis in front of it; `stop_redis()` / `start_redis()` make an outage; `hgetall()`
and `keys()` read Redis directly with redis-cli, the way an operator would check.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port

TOOLS = ("redis-server", "redis-cli", "webdis")


def require_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: the fleet tests run real Redis and webdis. "
                    "Install the Debian packages: apt-get install -y redis-server webdis "
                    "(`.ci/run` and `make e2e` do it when run as root)", pytrace=False)


class RedisFleet:
    def __init__(self, workdir: Path) -> None:
        require_tools()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.redis_port = free_port()
        self.webdis_port = free_port()
        self.redis: subprocess.Popen | None = None
        self.webdis: subprocess.Popen | None = None
        self.start_redis()
        cfg = {"redis_host": "127.0.0.1", "redis_port": self.redis_port, "http_host": "127.0.0.1",
               "http_port": self.webdis_port, "threads": 2, "daemonize": False, "database": 0,
               "verbosity": 1, "logfile": str(self.dir / "webdis.log"),
               # as k8s/redis/ deploys it: the gateway needs EVAL only (PING for health)
               "acl": [{"disabled": ["*"]}, {"enabled": ["EVAL", "PING"]}]}
        (self.dir / "webdis.json").write_text(json.dumps(cfg))
        self.webdis = subprocess.Popen(["webdis", str(self.dir / "webdis.json")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait(lambda: self.webdis_get("PING") == {"PING": [True, "PONG"]}, "webdis")

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir),
             "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait(lambda: self.cli("PING") == "PONG", "redis-server")

    def stop_redis(self) -> None:
        """Shut Redis down (its AOF keeps the data, as a restarted Redis would have it)."""
        if self.redis and self.redis.poll() is None:
            subprocess.run(["redis-cli", "-p", str(self.redis_port), "SHUTDOWN"], capture_output=True,
                           timeout=10)
            self.redis.wait(timeout=10)

    def _wait(self, ok, what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ok():
                    return
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
            time.sleep(0.05)
        pytest.fail(f"{what} did not start", pytrace=False)

    def webdis_get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.webdis_port}/{path}", timeout=3) as r:
            return json.loads(r.read())

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port), *args], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip()

    def keys(self, pattern: str) -> list[str]:
        return sorted(k for k in self.cli("--scan", "--pattern", pattern).splitlines() if k)

    def hgetall(self, key: str) -> dict[str, int]:
        lines = self.cli("HGETALL", key).splitlines()
        return {lines[i]: int(float(lines[i + 1])) for i in range(0, len(lines) - 1, 2)}

    def used(self, key: str) -> int:
        return self.hgetall(key).get("u", 0)

    def close(self) -> None:
        for p in (self.webdis,):
            if p and p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
        self.stop_redis()


def wait_for(cond, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")
