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

from conftest import (WASM_PATH, assert_openai_error, chat_body, dead_port, gateway_bootstrap, launch_envoy,
                      stop_envoy, user)
from fleet_helpers import RedisFleet, wait_for
from keys_helpers import (GPT_MODEL, GPT_PRICE, all_stats, chat, cost_micro, key_info, keyed_config, mock_charges,
                          prompt_estimate, scripted_usage, sleep_until_ms, vkey, ensure_minute_left)

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
        gws[0].reset()  # the mocks are shared by the whole session: forget earlier tests
        try:
            yield gws
        finally:
            for gw in gws:  # an Envoy restarted by the test is a new process: stop it too
                stop_envoy(gw.proc)


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
        t0 = time.monotonic()
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
        # /key/info at every envoy reports the fleet-wide spend (as of its last sync)
        for gw in gws:
            wait_for(lambda: key_info(gw, key)["info"]["spend_micro"] == sum(charges),
                     what="fleet spend in /key/info")
            info = key_info(gw, key)["info"]
            assert info["fleet"] is True and info["remaining_budget"] * 1e6 <= budget - sum(charges) + 0.5
        # a fresh request at any envoy is refused: the fleet is out
        for gw in gws:
            r = chat(gw, key, BODY)
            assert_openai_error(r, 429, "insufficient_quota", code="insufficient_quota")
        stats = all_stats(gws[0])
        assert stats.get("wasmcustom.llm_gateway.fleet.syncs", 0) > 0
        # Redis traffic, for the README (run with -s to see it)
        elapsed = time.monotonic() - t0
        for i, gw in enumerate(gws):
            st = all_stats(gw)
            print(f"envoy {i}: {elapsed:.1f} s, {st.get('wasmcustom.llm_gateway.fleet.syncs', 0)} syncs, "
                  f"{st.get('wasmcustom.llm_gateway.fleet.lease_calls', 0)} lease calls, "
                  f"{sum(1 for _, r in first + results + more if r.status == 200)} admitted fleet-wide")


def restart(gw, cfg: dict, redis: RedisFleet, e2e_dir, name: str) -> None:
    """SIGKILL the Envoy (nothing flushed on the way out) and start it again on the same ports."""
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(timeout=10)
    clusters = {"mock_anthropic": gw.mocks.anthropic_port, "mock_openai": gw.mocks.openai_port,
                "mock_dead": dead_port(), "webdis": redis.webdis_port}
    boot = gateway_bootstrap(gw.port, gw.admin_port, str(WASM_PATH), cfg, clusters)
    gw.proc, gw.log_path, _ = launch_envoy(boot, e2e_dir / name, name, gw_envoy(),
                                           ["--component-log-level", "wasm:info"])


def gw_envoy() -> str:
    from conftest import envoy_binary
    return envoy_binary()


