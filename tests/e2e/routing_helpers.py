"""Helpers for the issue-4 routing suites (test_routing_*.py): building model lists whose
deployment ids are known, reading the attempts the mocks saw, checking the served headers.

Deployment ids are `<model_name>#<index in model_list>` (0-based over the whole list);
deployments on one mock are told apart by their provider model name (`body.model` at the mock).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conftest import (ANTHROPIC_HELLO, ANTHROPIC_KEY, CLIENT_KEY, HTTP_TIMEOUT, OPENAI_HELLO, OPENAI_KEY,
                      Gateway, Response, anthropic_text, assert_no_client_secret, mock_cluster_map,
                      mock_deployment)

# A weight that makes a deployment the first choice in all but about one request in a million.
PRIMARY = 1_000_000
HELLO = {"anthropic": ANTHROPIC_HELLO, "openai": OPENAI_HELLO}


class ModelList:
    """A plugin config under construction; `add` returns the deployment's id."""

    def __init__(self, mocks):
        self.mocks = mocks
        self.entries: list[dict] = []

    def add(self, alias: str, model: str, at: str | None = None, **params: Any) -> str:
        self.entries.append(mock_deployment(self.mocks, alias, model, at, **params))
        return f"{alias}#{len(self.entries) - 1}"

    def config(self, router_settings: dict | None = None, gateway: dict | None = None) -> dict:
        cfg: dict[str, Any] = {"model_list": self.entries,
                               "gateway": {"clusters": mock_cluster_map(self.mocks), **(gateway or {})}}
        if router_settings is not None:
            cfg["router_settings"] = router_settings
        return cfg


def provider_model(model: str) -> str:
    """`openai/model-a` -> `model-a` (what the mock sees as body.model)."""
    return model.split("/", 1)[1]


def attempts_seen(gw: Gateway) -> list[tuple[str, str]]:
    """(provider, body.model) of every provider request at both mocks, in arrival order."""
    recs = [(r["time"], p, (r.get("body") or {}).get("model"))
            for p in ("anthropic", "openai") for r in gw.provider_requests(p)]
    return [(p, m) for _, p, m in sorted(recs)]


def models_seen(gw: Gateway, provider: str) -> list[str]:
    return [(r.get("body") or {}).get("model") for r in gw.provider_requests(provider)]


def assert_served(r: Response | Any, deployment: str, attempts: int, fallback: bool) -> None:
    h = r.headers
    got = {k: h.get(k) for k in ("x-llm-gateway-deployment", "x-llm-gateway-attempts", "x-llm-gateway-fallback")}
    want = {"x-llm-gateway-deployment": deployment, "x-llm-gateway-attempts": str(attempts),
            "x-llm-gateway-fallback": "true" if fallback else "false"}
    assert got == want, f"served headers {got}, expected {want}"


def check_provider_request(req: dict, provider: str, model: str, stream: bool) -> None:
    """A request at a mock is in that provider's native format for this model, with the gateway's key."""
    body = req["body"]
    assert body["model"] == model, body
    assert_no_client_secret(req)
    if provider == "anthropic":
        assert req["path"] == "/v1/messages", req["path"]
        assert req["headers"].get("x-api-key") == ANTHROPIC_KEY
        assert req["headers"].get("anthropic-version")
        assert isinstance(body.get("max_tokens"), int)
        assert [m["role"] for m in body["messages"]] == ["user"]
        assert anthropic_text(body["messages"][0]["content"]) == "Hi there"
    else:
        assert req["path"].split("?")[0].endswith("/chat/completions"), req["path"]
        assert req["headers"].get("authorization") == f"Bearer {OPENAI_KEY}"
        assert body["messages"] == [{"role": "user", "content": "Hi there"}]
    assert (body.get("stream") is True) == stream, body


def chat_ok(r: Response, provider: str, text: str = "Hi there") -> dict:
    """A 200 chat.completion answered by `provider`'s mock."""
    assert r.status == 200, (r.status, r.headers, r.body[:600])
    body = r.json()
    assert body["object"] == "chat.completion", body
    assert body["choices"][0]["message"]["content"] == HELLO[provider] + text, body
    assert body["choices"][0]["finish_reason"] == "stop", body
    return body


def stream_ok(s, provider: str, text: str = "Hi there") -> None:
    assert s.error is None, f"stream broke: {s.error!r}; tail {s.raw[-400:]!r}"
    assert s.status == 200, s.raw[:600]
    assert s.headers.get("content-type", "").startswith("text/event-stream"), s.headers
    assert not s.errors(), s.errors()
    assert s.ends_with_done(), s.raw[-300:]
    assert s.content() == HELLO[provider] + text


def chat_on(conn_holder: dict, gw: Gateway, body: dict, headers: dict | None = None,
            timeout: float = HTTP_TIMEOUT) -> Response:
    """POST on a kept-alive connection (one per thread, in `conn_holder`); reconnects once if the
    server closed it."""
    data = json.dumps(body).encode()
    hdrs = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json", **(headers or {})}
    for attempt in range(2):
        conn = conn_holder.get("conn")
        if conn is None:
            conn = conn_holder["conn"] = http.client.HTTPConnection(gw.host, gw.port, timeout=timeout)
        try:
            t0 = time.monotonic()
            conn.request("POST", "/v1/chat/completions", body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn_holder["conn"] = None
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw,
                            time.monotonic() - t0)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            conn_holder["conn"] = None
            if attempt:
                raise
    raise AssertionError("unreachable")


def many_requests(gw: Gateway, bodies: list[dict], threads: int) -> list[Response]:
    """Send every body, `threads` at a time, each thread on its own kept-alive connection."""
    local = threading.local()
    holders: list[dict] = []
    lock = threading.Lock()

    def one(body: dict) -> Response:
        h = getattr(local, "h", None)
        if h is None:
            h = local.h = {}
            with lock:
                holders.append(h)
        return chat_on(h, gw, body)

    try:
        with ThreadPoolExecutor(max_workers=threads) as ex:
            return list(ex.map(one, bodies))
    finally:
        for h in holders:
            if h.get("conn") is not None:
                h["conn"].close()


def wait_until(cond, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())
