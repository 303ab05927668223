"""Issue 5, rate limits of a key, exact across Envoy's two workers (compare-and-swap on shared data):
rpm (requests admitted this minute), tpm (tokens settled this minute), max_parallel_requests
(requests in flight, held open by stalled mock streams and released by client aborts), and client
aborts mid-stream: the request is still charged and its parallel slot released.

  gpt     openai/gpt-mock-priced        $0.50 / $1.50 per Mtok
  claude  anthropic/claude-mock-priced  $3 / $15 per Mtok
"""

from __future__ import annotations

import threading
import time

import pytest

from conftest import assert_openai_error, attach_gateway, chat_body, user
from keys_helpers import (CLAUDE_PRICE, GPT_PRICE, MASTER_ENV, MASTER_KEY, OpenStream, all_stats, chat,
                          cost_micro, data_events, ensure_minute_left, key_info, keyed_config, prompt_estimate,
                          scripted_usage, settled, usage_counter, vkey, wait_info,
                          worker_connections)

RPM = "sk-rpm-Aa11Bb22"
TPM = "sk-tpm-Cc33Dd44"
PAR = "sk-par-Ee55Ff66"
ABORT = {"openai": "sk-abort-oai-Gg77", "anthropic": "sk-abort-ant-Hh88"}
ALIAS = {"openai": "gpt", "anthropic": "claude"}


@pytest.fixture(scope="module")
def limits_gateway(start_gateway, mocks):
    keys = [
        vkey(RPM, "rpm10", rpm_limit=10),
        vkey(TPM, "tpm100", tpm_limit=100),
        vkey(PAR, "par3", max_parallel_requests=3, max_budget=1.0),
        vkey(ABORT["openai"], "abort-openai", max_budget=1.0, max_parallel_requests=1),
        vkey(ABORT["anthropic"], "abort-anthropic", max_budget=1.0, max_parallel_requests=1),
    ]
    with start_gateway(keyed_config(mocks, keys), name="budget-limits", env=MASTER_ENV) as g:
        yield g


@pytest.fixture
def lg(limits_gateway, request):
    return attach_gateway(limits_gateway, request)


def seconds_to_next_minute() -> float:
    return 60 - time.time() % 60


def assert_retry_after_next_minute(r) -> None:
    ra = int(r.headers["retry-after"])
    assert abs(ra - seconds_to_next_minute()) <= 1.5, (ra, seconds_to_next_minute())


def test_rpm_is_exact_across_workers(lg):
    ensure_minute_left(5)
    before = worker_connections(lg)
    results = []
    lock = threading.Lock()
    start = threading.Barrier(25)

    def one():
        start.wait(timeout=10)
        r = chat(lg, RPM, chat_body("gpt"))  # a fresh connection each
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one) for _ in range(25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    after = worker_connections(lg)
    assert all(after[w] > before[w] for w in before), f"one worker got no connection: {before} -> {after}"
    assert len(results) == 25
    ok = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status != 200]
    assert len(ok) == 10, [(r.status, r.body[:120]) for r in refused[:3]]
    for r in refused:
        err = assert_openai_error(r, 429, "rate_limit_error", code="rate_limit_exceeded")
        assert "rpm_limit 10" in err["message"] and "key `rpm10`" in err["message"], err
        assert_retry_after_next_minute(r)
    assert len(lg.provider_requests("openai")) == 10
    info = wait_info(lg, RPM, settled())
    assert info["rpm_used"] == 10 and info["rpm_limit"] == 10, info
    # still refused (on a kept-alive connection too), but the master key is not limited
    r = chat(lg, RPM, chat_body("gpt"), via="x-api-key")
    assert_openai_error(r, 429, "rate_limit_error", code="rate_limit_exceeded")
    assert chat(lg, MASTER_KEY, chat_body("gpt")).status == 200
    stats = all_stats(lg)
    assert usage_counter(stats, "key", "rpm10", "requests") == 10
    assert usage_counter(stats, "key", "rpm10", "rejected_rpm") == 16


def test_tpm_refuses_once_this_minutes_tokens_reach_the_limit(lg):
    ensure_minute_left(5)
    lg.script("openai", {"usage": scripted_usage("openai", 40, 20)}, {"usage": scripted_usage("openai", 30, 20)})
    assert chat(lg, TPM, chat_body("gpt")).status == 200
    wait_info(lg, TPM, lambda i: i["tpm_used"] == 60 and settled()(i))
    # 60 < 100: admitted, although its own tokens take the minute past the limit
    assert chat(lg, TPM, chat_body("gpt")).status == 200
    info = wait_info(lg, TPM, lambda i: i["tpm_used"] == 110 and settled()(i))
    assert info["tpm_limit"] == 100 and info["rpm_used"] == 2, info
    r = chat(lg, TPM, chat_body("gpt"))
    err = assert_openai_error(r, 429, "rate_limit_error", code="rate_limit_exceeded")
    assert "tpm_limit 100" in err["message"] and "110 used" in err["message"], err
    assert_retry_after_next_minute(r)
    r = chat(lg, TPM, chat_body("claude", stream=True))
    assert_openai_error(r, 429, "rate_limit_error", code="rate_limit_exceeded")
    assert len(lg.provider_requests("openai")) == 2 and not lg.provider_requests("anthropic")
    stats = all_stats(lg)
    assert usage_counter(stats, "key", "tpm100", "rejected_tpm") == 2
    assert usage_counter(stats, "key", "tpm100", "tokens") == 110
    assert usage_counter(stats, "model", "claude", "rejected_tpm") == 1


