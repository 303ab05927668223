"""Many requests in flight at once (Envoy runs 2 workers): no cross-talk between per-request contexts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from conftest import ALIASES, HELLO, chat_body, user

N = 24


def _one(gw, i: int):
    provider = ("anthropic", "openai")[i % 2]
    stream = (i // 2) % 2 == 1
    text = f"request {i} ✓"
    body = chat_body(ALIASES[provider], user(text), stream=stream)
    if stream:
        res = gw.stream(body, deadline=15)
        assert res.error is None and res.ends_with_done(), (i, res.error, res.raw[-200:])
        return i, res.content()
    r = gw.chat(body, timeout=15)
    assert r.status == 200, (i, r.body)
    return i, r.json()["choices"][0]["message"]["content"]


def test_parallel_mixed_requests(gw):
    for p in ("anthropic", "openai"):
        gw.script(p, *[{"chunk_delay_ms": 20}] * (N // 2))
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(pool.map(lambda i: _one(gw, i), range(N)))
    for i in range(N):
        provider = ("anthropic", "openai")[i % 2]
        assert results[i] == HELLO[provider] + f"request {i} ✓", (i, results[i])
    assert len(gw.provider_requests("anthropic")) == N // 2
    assert len(gw.provider_requests("openai")) == N // 2
