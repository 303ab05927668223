"""Issue 7: many Envoys, one budget. Three real Envoys (2 workers each) with the built filter share
one key's budget through real Redis behind real webdis (`counters.redis`), started on loopback here.

Every answer costs exactly its reservation (the mock reports prompt tokens = the gateway's estimate
and completion tokens = max_tokens), so "never above the budget" is exact: at most budget // C
requests are ever admitted, fleet-wide, and the spend in Redis equals the sum of the usage the mock
reported (read from the mock's own records, not from the gateway).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import assert_openai_error, chat_body, launch_envoy, stop_envoy, user
from fleet_helpers import RedisFleet, wait_for
from keys_helpers import (GPT_MODEL, GPT_PRICE, all_stats, chat, cost_micro, keyed_config, mock_charges,
                          prompt_estimate, scripted_usage, vkey)

MAX_TOKENS = 16
BODY = chat_body("gpt", user("How much is left for the fleet?"), max_tokens=MAX_TOKENS)
C = cost_micro(GPT_PRICE, prompt_estimate(BODY), MAX_TOKENS)
PRICES = {GPT_MODEL: GPT_PRICE}
SYNC_MS, IDLE_MS, TTL_MS = 200, 1000, 2000


@pytest.fixture(scope="module")
def redis(e2e_dir):
    r = RedisFleet(e2e_dir / "redis-fleet")
    yield r
    r.close()


def fleet_config(mocks, redis: RedisFleet, prefix: str, keys: list[dict], **counters) -> dict:
    cfg = keyed_config(mocks, keys, master=False)
    cfg["counters"] = {"redis": {"cluster": "webdis", "key_prefix": prefix, "sync_interval": f"{SYNC_MS}ms",
                                 "idle_return": f"{IDLE_MS}ms", "lease_ttl": f"{TTL_MS}ms",
                                 "lease_fraction": 0.1, "timeout": "500ms", **counters}}
    return cfg


@contextlib.contextmanager
def fleet(start_gateway, redis: RedisFleet, cfg: dict, n: int = 3, name: str = "fleet"):
    with contextlib.ExitStack() as stack:
        gws = [stack.enter_context(start_gateway(cfg, extra_clusters={"webdis": redis.webdis_port},
                                                 name=f"{name}{i}", wasm_log_level="info"))
               for i in range(n)]
        yield gws


def script_usage(gw, n: int, delay_ms: int = 20) -> None:
    gw.clear_script("openai")
    gw.script("openai", {"usage": scripted_usage("openai", prompt_estimate(BODY), MAX_TOKENS),
                         "delay_ms": delay_ms, "repeat": n})


def spread(gws, key: str, total: int, threads: int = 9, only: list[int] | None = None):
    """`total` requests over the gateways (round robin over `only`), `threads` at a time."""
    targets = only if only is not None else list(range(len(gws)))
    order = [targets[i % len(targets)] for i in range(total)]

    def one(i: int):
        return order[i], chat(gws[order[i]], key, BODY)

    with ThreadPoolExecutor(max_workers=threads) as ex:
        return list(ex.map(one, range(total)))


def budget_key(redis: RedisFleet, prefix: str, scope: str, window: int = 0) -> str:
    return f"{prefix}:{scope}:budget:{window}"


def assert_refusals_are_budget(results) -> None:
    for _, r in results:
        if r.status != 200:
            err = assert_openai_error(r, 429, "insufficient_quota", code="insufficient_quota")
            assert "fleet-wide spend" in err["message"], err


def leases(redis: RedisFleet, key: str) -> dict[str, int]:
    """The Envoys holding a lease on `key` (field `l:<instance>` > 0)."""
    return {f: v for f, v in redis.hgetall(key).items() if f.startswith("l:") and v > 0}


def test_three_envoys_stop_at_the_budget_and_an_idle_lease_is_spent_elsewhere(start_gateway, mocks, redis):
    key, prefix, n_budget = "sk-fleet-A1", "t1", 30
    budget = n_budget * C + C // 2
    cfg = fleet_config(mocks, redis, prefix, [vkey(key, "fleet-a", max_budget=budget / 1e6)])
    rkey = budget_key(redis, prefix, "key:fleet-a")
    with fleet(start_gateway, redis, cfg) as gws:
        script_usage(gws[0], 500)
        # Envoy 2 serves a little, then goes idle holding a lease.
        first = spread(gws, key, 3, threads=1, only=[2])
        assert [r.status for _, r in first] == [200] * 3, [r.body[:200] for _, r in first]
        wait_for(lambda: len(leases(redis, rkey)) == 1, what=f"envoy 2 holding a lease: {redis.hgetall(rkey)}")
        # Load on envoys 0 and 1 until the budget is reached.
        results = spread(gws, key, 60, threads=8, only=[0, 1])
        assert_refusals_are_budget(results)
        # After idle_return every lease is returned (envoy 2's included) ...
        wait_for(lambda: redis.hgetall(rkey).get("L", -1) == 0, timeout=IDLE_MS / 1000 + 5,
                 what="every lease returned")
        # ... and the others spend what envoy 2 held, up to the budget and no further.
        more = []
        for _ in range(20):
            batch = spread(gws, key, 4, threads=2, only=[0, 1])
            more += batch
            if all(r.status != 200 for _, r in batch):
                break
        assert_refusals_are_budget(more)
        admitted = sum(r.status == 200 for _, r in first + results + more)
        assert admitted == n_budget, f"{admitted} admitted fleet-wide, budget holds {n_budget}"
        charges = mock_charges(gws[0], PRICES)
        assert len(charges) == admitted and set(charges) == {C}
        wait_for(lambda: redis.used(rkey) == sum(charges), what=f"Redis spend == {sum(charges)}")
        assert redis.used(rkey) <= budget
        # a fresh request at any envoy is refused: the fleet is out
        for gw in gws:
            r = chat(gw, key, BODY)
            assert_openai_error(r, 429, "insufficient_quota", code="insufficient_quota")
        stats = all_stats(gws[0])
        assert stats.get("wasmcustom.llm_gateway.fleet.syncs", 0) > 0