def test_a_killed_envoy_keeps_its_flushed_spend_and_enforces_at_once_after_restart(
        start_gateway, mocks, redis, e2e_dir):
    key, prefix, n_budget = "sk-fleet-R1", "t2", 24
    budget = n_budget * C + C // 2
    cfg = fleet_config(mocks, redis, prefix, [vkey(key, "fleet-r", max_budget=budget / 1e6)])
    rkey = budget_key(redis, prefix, "key:fleet-r")
    with fleet(start_gateway, redis, cfg, name="fleet-restart") as gws:
        script_usage(gws[0], 500)
        phase1 = spread(gws, key, 9, threads=3)
        assert [r.status for _, r in phase1] == [200] * 9
        # envoy 0 goes quiet, flushes (one sync), and is killed while the others carry on
        load = ThreadPoolExecutor(max_workers=1).submit(spread, gws, key, 8, 2, [1, 2])
        wait_for(lambda: redis.used(rkey) >= 3 * C, what="envoy 0's spend flushed")
        time.sleep(3 * SYNC_MS / 1000)
        restart(gws[0], cfg, redis, e2e_dir, "fleet-restart0-again")
        phase2 = load.result(timeout=60)
        # right after start: admitted against Redis's totals, so the fleet stays within the budget
        phase3 = spread(gws, key, 30, threads=6)
        assert_refusals_are_budget(phase2 + phase3)
        admitted = sum(r.status == 200 for _, r in phase1 + phase2 + phase3)
        charges = mock_charges(gws[0], PRICES)
        assert len(charges) == admitted and set(charges) == {C}
        # nothing envoy 0 flushed before the kill is lost; the killed envoy's lease is only
        # held until it expires (lease_ttl), so the fleet may stop short of, never above, the budget
        wait_for(lambda: redis.used(rkey) == sum(charges), what=f"Redis spend == {sum(charges)}")
        assert admitted <= n_budget
        wait_for(lambda: redis.hgetall(rkey).get("L", -1) == 0, timeout=TTL_MS / 1000 + IDLE_MS / 1000 + 5,
                 what="the killed envoy's lease reclaimed, the others returned")
        more = spread(gws, key, 30, threads=3)
        assert_refusals_are_budget(more)
        admitted += sum(r.status == 200 for _, r in more)
        assert admitted <= n_budget
        # The last slice can be leased, by a request's lease call or by a sync that grows an
        # active Envoy's lease, to an Envoy that gets no further request during `more`; the
        # others are then refused (the stop-short the README documents) until that lease is
        # idle and goes back. Once it has, one request at a time spends exactly what is left.
        # A request's own Envoy may grow its lease at a sync and keep what is left from the
        # next request, sent to another Envoy, so each request waits until no lease is out.
        tail = []
        for i in range(n_budget - admitted + 1):
            wait_for(lambda: redis.hgetall(rkey).get("L", -1) == 0, timeout=IDLE_MS / 1000 + 5,
                     what="every lease returned")
            tail.append((gws[i % len(gws)], chat(gws[i % len(gws)], key, BODY)))
            if tail[-1][1].status != 200:
                break
        assert_refusals_are_budget(tail)
        admitted += sum(r.status == 200 for _, r in tail)
        assert admitted == n_budget, (admitted, redis.hgetall(rkey),
                                      [r.json()["error"]["message"] for _, r in more + tail if r.status != 200][-3:])
        # enforced immediately after a start: a fresh envoy refuses a spent key on its first request
        restart(gws[1], cfg, redis, e2e_dir, "fleet-restart1-again")
        r = chat(gws[1], key, BODY)
        err = assert_openai_error(r, 429, "insufficient_quota", code="insufficient_quota")
        assert "fleet-wide spend" in err["message"], err
        assert len(mock_charges(gws[0], PRICES)) == n_budget


def test_window_rollover_agrees_across_three_envoys(start_gateway, mocks, redis):
    key, prefix, n_budget, window_ms = "sk-fleet-W1", "t5", 3, 6000
    budget = n_budget * C + C // 2
    cfg = fleet_config(mocks, redis, prefix, [vkey(key, "fleet-w", max_budget=budget / 1e6,
                                                   budget_duration="6s")])
    with fleet(start_gateway, redis, cfg, name="fleet-window") as gws:
        script_usage(gws[0], 500, delay_ms=0)
        windows = []
        for _ in range(2):
            now = int(time.time() * 1000)
            start = now - now % window_ms + window_ms
            sleep_until_ms(start + 100)
            windows.append(start)
            results = spread(gws, key, 12, threads=3)
            assert sum(r.status == 200 for _, r in results) == n_budget, [r.status for _, r in results]
            resets = set()
            for gw in gws:
                r = chat(gw, key, BODY)
                err = assert_openai_error(r, 429, "insufficient_quota", code="insufficient_quota")
                resets.add(err["message"].split("resets at ")[1])
            assert len(resets) == 1, resets  # the three agree on when the window ends
            assert time.time() * 1000 < start + window_ms, "the test ran past its window; rerun"
        charges = mock_charges(gws[0], PRICES)
        assert len(charges) == 2 * n_budget
        for w in windows:
            rk = budget_key(redis, prefix, "key:fleet-w", w)
            wait_for(lambda: redis.used(rk) == n_budget * C, what=f"window {w} spend in Redis")
        assert int(redis.cli("TTL", budget_key(redis, prefix, "key:fleet-w", windows[0]))) > 0


