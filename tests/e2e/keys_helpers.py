"""Helpers for the issue-5 suites (test_keys_*.py, test_budget_*.py): virtual keys in config,
requests as a key (Bearer, x-api-key or none), /key/info polling, exact expected costs, per-key
and per-model counters, streams that can be aborted.

Money: prices are kept here as integer pico-USD per token (as the gateway keeps them) and
written to config as USD floats; a cost is `ceil((prompt x input + completion x output) / 1e6)`
micro-USD (the gateway rounds up), a reservation is the same formula with the prompt estimated
as `ceil(request body bytes / 4)` tokens and the completion as `max_tokens`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from conftest import HTTP_TIMEOUT, Gateway, Response, mock_cluster_map, mock_deployment, parse_stats

MASTER_KEY = "sk-master-7f3a91c2e0"
MASTER_ENV = {"GATEWAY_MASTER_KEY": MASTER_KEY}

# Deployment models the built-in price table does not know: only the configured prices apply.
GPT_MODEL = "gpt-mock-priced"
CLAUDE_MODEL = "claude-mock-priced"


@dataclass(frozen=True)
class Price:
    """pico-USD per token."""
    input: int
    output: int

    def params(self) -> dict:
        return {"input_cost_per_token": self.input / 1e12, "output_cost_per_token": self.output / 1e12}


# $0.50 / $1.50 per Mtok: half a micro-USD per prompt token, so costs exercise the rounding up.
GPT_PRICE = Price(500_000, 1_500_000)
# $3 / $15 per Mtok
CLAUDE_PRICE = Price(3_000_000, 15_000_000)


def cost_micro(price: Price, prompt: int, completion: int) -> int:
    pico = prompt * price.input + completion * price.output
    return -(-pico // 1_000_000)


def prompt_estimate(body: dict | bytes) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return -(-len(data) // 4)


def reservation_micro(price: Price, body: dict, max_tokens: int) -> int:
    return cost_micro(price, prompt_estimate(body), max_tokens)


def usd(micro: int) -> str:
    """As the gateway writes money in messages and headers: at least two decimals, no trailing zeros."""
    frac = f"{micro % 1_000_000:06d}".rstrip("0")
    if len(frac) < 2:
        frac = f"{micro % 1_000_000:06d}"[:2]
    return f"{micro // 1_000_000}.{frac}"


def utc(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def key_hash(plain: str) -> str:
    return "sha256:" + hashlib.sha256(plain.encode()).hexdigest()


def key_ref(plain: str) -> str:
    """`sha256:` + first 8 hex digits: how the gateway names a key in /key/info."""
    return key_hash(plain)[:15]


def vkey(plain: str, alias: str, **fields: Any) -> dict:
    """A `virtual_keys` entry; `max_budget` etc. as keywords (budgets in USD)."""
    return {"key_hash": key_hash(plain), "key_alias": alias, **fields}


def micro_to_usd(micro: int) -> float:
    return micro / 1e6


def priced_models(mocks, extra: list[dict] | None = None) -> list[dict]:
    """`gpt` (OpenAI mock) and `claude` (Anthropic mock) with GPT_PRICE / CLAUDE_PRICE."""
    return [
        mock_deployment(mocks, "gpt", f"openai/{GPT_MODEL}", **GPT_PRICE.params()),
        mock_deployment(mocks, "claude", f"anthropic/{CLAUDE_MODEL}", **CLAUDE_PRICE.params()),
        *(extra or []),
    ]


def keyed_config(mocks, keys: list[dict], teams: list[dict] | None = None, master: bool = True,
                 gateway: dict | None = None, models: list[dict] | None = None) -> dict:
    cfg: dict[str, Any] = {
        "model_list": models if models is not None else priced_models(mocks),
        "virtual_keys": keys,
        "router_settings": {"disable_cooldowns": True},
        "gateway": {"clusters": mock_cluster_map(mocks), **(gateway or {})},
    }
    if teams:
        cfg["teams"] = teams
    if master:
        cfg["general_settings"] = {"master_key": "os.environ/GATEWAY_MASTER_KEY"}
    return cfg


# ---------------------------------------------------------------- requests as a key


def auth_headers(key: str | None, via: str = "bearer") -> dict[str, str]:
    if key is None:
        return {}
    if via == "bearer":
        return {"Authorization": f"Bearer {key}"}
    if via == "x-api-key":
        return {"x-api-key": key}
    raise ValueError(via)


def send(gw: Gateway, method: str, path: str, body: Any = None, key: str | None = None,
         via: str = "bearer", headers: dict[str, str] | None = None, timeout: float = HTTP_TIMEOUT,
         conn: http.client.HTTPConnection | None = None) -> Response:
    """One request with exactly these credentials (none when key is None). On `conn` if given
    (kept alive), else on a fresh connection."""
    hdrs = auth_headers(key, via)
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    own = conn is None
    c = conn or http.client.HTTPConnection(gw.host, gw.port, timeout=timeout)
    t0 = time.monotonic()
    try:
        c.request(method, path, body=data, headers=hdrs)
        resp = c.getresponse()
        raw = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw, time.monotonic() - t0)
    finally:
        if own:
            c.close()


def chat(gw: Gateway, key: str | None, body: dict, via: str = "bearer", **kw: Any) -> Response:
    return send(gw, "POST", "/v1/chat/completions", body, key, via, **kw)


def stream(gw: Gateway, key: str | None, body: dict, via: str = "bearer", deadline: float = HTTP_TIMEOUT):
    """A whole streamed answer (conftest StreamResult) with exactly these credentials."""
    return _stream_raw(gw, body, auth_headers(key, via), deadline)


def _stream_raw(gw: Gateway, body: dict, hdrs: dict, deadline: float):
    from conftest import StreamResult
    conn = http.client.HTTPConnection(gw.host, gw.port, timeout=deadline)
    t0 = time.monotonic()
    raw = bytearray()
    status, rh, err = 0, {}, None
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json", **hdrs})
        resp = conn.getresponse()
        status, rh = resp.status, {k.lower(): v for k, v in resp.getheaders()}
        while time.monotonic() - t0 < deadline:
            piece = resp.read1(65536)
            if not piece:
                break
            raw += piece
    except (OSError, http.client.HTTPException) as e:
        err = e
    finally:
        conn.close()
    return StreamResult(status, rh, bytes(raw), err, time.monotonic() - t0)


class OpenStream:
    """A streaming request held open: read some of it, then abort (RST) or finish it."""

    def __init__(self, gw: Gateway, key: str, body: dict, timeout: float = HTTP_TIMEOUT):
        self.conn = http.client.HTTPConnection(gw.host, gw.port, timeout=timeout)
        self.conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        self.sock = self.conn.sock
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.raw = bytearray()

    def read_until(self, cond: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
        """Read until cond(all bytes so far) holds (fails the test after `timeout`)."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while not cond(bytes(self.raw)):
            if time.monotonic() > deadline:
                raise AssertionError(f"stream condition not met after {timeout}s; got {bytes(self.raw)!r}")
            try:
                piece = self.resp.read1(65536)
            except (socket.timeout, TimeoutError):
                continue
            if not piece:
                break
            self.raw += piece
        return bytes(self.raw)

    def settle(self, quiet: float = 0.3, timeout: float = 3.0) -> bytes:
        """Read until nothing more arrives for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(quiet)
        while time.monotonic() < deadline:
            try:
                piece = self.resp.read1(65536)
            except (socket.timeout, TimeoutError):
                break
            if not piece:
                break
            self.raw += piece
        return bytes(self.raw)

    def abort(self) -> None:
        """Close the client side with a TCP reset, mid-response."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.sock.close()
        finally:
            self.resp.close()
            self.conn.close()


