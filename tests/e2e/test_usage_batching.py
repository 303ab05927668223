"""Usage events batched per worker (src/usage_batch.rs, issue 8): the usage of a key without a
budget or tpm limit goes to the counter service in batches (every 64 events or 50 ms), that of a
budgeted key at once. Spend must come out exact either way, and within a bounded delay.

`llm_gateway.usage_messages` counts the shared-queue messages, `llm_gateway.usage_events` the
events they carried."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import attach_gateway, chat_body, user
from keys_helpers import (GPT_PRICE, MASTER_ENV, all_stats, chat, cost_micro, keyed_config, scripted_usage,
                          vkey, wait_info)

FREE = "sk-batch-free-Zx81"       # no limits: batched
BUDGETED = "sk-batch-budget-Yw72"  # max_budget: sent at once
N = 40


@pytest.fixture(scope="module")
def batch_gateway(start_gateway, mocks):
    cfg = keyed_config(mocks, [vkey(FREE, "batch-free"), vkey(BUDGETED, "batch-budget", max_budget=10.0)])
    with start_gateway(cfg, name="usage-batching", env=MASTER_ENV) as g:
        yield g


@pytest.fixture
def bg(batch_gateway, request):
    return attach_gateway(batch_gateway, request)


def stat(stats: dict[str, int], name: str) -> int:
    """`name` whatever prefix Envoy adds (`wasmcustom.`); absent = 0."""
    found = [v for n, v in stats.items() if n == name or n.endswith("." + name)]
    assert len(found) <= 1, (name, found)
    return found[0] if found else 0


def usage_stats(gw) -> tuple[int, int]:
    s = all_stats(gw)
    return stat(s, "llm_gateway.usage_messages"), stat(s, "llm_gateway.usage_events")


def run(gw, key: str, n: int) -> None:
    body = chat_body("gpt", user("batch me"))
    gw.script("openai", {"usage": scripted_usage("openai", 10, 5), "repeat": n})
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: chat(gw, key, body).status, range(n)))
    assert statuses == [200] * n


def test_unlimited_key_usage_is_batched_and_exact(bg):
    msgs0, events0 = usage_stats(bg)
    started = time.monotonic()
    run(bg, FREE, N)
    want = N * cost_micro(GPT_PRICE, 10, 5)
    info = wait_info(bg, FREE, lambda i: i["spend_micro"] == want, timeout=5)
    waited = time.monotonic() - started
    assert info["tpm_used"] == N * 15, info
    # nothing applied twice: still exact a moment later
    time.sleep(0.3)
    assert wait_info(bg, FREE, lambda i: True)["spend_micro"] == want
    msgs, events = usage_stats(bg)
    assert events - events0 == N, (events0, events)
    # batched: fewer messages than events (each worker sends at most one per 50 ms or 64 events)
    assert msgs - msgs0 < N, (msgs0, msgs, events0, events)
    assert waited < 5


def test_budgeted_key_usage_goes_at_once(bg):
    msgs0, events0 = usage_stats(bg)
    run(bg, BUDGETED, 10)
    want = 10 * cost_micro(GPT_PRICE, 10, 5)
    wait_info(bg, BUDGETED, lambda i: i["spend_micro"] == want and i["reserved_micro"] == 0)
    msgs, events = usage_stats(bg)
    # one message per event: the reservation is released as soon as the request is settled
    assert (msgs - msgs0, events - events0) == (10, 10), (msgs0, msgs, events0, events)
