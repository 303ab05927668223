"""Issue 4 selection strategies, each in its own Envoy (2 workers) with two deployments of one alias
on the OpenAI mock, told apart by provider model name (`model-a` = `<alias>#0`, `model-b` = `#1`).
"""

from __future__ import annotations

import math
import threading
import time

import pytest

from conftest import attach_gateway, chat_body, user
from routing_helpers import ModelList, models_seen, many_requests, wait_until


def two_deployments(mocks, alias: str, strategy: str, a: dict | None = None, b: dict | None = None) -> dict:
    ml = ModelList(mocks)
    ml.add(alias, "openai/model-a", **(a or {}))
    ml.add(alias, "openai/model-b", **(b or {}))
    return ml.config(router_settings={"routing_strategy": strategy, "allowed_fails": 1000})


def served_by(r) -> str:
    assert r.status == 200, (r.status, r.body[:400])
    return r.headers.get("x-llm-gateway-deployment")


# ---------------------------------------------------------------- simple-shuffle: weights

@pytest.fixture(scope="module")
def shuffle_gateway(start_gateway, mocks):
    cfg = two_deployments(mocks, "w", "simple-shuffle", {"weight": 3}, {"weight": 1})
    with start_gateway(cfg, name="simple-shuffle") as g:
        yield g


def test_weighted_split_3_to_1_over_2000_requests(shuffle_gateway, request):
    gw = attach_gateway(shuffle_gateway, request)
    n, p = 2000, 0.75
    t0 = time.monotonic()
    results = many_requests(gw, [chat_body("w", user(f"r{i}")) for i in range(n)], threads=8)
    took = time.monotonic() - t0
    served = [served_by(r) for r in results]
    assert set(served) <= {"w#0", "w#1"}, set(served)
    assert all(r.headers.get("x-llm-gateway-attempts") == "1" for r in results)
    a = served.count("w#0")
    # binomial(n=2000, p=0.75): sigma = 19.4; 4 sigma = +-77 (false alarm ~6e-5)
    band = 4 * math.sqrt(n * p * (1 - p))
    assert abs(a - n * p) <= band, f"w#0 served {a} of {n}; expected {n * p:.0f} +- {band:.0f} ({took:.1f}s)"
    # the mock saw exactly what the headers say
    seen = models_seen(gw, "openai")
    assert len(seen) == n
    assert seen.count("model-a") == a and seen.count("model-b") == n - a


# ---------------------------------------------------------------- least-busy

@pytest.fixture(scope="module")
def least_busy_gateway(start_gateway, mocks):
    with start_gateway(two_deployments(mocks, "lb", "least-busy"), name="least-busy") as g:
        yield g


def test_least_busy_prefers_the_idle_deployment(least_busy_gateway, request):
    gw = attach_gateway(least_busy_gateway, request)
    gw.script("openai", {"match_model": "model-a", "delay_ms": 10_000, "repeat": 20})
    held: list[dict] = []
    threads: list[threading.Thread] = []

    def background(slot: dict) -> None:
        slot["r"] = gw.chat(chat_body("lb", user("hold")), timeout=20)

    try:
        # Start requests one at a time until one of them sits at model-a (slow): the others land on
        # the idle model-b and finish at once.
        for _ in range(10):
            slot: dict = {}
            th = threading.Thread(target=background, args=(slot,), daemon=True)
            th.start()
            held.append(slot)
            threads.append(th)
            wait_until(lambda: "r" in slot or "model-a" in models_seen(gw, "openai"), timeout=3)
            if "model-a" in models_seen(gw, "openai"):
                break
        assert models_seen(gw, "openai").count("model-a") == 1, \
            f"could not get one request to hold model-a busy: {models_seen(gw, 'openai')}"
        before_b = models_seen(gw, "openai").count("model-b")
        # model-a has one request in flight, model-b none: every new request goes to model-b
        served = [served_by(gw.chat(chat_body("lb", user(f"q{i}")), timeout=10)) for i in range(20)]
        assert served == ["lb#1"] * 20, f"requests went to the busy deployment: {served}"
        seen = models_seen(gw, "openai")
        assert seen.count("model-a") == 1 and seen.count("model-b") == before_b + 20, seen
    finally:
        gw.reset()  # ends the mock's delay: the held request is answered now
        for th in threads:
            th.join(timeout=15)
    slow = [s["r"] for s in held if "r" in s and s["r"].headers.get("x-llm-gateway-deployment") == "lb#0"]
    assert len(slow) == 1 and slow[0].status == 200, [(s.get("r") or None) for s in held]


