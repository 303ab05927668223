"""Envoy's resident memory with many open streams, and its growth with stream length.

Streams go through Envoy to bench/hold_mock.py, which sends the opening events
and a few deltas and then holds each stream open. RSS (VmRSS) is read while
every stream is open and has delivered its batch to the client, so nothing is
waiting in a buffer that the client has not read.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from dataclasses import dataclass, field

from servers import Proc, memory_kib

CONNECT_AT_ONCE = 100  # below any listen backlog
GROWTH_BATCH = 1000    # deltas released per step of the stream-length test


@dataclass
class MemoryResult:
    """Snapshots from servers.memory_kib: {"rss", "heap", "wasm", "used"} in KiB."""
    streams: int
    idle: dict
    open: dict
    short: dict = field(default_factory=dict)   # growth test: K streams after their first deltas
    long: dict = field(default_factory=dict)    # the same K streams after `growth_events` more each
    growth_streams: int = 0
    growth_events: int = 0
    sample: str = ""                            # the start of one stream as the client saw it

    def delta_kib(self, kind: str) -> int:
        return self.open[kind] - self.idle[kind]

    def growth_kib_per_stream(self, kind: str) -> float:
        return (self.long[kind] - self.short[kind]) / self.growth_streams if self.growth_streams else 0.0


class Stream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.head = bytearray()   # the first bytes, kept as a sample
        self.carry = b""          # the last bytes read, so a mark split across reads is found

    async def read_until(self, mark: bytes, timeout: float) -> None:
        async def loop() -> None:
            while True:
                piece = await self.reader.read(262144)
                if not piece:
                    raise ConnectionError(f"stream closed before {mark!r}: {bytes(self.head)!r}")
                if len(self.head) < 2000:
                    self.head += piece[:2000 - len(self.head)]
                window = self.carry + piece
                if mark in window:
                    return
                self.carry = window[-len(mark):]
        await asyncio.wait_for(loop(), timeout)

    def close(self) -> None:
        self.writer.close()


def _mark(batch: int) -> bytes:
    # The mark delta's text, as it appears JSON-encoded in both Anthropic and OpenAI events.
    return f'MARK{batch} "'.encode()


async def _open(port: int, path: str, body: bytes, key: str, sem: asyncio.Semaphore, mark: bytes,
                timeout: float) -> Stream:
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                      f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
        await writer.drain()
    s = Stream(reader, writer)
    await s.read_until(mark, timeout)
    return s


def _more(hold_port: int, n: int) -> int:
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{hold_port}/__more?n={n}",
                                                       method="POST", data=b""), timeout=30) as r:
        return json.loads(r.read())["batch"]


def _current_batch(hold_port: int) -> int:
    """Start a new (empty) batch: streams opened from now on end their first deltas with its mark."""
    return _more(hold_port, 0)


async def measure(envoy: Proc, path: str, body: bytes, key: str, hold_port: int,
                  streams: int, growth_streams: int, growth_events: int, timeout: float = 120) -> MemoryResult:
    sem = asyncio.Semaphore(CONNECT_AT_ONCE)
    port = envoy.port

    async def open_many(n: int, batch: int) -> list[Stream]:
        return await asyncio.gather(*[_open(port, path, body, key, sem, _mark(batch), timeout) for _ in range(n)])

    async def close_all(group: list[Stream]) -> None:
        for s in group:
            s.close()
        await asyncio.sleep(1.0)

    # Warm-up: the first streams allocate what Envoy keeps anyway (pools, VM contexts).
    await close_all(await open_many(20, _current_batch(hold_port)))
    idle = memory_kib(envoy)
    opened = await open_many(streams, _current_batch(hold_port))
    await asyncio.sleep(0.5)
    res = MemoryResult(streams=streams, idle=idle, open=memory_kib(envoy),
                       sample=bytes(opened[0].head).decode("utf-8", "replace"))
    await close_all(opened)
    if growth_streams:
        group = await open_many(growth_streams, _current_batch(hold_port))
        await asyncio.sleep(0.5)
        res.short = memory_kib(envoy)
        # In batches, each read to its end before the next: the client keeps up, so
        # what Envoy buffers for a slow reader stays small next to what streams through.
        for sent in range(0, growth_events, GROWTH_BATCH):
            batch = _more(hold_port, min(GROWTH_BATCH, growth_events - sent))
            await asyncio.gather(*[s.read_until(_mark(batch), timeout) for s in group])
        await asyncio.sleep(0.5)
        res.long = memory_kib(envoy)
        res.growth_streams, res.growth_events = growth_streams, growth_events
        await close_all(group)
    return res