def test_rpm_is_fleet_wide(start_gateway, mocks, redis):
    key, prefix, rpm = "sk-fleet-M1", "t6", 12
    cfg = fleet_config(mocks, redis, prefix, [vkey(key, "fleet-m", rpm_limit=rpm)])
    with fleet(start_gateway, redis, cfg, name="fleet-rpm") as gws:
        script_usage(gws[0], 500, delay_ms=0)
        ensure_minute_left(30)
        minute = int(time.time()) // 60 * 60_000
        results = spread(gws, key, 30, threads=6)
        for _, r in results:
            if r.status != 200:
                err = assert_openai_error(r, 429, "rate_limit_error", code="rate_limit_exceeded")
                assert "across the fleet" in err["message"] and r.headers.get("retry-after"), err
        # leases other envoys held come back after idle_return; then the rest of the minute's
        # requests are admitted, and not one more
        wait_for(lambda: redis.hgetall(f"{prefix}:key:fleet-m:rpm:{minute}").get("L", -1) == 0,
                 timeout=IDLE_MS / 1000 + 5, what="rpm leases returned")
        more = spread(gws, key, 15, threads=3)
        admitted = sum(r.status == 200 for _, r in results + more)
        assert int(time.time()) // 60 * 60_000 == minute, "the minute rolled during the test; rerun"
        assert admitted == rpm, f"{admitted} requests admitted in one minute, rpm_limit {rpm}"
        assert len(gws[0].provider_requests("openai")) == rpm
        wait_for(lambda: redis.used(f"{prefix}:key:fleet-m:rpm:{minute}") == rpm, what="rpm count in Redis")


@pytest.fixture
def own_redis(e2e_dir, request):
    r = RedisFleet(e2e_dir / f"redis-{request.node.name}")
    yield r
    r.close()


def test_redis_outage_fail_open_keeps_serving_and_catches_up(start_gateway, mocks, own_redis, e2e_dir):
    redis = own_redis
    key, prefix = "sk-fleet-O1", "t3"
    budget = 1000 * C
    cfg = fleet_config(mocks, redis, prefix, [vkey(key, "fleet-o", max_budget=budget / 1e6)])
    rkey = budget_key(redis, prefix, "key:fleet-o")
    with fleet(start_gateway, redis, cfg, name="fleet-open") as gws:
        script_usage(gws[0], 500)
        before = spread(gws, key, 12, threads=3)
        assert all(r.status == 200 for _, r in before)
        wait_for(lambda: redis.used(rkey) == 12 * C, what="first spend flushed")
        redis.stop_redis()
        # past every lease's lifetime: admitted fail-open, counted locally
        time.sleep(TTL_MS / 1000 + 0.5)
        during = spread(gws, key, 15, threads=3)
        assert [r.status for _, r in during] == [200] * 15, [r.body[:200] for _, r in during if r.status != 200]
        assert sum(all_stats(g).get("wasmcustom.llm_gateway.fleet.fail_open_admissions", 0) for g in gws) > 0
        assert sum(all_stats(g).get("wasmcustom.llm_gateway.fleet.sync_failures", 0) for g in gws) > 0
        logs = "".join(g.log_path.read_text(errors="replace") for g in gws)
        assert "fleet counters unreachable" in logs and "fail_open" in logs
        redis.start_redis()
        # every delta counted during the outage reaches Redis once: no loss, no double count
        wait_for(lambda: redis.used(rkey) == 27 * C, timeout=15, what=f"Redis spend == {27 * C}")
        after = spread(gws, key, 6, threads=3)
        assert all(r.status == 200 for _, r in after)
        charges = mock_charges(gws[0], PRICES)
        assert len(charges) == 33
        wait_for(lambda: redis.used(rkey) == sum(charges), what=f"Redis spend == {sum(charges)}")
        time.sleep(4 * SYNC_MS / 1000)
        assert redis.used(rkey) == sum(charges)


def test_redis_outage_fail_closed_refuses_with_503(start_gateway, mocks, own_redis):
    redis = own_redis
    key, prefix = "sk-fleet-C1", "t4"
    cfg = fleet_config(mocks, redis, prefix, [vkey(key, "fleet-c", max_budget=1000 * C / 1e6)],
                       on_unavailable="fail_closed")
    with fleet(start_gateway, redis, cfg, n=2, name="fleet-closed") as gws:
        script_usage(gws[0], 500)
        assert all(r.status == 200 for _, r in spread(gws, key, 4, threads=2))
        redis.stop_redis()
        time.sleep(TTL_MS / 1000 + 0.5)
        for gw in gws:
            r = chat(gw, key, BODY)
            err = assert_openai_error(r, 503, "api_error", code="counters_unavailable")
            assert "fail_closed" in err["message"] and "Redis" in err["message"], err
        n_before = len(mock_charges(gws[0], PRICES))
        assert n_before == 4  # refused requests never reached the provider
        redis.start_redis()
        wait_for(lambda: chat(gws[0], key, BODY).status == 200, timeout=10, interval=0.2,
                 what="admitted again once Redis is back")
