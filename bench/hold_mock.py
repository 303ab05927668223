"""An Anthropic-speaking upstream that keeps its streams open, for the memory test.

nginx answers and closes; to measure what an open stream costs Envoy, each
stream here sends its headers, the stream's opening events and a few text
deltas, then waits. `POST /__more?n=N` makes every open stream send N more
deltas (the stream-length test); each batch ends with a delta whose text is
`MARK<k>` (k counts batches) so a client knows it has read the whole batch.
Streams end when the client or Envoy closes them, or the mock stops.

Run: python bench/hold_mock.py --port P [--first N]   (prints "ready" when listening)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fixtures  # noqa: E402

WORD = fixtures.text_delta("word ")


class Hold:
    def __init__(self, first: int):
        self.first = first
        self.batch = 0          # batches released so far (after the first)
        self.more = 0           # size of the latest released batch
        self.changed = asyncio.Condition()
        self.open = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: Envoy reuses upstream connections
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                length = 0
                for ln in lines[1:]:
                    name, _, value = ln.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                if target.startswith("/__more"):
                    n = int(target.partition("n=")[2] or "0")
                    async with self.changed:
                        self.batch += 1
                        self.more = n
                        self.changed.notify_all()
                    body = f'{{"batch":{self.batch},"open":{self.open}}}'.encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(body), body))
                    await writer.drain()
                    continue
                if method == "POST" and target.endswith("/v1/messages"):
                    await self.stream(reader, writer)
                    return
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Headers, the opening events and `first` deltas, then each released batch,
        until the peer closes (Envoy closes the upstream when its client goes)."""
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
        self.open += 1
        try:
            seen = self.batch
            self._chunk(writer, fixtures.stream_head() + self._deltas(self.first, seen))
            await writer.drain()
            closed = asyncio.ensure_future(reader.read())  # b"" at EOF
            try:
                await self._serve(writer, closed, seen)
            finally:
                closed.cancel()
        finally:
            self.open -= 1

    async def _serve(self, writer: asyncio.StreamWriter, closed: asyncio.Future, seen: int) -> None:
        """Send each released batch until the peer closes."""
        while True:
            released = asyncio.ensure_future(self._released(seen))
            await asyncio.wait([closed, released], return_when=asyncio.FIRST_COMPLETED)
            if not released.done():
                released.cancel()
                return
            seen, n = released.result()
            # Batches of 100 deltas per chunk: many events per read, as a fast provider sends.
            for start in range(0, n, 100):  # n == 0: a new mark for new streams only
                count = min(100, n - start)
                last = start + count >= n
                self._chunk(writer, self._deltas(count, seen) if last else WORD * count)
                await writer.drain()

    async def _released(self, seen: int) -> tuple[int, int]:
        async with self.changed:
            await self.changed.wait_for(lambda: self.batch > seen)
            return self.batch, self.more

    @staticmethod
    def _deltas(n: int, batch: int) -> bytes:
        """n deltas, the last one carrying the batch mark."""
        body = WORD * max(n - 1, 0)
        return body + fixtures.text_delta(f"MARK{batch} ")

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--first", type=int, default=3, help="text deltas sent before a stream waits")
    args = ap.parse_args()
    hold = Hold(args.first)
    server = await asyncio.start_server(hold.handle, "127.0.0.1", args.port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