def test_least_busy_in_flight_counts_return_to_zero_after_failures(least_busy_gateway, request):
    """Every way an attempt can end (retryable failure, timeout, context error, stream reset, client
    gone mid-stream) releases its in-flight count: afterwards both idle deployments share traffic."""
    gw = attach_gateway(least_busy_gateway, request)
    both = ["model-a", "model-b"]
    for _ in range(3):
        gw.script("openai", {"match_model": both, "status": 500})  # first attempt fails, retry answers
        assert gw.chat(chat_body("lb", user("x")), timeout=10).status == 200
        gw.script("openai", {"match_model": both, "delay_ms": 3000})  # first attempt times out
        assert gw.chat(chat_body("lb", user("x"), timeout=0.3), timeout=10).status == 200
        gw.script("openai", {"match_model": both, "status": 400})  # not retried
        assert gw.chat(chat_body("lb", user("x")), timeout=10).status == 400
        gw.script("openai", {"match_model": both, "reset_after_events": 3})  # cut mid-stream
        s = gw.stream(chat_body("lb", user("x"), stream=True), deadline=10)
        assert s.status == 200 and s.elapsed < 5
        gw.script("openai", {"match_model": both, "chunk_delay_ms": 300})  # client leaves mid-stream
        gw.stream(chat_body("lb", user("x"), stream=True), deadline=0.5)
    gw.reset()  # ends the slow streams' delays
    time.sleep(0.5)
    served = [served_by(gw.chat(chat_body("lb", user(f"q{i}")), timeout=10)) for i in range(40)]
    a, b = served.count("lb#0"), served.count("lb#1")
    assert a >= 5 and b >= 5, f"idle deployments should share the load (a leaked in-flight count?): lb#0 {a}, lb#1 {b}"


# ---------------------------------------------------------------- latency-based-routing

@pytest.fixture(scope="module")
def latency_gateway(start_gateway, mocks):
    with start_gateway(two_deployments(mocks, "lat", "latency-based-routing"), name="latency") as g:
        yield g


def test_latency_based_moves_traffic_away_from_a_slow_deployment(latency_gateway, request):
    gw = attach_gateway(latency_gateway, request)
    gw.script("openai", {"match_model": "model-a", "delay_ms": 400, "repeat": 100})
    # until the gateway has measured model-a (it has to try it to know it is slow)
    for i in range(10):
        served_by(gw.chat(chat_body("lat", user(f"warm{i}")), timeout=10))
        seen = models_seen(gw, "openai")
        if "model-a" in seen and "model-b" in seen:
            break
    seen = models_seen(gw, "openai")
    assert "model-a" in seen and "model-b" in seen, f"both deployments must have been measured: {seen}"
    gw.reset()
    gw.script("openai", {"match_model": "model-a", "delay_ms": 400, "repeat": 100})
    served = [served_by(gw.chat(chat_body("lat", user(f"q{i}")), timeout=10)) for i in range(30)]
    to_b = served.count("lat#1")
    assert to_b >= 27, f"only {to_b}/30 requests avoided the slow deployment: {served}"
    assert models_seen(gw, "openai").count("model-b") == to_b


# ---------------------------------------------------------------- usage-based-routing

@pytest.fixture(scope="module")
def usage_gateway(start_gateway, mocks):
    ml = ModelList(mocks)
    ml.add("use-o", "openai/model-a", tpm=1_000_000)
    ml.add("use-o", "openai/model-b", tpm=1000)
    ml.add("use-a", "anthropic/claude-a", tpm=1_000_000)
    ml.add("use-a", "anthropic/claude-b", tpm=1000)
    cfg = ml.config(router_settings={"routing_strategy": "usage-based-routing", "allowed_fails": 1000})
    with start_gateway(cfg, name="usage") as g:
        yield g


def usage(provider: str, total: int) -> dict:
    out = total // 5
    if provider == "anthropic":
        return {"input_tokens": total - out, "output_tokens": out}
    return {"prompt_tokens": total - out, "completion_tokens": out, "total_tokens": total}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_usage_based_prefers_lowest_share_of_tpm(usage_gateway, request, provider):
    """<alias>#a used 5000 of its 1,000,000 tpm (0.5%), <alias>#b 200 of its 1000 (20%): later requests
    go to #a although it used more tokens."""
    gw = attach_gateway(usage_gateway, request)
    alias, (a, b) = {"openai": ("use-o", ("model-a", "model-b")),
                     "anthropic": ("use-a", ("claude-a", "claude-b"))}[provider]
    first = {"openai": "use-o#0", "anthropic": "use-a#2"}[provider]
    # usage counts per wall-clock minute: keep the whole test inside one
    left = 60 - time.time() % 60
    if left < 8:
        time.sleep(left + 0.3)
    minute = int(time.time() // 60)
    gw.script(provider, {"match_model": a, "usage": usage(provider, 5000), "repeat": 10},
              {"match_model": b, "usage": usage(provider, 200), "repeat": 10})
    for i in range(10):
        served_by(gw.chat(chat_body(alias, user(f"warm{i}")), timeout=10))
        seen = models_seen(gw, provider)
        if a in seen and b in seen:
            break
    seen = models_seen(gw, provider)
    assert seen.count(a) == 1 and seen.count(b) == 1, \
        f"the strategy should have alternated while usage was equal or lower elsewhere: {seen}"
    gw.reset()
    served = [served_by(gw.chat(chat_body(alias, user(f"q{i}")), timeout=10)) for i in range(20)]
    assert int(time.time() // 60) == minute, "the test crossed a minute boundary"
    assert served == [first] * 20, f"expected every request on the deployment with the lower tpm share: {served}"
