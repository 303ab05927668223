"""Issue 4 metrics: per-deployment Envoy counters `llm_gateway.{attempts,failures,retries,fallbacks,
cooldowns}.<id with non-[A-Za-z0-9_] chars as _>` (Envoy may prefix custom metrics, e.g.
`wasmcustom.`), exact after a scripted sequence on a fresh gateway.

  m   openai/model-m0 (m#0, weight 1e6), openai/model-m1 (m#1)    fallbacks -> mf
  mf  anthropic/claude-mf (mf#2)
router_settings: allowed_fails 1, cooldown_time 30 (cooled deployments stay cooled for the test).
"""

from __future__ import annotations

import pytest

from conftest import attach_gateway, chat_body, deployment_counter, gateway_stats, user
from routing_helpers import PRIMARY, ModelList, assert_served, attempts_seen, chat_ok, stream_ok

KINDS = ("attempts", "failures", "retries", "fallbacks", "cooldowns")
DEPLOYMENTS = ("m#0", "m#1", "mf#2")


@pytest.fixture(scope="module")
def metrics_gateway(start_gateway, mocks):
    ml = ModelList(mocks)
    ml.add("m", "openai/model-m0", weight=PRIMARY)
    ml.add("m", "openai/model-m1", weight=1)
    ml.add("mf", "anthropic/claude-mf")
    cfg = ml.config(router_settings={"allowed_fails": 1, "cooldown_time": 30, "fallbacks": [{"m": ["mf"]}]})
    with start_gateway(cfg, name="routing-metrics") as g:
        yield g


def counters(gw) -> dict[tuple[str, str], int | None]:
    stats = gateway_stats(gw)
    return {(k, d): deployment_counter(stats, k, d) for k in KINDS for d in DEPLOYMENTS}


def test_counters_after_a_scripted_sequence(metrics_gateway, request):
    gw = attach_gateway(metrics_gateway, request)
    start = counters(gw)
    assert all(v in (0, None) for v in start.values()), start

    # 1. m#0 fails (1 of allowed 1), retry on m#1
    gw.script("openai", {"match_model": "model-m0", "status": 500})
    r = gw.chat(chat_body("m", user("Hi there")))
    chat_ok(r, "openai")
    assert_served(r, "m#1", attempts=2, fallback=False)
    # 2. m#0 fails again (cools down), m#1 fails, fallback mf#2 answers
    gw.script("openai", {"match_model": "model-m0", "status": 500}, {"match_model": "model-m1", "status": 503})
    r = gw.chat(chat_body("m", user("Hi there")))
    chat_ok(r, "anthropic")
    assert_served(r, "mf#2", attempts=3, fallback=True)
    # 3. m#0 is cooling down: m#1 first, answers
    r = gw.chat(chat_body("m", user("Hi there")))
    chat_ok(r, "openai")
    assert_served(r, "m#1", attempts=1, fallback=False)
    # 4. (streaming) m#1 answers 429: cools down at once; fallback mf#2 answers
    gw.script("openai", {"match_model": "model-m1", "status": 429})
    s = gw.stream(chat_body("m", user("Hi there"), stream=True))
    stream_ok(s, "anthropic")
    assert_served(s, "mf#2", attempts=2, fallback=True)
    # 5. every deployment of m is cooling down: straight to the fallback
    r = gw.chat(chat_body("m", user("Hi there")))
    chat_ok(r, "anthropic")
    assert_served(r, "mf#2", attempts=1, fallback=True)

    assert attempts_seen(gw) == [
        ("openai", "model-m0"), ("openai", "model-m1"),
        ("openai", "model-m0"), ("openai", "model-m1"), ("anthropic", "claude-mf"),
        ("openai", "model-m1"),
        ("openai", "model-m1"), ("anthropic", "claude-mf"),
        ("anthropic", "claude-mf"),
    ]
    expected = {
        ("attempts", "m#0"): 2, ("attempts", "m#1"): 4, ("attempts", "mf#2"): 3,
        ("failures", "m#0"): 2, ("failures", "m#1"): 2, ("failures", "mf#2"): 0,
        # src/filter/metrics.rs: `retries` = the deployment was tried after a failed attempt
        # (requests 1, 2 on m#1; 2, 4 on mf#2), `fallbacks` = it was tried for a fallback alias
        ("retries", "m#0"): 0, ("retries", "m#1"): 2, ("retries", "mf#2"): 2,
        ("fallbacks", "m#0"): 0, ("fallbacks", "m#1"): 0, ("fallbacks", "mf#2"): 3,
        ("cooldowns", "m#0"): 1, ("cooldowns", "m#1"): 1, ("cooldowns", "mf#2"): 0,
    }
    got = counters(gw)
    diff = {k: (got[k], v) for k, v in expected.items() if (got[k] or 0) != v}
    assert not diff, f"counter mismatches (got, expected): {diff}\nall llm_gateway stats: {gateway_stats(gw)}"
    missing = [k for k, v in expected.items() if v and got[k] is None]
    assert not missing, missing