def open_stalled(gw, key: str, alias: str, events: int) -> OpenStream:
    s = OpenStream(gw, key, chat_body(alias, user("Hi there"), stream=True))
    assert s.status == 200, s.resp.read()[:300]
    s.read_until(lambda raw: len(data_events(raw)) >= events)
    return s


def aborted_stream_cost(body: dict, received: bytes) -> int:
    """What an OpenAI stream aborted before its usage chunk is charged: the prompt estimated from
    the request body and the completion from the bytes streamed to the client, 4 bytes a token."""
    return cost_micro(GPT_PRICE, prompt_estimate(body), -(-len(received) // 4))


def test_max_parallel_holds_then_aborts_release_the_slots(lg):
    lg.script("openai", {"stall_after_events": 3, "stall_ms": 20_000, "repeat": 3})
    body = chat_body("gpt", user("Hi there"), stream=True)
    streams = []
    try:
        for _ in range(3):
            streams.append(open_stalled(lg, PAR, "gpt", 3))
        info = key_info(lg, PAR)["info"]
        assert info["parallel_requests"] == 3 and info["max_parallel_requests"] == 3, info
        assert info["reserved_micro"] > 0
        # the 4th is refused while the three are open
        r = chat(lg, PAR, chat_body("gpt"))
        err = assert_openai_error(r, 429, "rate_limit_error", code="rate_limit_exceeded")
        assert r.headers.get("retry-after") == "1", r.headers
        assert "max_parallel_requests 3" in err["message"], err
        r = chat(lg, PAR, chat_body("gpt", stream=True), via="x-api-key")
        assert_openai_error(r, 429, "rate_limit_error", code="rate_limit_exceeded")
        assert r.headers.get("retry-after") == "1", r.headers
        assert len(lg.provider_requests("openai")) == 3
        received = [s.settle(quiet=0.2) for s in streams]
    finally:
        for s in streams:
            s.abort()
    expected = sum(aborted_stream_cost(body, raw) for raw in received)
    info = wait_info(lg, PAR, lambda i: i["parallel_requests"] == 0 and i["reserved_micro"] == 0
                     and i["spend_micro"] > 0)
    assert info["spend_micro"] == expected, (info, [len(r) for r in received])
    # a slot is free again
    r = chat(lg, PAR, chat_body("gpt"))
    assert r.status == 200, r.body[:300]
    stats = all_stats(lg)
    assert usage_counter(stats, "key", "par3", "rejected_parallel") == 2
    assert usage_counter(stats, "key", "par3", "requests") == 4


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_client_abort_mid_stream_is_charged_and_releases_its_slot(lg, provider):
    key, alias = ABORT[provider], ALIAS[provider]
    body = chat_body(alias, user("Hi there"), stream=True)
    # the stream stalls after the role chunk and two words: no usage yet at OpenAI (it comes last),
    # Anthropic's message_start already carries the prompt tokens (and output_tokens 1)
    stall_after = 3 if provider == "openai" else 5
    lg.script(provider, {"stall_after_events": stall_after, "stall_ms": 20_000,
                         "usage": scripted_usage(provider, 40, 30)})
    s = open_stalled(lg, key, alias, 3)
    try:
        raw = s.settle(quiet=0.2)
        assert "Hello" in raw.decode(), raw
        assert key_info(lg, key)["info"]["parallel_requests"] == 1
        r = chat(lg, key, chat_body(alias))
        assert_openai_error(r, 429, "rate_limit_error", code="rate_limit_exceeded")
    finally:
        s.abort()
    if provider == "openai":
        expected = aborted_stream_cost(body, raw)  # an overestimate: SSE framing counts as text
        assert expected > cost_micro(GPT_PRICE, 2, 2)
    else:
        # the usage seen so far (prompt 40, output 1 from message_start), the completion raised to
        # the estimate from the bytes already streamed: the provider bills what it generated
        expected = cost_micro(CLAUDE_PRICE, 40, max(1, -(-len(raw) // 4)))
        assert expected > cost_micro(CLAUDE_PRICE, 40, 1)
    info = wait_info(lg, key, lambda i: i["parallel_requests"] == 0 and i["reserved_micro"] == 0
                     and i["spend_micro"] > 0)
    assert info["spend_micro"] == expected, (info, len(raw))
    lg.script(provider, {"usage": scripted_usage(provider, 5, 5)})
    r = chat(lg, key, chat_body(alias))
    assert r.status == 200, r.body[:300]
    price = GPT_PRICE if provider == "openai" else CLAUDE_PRICE
    wait_info(lg, key, settled(expected + cost_micro(price, 5, 5)))
    assert usage_counter(all_stats(lg), "key", f"abort-{provider}", "cost_micro_usd") == \
        expected + cost_micro(price, 5, 5)
