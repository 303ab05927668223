"""Drive load and time answers: wrk runs (with Envoy CPU from /proc) and a
one-connection client that times the first byte and the end of each answer.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from servers import CLK_TCK, cpu_ticks

HERE = Path(__file__).resolve().parent


@dataclass
class Check:
    """What every answer must be: status and strings its body contains."""
    status: int
    marks: list[str]


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_us: float
    p90_us: float
    p99_us: float
    cpu_us_per_req: float
    envoy_cpu_share: float = 0.0   # Envoy CPU time / wall time: ~1.0 means Envoy was the bottleneck
    wrk_cpu_share: float = 0.0     # the same for wrk: near 1.0 the load generator limited the run
    errors: dict = field(default_factory=dict)
    first_bad: str = ""

    @property
    def valid(self) -> bool:
        return self.requests > 0 and not any(self.errors.values())


def run_wrk(url: str, body_file: Path, key: str, check: Check, envoy_pid: int, seconds: float,
            connections: int, cpu: int) -> WrkResult:
    """One wrk run (one thread, pinned) and the Envoy CPU it cost per completed request."""
    env = dict(os.environ, BENCH_BODY=str(body_file), BENCH_KEY=key, BENCH_STATUS=str(check.status),
               BENCH_MARKS="|".join(check.marks))
    cmd = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}", f"-d{max(seconds, 1):.0f}s",
           "--timeout", "10s", "--latency", "-s", str(HERE / "wrk.lua"), url]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = cpu_ticks(envoy_pid)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    t1 = cpu_ticks(envoy_pid)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    d = json.loads(line[len("BENCHJSON "):])
    n = d["requests"]
    secs = d["duration_us"] / 1e6
    errors = {k: d[k] for k in ("bad_status", "bad_body", "connect", "read", "write", "timeout")}
    # Answers wrk counted but the script did not see as right (e.g. cut off) are errors too.
    errors["unchecked"] = max(n - d["ok"] - d["bad_status"] - d["bad_body"], 0)
    cpu_us = (t1 - t0) / CLK_TCK * 1e6
    return WrkResult(requests=n, seconds=secs, rps=n / secs if secs else 0.0,
                     p50_us=d["p50_us"], p90_us=d["p90_us"], p99_us=d["p99_us"],
                     cpu_us_per_req=cpu_us / n if n else 0.0,
                     envoy_cpu_share=cpu_us / 1e6 / secs if secs else 0.0,
                     wrk_cpu_share=wrk_cpu_s / secs if secs else 0.0, errors=errors, first_bad=d["first_bad"])


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    first_byte_s: float   # request sent -> first byte of the body
    total_s: float        # request sent -> last byte of the body


class OneConnection:
    """HTTP/1.1 keep-alive client on one socket that timestamps the answer's
    first body byte and its end (Content-Length or chunked)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(30)

    def close(self) -> None:
        self.sock.close()

    def post(self, path: str, body: bytes, key: str, first_only: bool = False) -> Answer:
        """Send one request and read its answer; with `first_only`, stop at the
        first body byte (for a stream that stays open)."""
        req = (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
               f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        t0 = time.perf_counter()
        self.sock.sendall(req)
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            buf += self._recv()
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        body_buf = bytearray(rest)
        first = time.perf_counter() if body_buf else None
        while first_only and first is None:
            body_buf += self._recv()
            first = time.perf_counter()
        if first_only:
            return Answer(status, headers, bytes(body_buf), first - t0, first - t0)
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        length = int(headers.get("content-length", "0"))
        decoded = bytearray()
        pos = 0
        while True:
            if chunked:
                pos, done = _dechunk(body_buf, pos, decoded)
                if done:
                    break
            elif len(body_buf) >= length:
                decoded = body_buf[:length]
                break
            piece = self._recv()
            if first is None:
                first = time.perf_counter()
            body_buf += piece
        end = time.perf_counter()
        return Answer(status, headers, bytes(decoded), (first or end) - t0, end - t0)

    def _recv(self) -> bytes:
        piece = self.sock.recv(262144)
        if not piece:
            raise ConnectionError("connection closed mid-answer")
        return piece


def _dechunk(buf: bytearray, pos: int, out: bytearray) -> tuple[int, bool]:
    """Decode whole chunks from buf[pos:] into out; (new pos, saw the last chunk)."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return pos, False
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        if size == 0:
            return (pos, True) if buf.endswith(b"\r\n\r\n") and len(buf) >= eol + 4 else (pos, False)
        if len(buf) < eol + 2 + size + 2:
            return pos, False
        out += buf[eol + 2: eol + 2 + size]
        pos = eol + 2 + size + 2