def data_events(raw: bytes) -> list[str]:
    out = []
    for block in raw.decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n"):
        data = [ln[5:].lstrip(" ") for ln in block.split("\n") if ln.startswith("data:")]
        if data:
            out.append("\n".join(data))
    return out


# ---------------------------------------------------------------- /key/info


def key_info(gw: Gateway, key: str, query: str = "") -> dict:
    r = send(gw, "GET", "/key/info" + (f"?{query}" if query else ""), key=key)
    assert r.status == 200, (r.status, r.body[:500])
    return r.json()


def wait_info(gw: Gateway, key: str, cond: Callable[[dict], bool], timeout: float = 5.0,
              query: str = "") -> dict:
    """/key/info `info`, polled until cond(info) holds (the counter service applies usage events
    asynchronously); fails the test with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        info = key_info(gw, key, query)["info"]
        if cond(info):
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"/key/info never satisfied the condition in {timeout}s; last: "
                                 f"{json.dumps(info, indent=1)}")
        time.sleep(0.05)


def settled(spend_micro: int | None = None) -> Callable[[dict], bool]:
    """Nothing reserved, nothing in flight (and spend as given)."""
    return lambda i: (i["reserved_micro"] == 0 and i["parallel_requests"] == 0
                      and (spend_micro is None or i["spend_micro"] == spend_micro))


# ---------------------------------------------------------------- mocks


def mock_charges(gw: Gateway, prices: dict[str, Price]) -> list[int]:
    """Cost of every answered provider request at both mocks, from the usage the mock reported
    (prices by provider model name)."""
    out = []
    for provider in ("openai", "anthropic"):
        for r in gw.provider_requests(provider):
            resp = r["response"]
            if resp.get("status") != 200 or not resp.get("usage"):
                continue
            u = resp["usage"]
            model = (r.get("body") or {}).get("model")
            if provider == "openai":
                p, c = u["prompt_tokens"], u["completion_tokens"]
            else:
                p = u["input_tokens"] + u.get("cache_read_input_tokens", 0) + u.get("cache_creation_input_tokens", 0)
                c = u["output_tokens"]
            out.append(cost_micro(prices[model], p, c))
    return out


def openai_usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def anthropic_usage(prompt: int, completion: int) -> dict:
    return {"input_tokens": prompt, "output_tokens": completion}


def scripted_usage(provider: str, prompt: int, completion: int) -> dict:
    return openai_usage(prompt, completion) if provider == "openai" else anthropic_usage(prompt, completion)


def all_headers_at_mocks(gw: Gateway) -> list[tuple[str, str, str]]:
    """(provider, header name, value) of every request at both mocks."""
    return [(p, k, v) for p in ("openai", "anthropic") for r in gw.requests(p) for k, v in r["header_list"]]


# ---------------------------------------------------------------- counters


def usage_counter(stats: dict[str, int], kind: str, name: str, what: str) -> int:
    """`llm_gateway.key.<what>.key_alias.<name>` / `llm_gateway.model.<what>.alias.<name>` (names
    with non-[A-Za-z0-9_] as `_`), whatever prefix Envoy adds (`wasmcustom.`); absent = 0."""
    label = {"key": "key_alias", "model": "alias"}[kind]
    want = f"llm_gateway.{kind}.{what}.{label}.{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
    found = {n: v for n, v in stats.items() if n == want or n.endswith("." + want)}
    assert len(found) <= 1, f"several stats end with {want}: {found}"
    return next(iter(found.values()), 0)


def all_stats(gw: Gateway) -> dict[str, int]:
    r = gw.admin("/stats")
    assert r.status == 200
    return parse_stats(r.text)


# ---------------------------------------------------------------- time


def ensure_minute_left(seconds: float) -> None:
    """Sleep to the start of the next minute if fewer than `seconds` are left in this one."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.05)


def sleep_until_ms(unix_ms: int) -> None:
    d = unix_ms / 1000 - time.time()
    if d > 0:
        time.sleep(d)


# ---------------------------------------------------------------- concurrency


@dataclass
class Burst:
    responses: list[Response] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def burst(gw: Gateway, key: str, body: dict, threads: int, per_thread: int,
          timeout: float = HTTP_TIMEOUT) -> Burst:
    """threads x per_thread chat requests, started together; even threads keep one connection
    alive, odd threads open a fresh connection per request."""
    out = Burst()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def run(i: int) -> None:
        conn = http.client.HTTPConnection(gw.host, gw.port, timeout=timeout) if i % 2 == 0 else None
        try:
            start.wait(timeout=10)
            for _ in range(per_thread):
                try:
                    r = chat(gw, key, body, conn=conn, timeout=timeout)
                    if r.headers.get("connection", "").lower() == "close" and conn is not None:
                        conn.close()
                        conn = http.client.HTTPConnection(gw.host, gw.port, timeout=timeout)
                    with lock:
                        out.responses.append(r)
                except (OSError, http.client.HTTPException) as e:
                    with lock:
                        out.errors.append(e)
                    if conn is not None:
                        conn.close()
                        conn = http.client.HTTPConnection(gw.host, gw.port, timeout=timeout)
        finally:
            if conn is not None:
                conn.close()

    with ThreadPoolExecutor(max_workers=threads) as ex:
        list(ex.map(run, range(threads)))
    return out


def worker_connections(gw: Gateway) -> dict[str, int]:
    """Downstream connections accepted per Envoy worker on the gateway listener."""
    r = gw.admin("/stats?filter=listener")
    stats = parse_stats(r.text)
    out = {}
    for name, v in stats.items():
        m = re.fullmatch(rf"listener\.127\.0\.0\.1_{gw.port}\.(worker_\d+)\.downstream_cx_total", name)
        if m:
            out[m.group(1)] = v
    assert len(out) == 2, f"expected two workers' listener stats, got {out}"
    return out
