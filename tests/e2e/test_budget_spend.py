"""Issue 5, charging: cost from the provider's usage at the deployment's prices, cost and
remaining-budget headers, /key/info, streams charged from stream usage exactly like the same answer
not streamed (usage requested upstream, hidden from clients that did not ask), team budgets,
per-model budgets, a 2 s budget window, and the per-key / per-model counters.

  gpt          openai/gpt-mock-priced        $0.50 / $1.50 per Mtok
  claude       anthropic/claude-mock-priced  $3 / $15 per Mtok
  gpt.metered  openai/gpt-mock-metered       $0.50 / $1.50 per Mtok (only the counters test uses it)

Most requests are scripted so that their cost equals their reservation (usage prompt tokens =
the gateway's prompt estimate, completion tokens = max_tokens): remaining budgets and admissions
then do not depend on when the counter service applies the usage event.
"""

from __future__ import annotations

import time

import pytest

from conftest import assert_openai_error, attach_gateway, chat_body, mock_deployment, user
from keys_helpers import (CLAUDE_PRICE, GPT_PRICE, MASTER_ENV, MASTER_KEY, all_stats, chat, cost_micro,
                          ensure_minute_left, key_info, keyed_config, priced_models, prompt_estimate,
                          scripted_usage, settled, sleep_until_ms, stream, usage_counter, usd, utc, vkey,
                          wait_info)

PRICES = {"gpt": GPT_PRICE, "claude": CLAUDE_PRICE}
PROVIDER = {"gpt": "openai", "claude": "anthropic"}
ALIAS = {"openai": "gpt", "anthropic": "claude"}

SPENDER = "sk-spender-Ab12Cd34"
EQ = {"openai": "sk-eq-openai-Ef56", "anthropic": "sk-eq-anthropic-Gh78"}
SQUAD_A = "sk-squad-a-Ij90"
SQUAD_B = "sk-squad-b-Kl12"
PERMODEL = "sk-permodel-Mn34"
WINDOW = "sk-window-Op56"
METERED = "sk-metered-Qr78"
REMAINING = "sk-remaining-St90"

MAX_TOKENS = 12


def body_for(alias: str, text: str = "Hi there", **extra) -> dict:
    return chat_body(alias, user(text), max_tokens=MAX_TOKENS, **extra)


def exact_cost(alias: str, body: dict) -> int:
    """Cost (= reservation) of `body` when the provider reports prompt = estimate, completion = max_tokens."""
    return cost_micro(PRICES[alias], prompt_estimate(body), body["max_tokens"])


def script_exact(gw, alias: str, body: dict, repeat: int = 1) -> None:
    gw.script(PROVIDER[alias], {"usage": scripted_usage(PROVIDER[alias], prompt_estimate(body), body["max_tokens"]),
                                "repeat": repeat})


# Budgets computed from the exact cost of the standard bodies.
C_GPT = exact_cost("gpt", body_for("gpt"))
C_CLAUDE = exact_cost("claude", body_for("claude"))
TEAM_BUDGET = C_GPT * 5 // 2          # 2.5 requests
PERMODEL_GPT_BUDGET = C_GPT * 3 // 2  # 1.5 requests


@pytest.fixture(scope="module")
def spend_gateway(start_gateway, mocks):
    keys = [
        vkey(SPENDER, "spender", max_budget=1.0, budget_duration="1h"),
        vkey(EQ["openai"], "eq-openai", max_budget=1.0),
        vkey(EQ["anthropic"], "eq-anthropic", max_budget=1.0),
        vkey(SQUAD_A, "squad-a", max_budget=1.0, team="squad"),
        vkey(SQUAD_B, "squad-b", max_budget=1.0, team="squad"),
        vkey(PERMODEL, "permodel", max_budget=1.0,
             model_max_budget={"gpt": {"budget_limit": PERMODEL_GPT_BUDGET / 1e6, "time_period": "1d"}}),
        vkey(WINDOW, "window", max_budget=C_GPT / 1e6, budget_duration="2s"),
        vkey(METERED, "team.metered-1", max_budget=1.0, rpm_limit=4, models=["gpt.metered"]),
        vkey(REMAINING, "remaining", max_budget=1.0),
    ]
    teams = [{"team_id": "squad", "max_budget": TEAM_BUDGET / 1e6, "budget_duration": "30d"}]
    models = priced_models(mocks, [mock_deployment(mocks, "gpt.metered", "openai/gpt-mock-metered",
                                                   **GPT_PRICE.params())])
    cfg = keyed_config(mocks, keys, teams, models=models)
    with start_gateway(cfg, name="budget-spend", env=MASTER_ENV) as g:
        yield g


@pytest.fixture
def sg(spend_gateway, request):
    return attach_gateway(spend_gateway, request)


def test_cost_headers_and_key_info(sg):
    ensure_minute_left(5)  # rpm_used / tpm_used are per minute
    budget = 1_000_000
    # 1. gpt, not streamed: cost = reservation
    b1 = body_for("gpt")
    script_exact(sg, "gpt", b1)
    r = chat(sg, SPENDER, b1)
    assert r.status == 200, r.body[:300]
    c1 = exact_cost("gpt", b1)
    assert r.headers.get("x-llm-gateway-response-cost") == usd(c1), r.headers
    assert r.headers.get("x-llm-gateway-remaining-budget") == usd(budget - c1), r.headers
    assert r.json()["usage"]["prompt_tokens"] == prompt_estimate(b1)
    # 2. claude, not streamed, with a cost that is not a whole micro-USD before rounding up
    b2 = body_for("claude", "Hello again")
    sg.script("anthropic", {"usage": {"input_tokens": 7, "output_tokens": 5}})
    r = chat(sg, SPENDER, b2)
    assert r.status == 200, r.body[:300]
    c2 = cost_micro(CLAUDE_PRICE, 7, 5)
    assert c2 == 96
    assert r.headers.get("x-llm-gateway-response-cost") == usd(c2) == "0.000096", r.headers
    # (cost below the reservation: the exact remaining budget is checked in
    # test_remaining_budget_header_when_the_cost_is_below_the_reservation; here either value)
    r2 = exact_cost("claude", b2)
    assert r.headers.get("x-llm-gateway-remaining-budget") in (usd(budget - c1 - c2), usd(budget - c1 - r2)), \
        r.headers
    # 3. gpt with a half micro-USD: 11 x 0.5 + 6 x 1.5 = 14.5 -> 15
    sg.script("openai", {"usage": scripted_usage("openai", 11, 6)})
    r = chat(sg, SPENDER, body_for("gpt", "third"))
    c3 = cost_micro(GPT_PRICE, 11, 6)
    assert c3 == 15 and r.headers.get("x-llm-gateway-response-cost") == "0.000015", r.headers
    # 4. a stream: no cost header (the headers leave before the usage is known)
    sg.script("openai", {"usage": scripted_usage("openai", 9, 4)})
    s = stream(sg, SPENDER, body_for("gpt", "fourth", stream=True))
    assert s.status == 200 and s.ends_with_done(), s.raw[-300:]
    assert "x-llm-gateway-response-cost" not in s.headers and "x-llm-gateway-remaining-budget" not in s.headers
    c4 = cost_micro(GPT_PRICE, 9, 4)

    spend = c1 + c2 + c3 + c4
    info = wait_info(sg, SPENDER, settled(spend))
    now_ms = int(time.time() * 1000)
    assert info["key_alias"] == "spender"
    assert info["spend_micro"] == spend and info["spend"] == pytest.approx(spend / 1e6, abs=1e-12), info
    assert info["max_budget"] == 1.0 and info["budget_duration"] == "1h"
    assert info["budget_reset_at"] == utc(now_ms - now_ms % 3_600_000 + 3_600_000), info
    assert info["remaining_budget"] == pytest.approx((budget - spend) / 1e6, abs=1e-12), info
    assert info["rpm_used"] == 4, info
    u1 = prompt_estimate(b1) + MAX_TOKENS
    assert info["tpm_used"] == u1 + 12 + 17 + 13, info
    assert info["parallel_requests"] == 0 and info["team"] is None and info["model_max_budget"] == {}
    # The master key reads the same
    assert key_info(sg, MASTER_KEY, "key_alias=spender")["info"]["spend_micro"] == spend
    # and the mocks agree: every answered request was charged exactly what its usage costs
    reported = []
    for p in ("openai", "anthropic"):
        for rec in sg.provider_requests(p):
            u = rec["response"]["usage"]
            price = GPT_PRICE if p == "openai" else CLAUDE_PRICE
            pr, co = (u["prompt_tokens"], u["completion_tokens"]) if p == "openai" else \
                (u["input_tokens"], u["output_tokens"])
            reported.append(cost_micro(price, pr, co))
    assert sum(reported) == spend


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_stream_is_charged_like_the_same_answer_not_streamed(sg, provider):
    key, alias = EQ[provider], ALIAS[provider]
    usage = scripted_usage(provider, 23, 9)
    cost = cost_micro(PRICES[alias], 23, 9)

    sg.script(provider, {"usage": usage, "repeat": 3})
    r = chat(sg, key, body_for(alias))
    assert r.status == 200, r.body[:300]
    assert r.headers.get("x-llm-gateway-response-cost") == usd(cost)
    assert r.json()["usage"] == {**r.json()["usage"], "prompt_tokens": 23, "completion_tokens": 9, "total_tokens": 32}
    wait_info(sg, key, settled(cost))

    # A stream from a client that did not ask for usage: charged the same, no usage chunk shown.
    s = stream(sg, key, body_for(alias, stream=True))
    assert s.status == 200 and s.error is None and s.ends_with_done(), s.raw[-300:]
    assert not s.errors(), s.errors()
    chunks = s.chunks()
    assert chunks and all(c["choices"] for c in chunks), "a usage-only chunk reached a client that did not ask"
    assert not [c for c in chunks if c.get("usage")], [c for c in chunks if c.get("usage")]
    assert "x-llm-gateway-response-cost" not in s.headers
    wait_info(sg, key, settled(2 * cost))
    upstream = sg.provider_requests(provider)[-1]["body"]
    if provider == "openai":
        assert upstream["stream"] is True
        assert upstream.get("stream_options") == {"include_usage": True}, upstream
    else:
        assert "stream_options" not in upstream, upstream

    # A client that asked gets the usage chunk (choices [] with the provider's counts), charged the same.
    s = stream(sg, key, body_for(alias, stream=True, stream_options={"include_usage": True}))
    assert s.status == 200 and s.ends_with_done(), s.raw[-300:]
    usage_chunks = [c for c in s.chunks() if c.get("usage")]
    assert len(usage_chunks) == 1, usage_chunks
    assert usage_chunks[0]["choices"] == [], usage_chunks[0]
    u = usage_chunks[0]["usage"]
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]) == (23, 9, 32), u
    info = wait_info(sg, key, settled(3 * cost))
    assert info["tpm_used"] in (3 * 32, 2 * 32, 32), info  # per minute: the requests may straddle one
    stats = all_stats(sg)
    assert usage_counter(stats, "key", f"eq-{provider}", "requests") == 3
    assert usage_counter(stats, "key", f"eq-{provider}", "tokens") == 3 * 32
    assert usage_counter(stats, "key", f"eq-{provider}", "cost_micro_usd") == 3 * cost


def test_team_budget_stops_a_key_that_still_has_its_own(sg):
    b = body_for("gpt")
    script_exact(sg, "gpt", b, repeat=5)
    for _ in range(2):
        r = chat(sg, SQUAD_A, b)
        assert r.status == 200, r.body[:300]
    # The team's remaining budget is the smaller one now.
    assert r.headers.get("x-llm-gateway-remaining-budget") == usd(TEAM_BUDGET - 2 * C_GPT), r.headers
    info = wait_info(sg, SQUAD_A, lambda i: i["team"]["spend_micro"] == 2 * C_GPT and settled()(i)
                     and i["team"]["reserved_micro"] == 0)
    assert info["spend_micro"] == 2 * C_GPT and info["remaining_budget"] > 0.99, info
    assert info["team"]["max_budget"] == pytest.approx(TEAM_BUDGET / 1e6) and info["team_id"] == "squad"
    assert info["team"]["budget_duration"] == "30d"
    now_ms = int(time.time() * 1000)
    period = 30 * 86_400_000
    assert info["team"]["budget_reset_at"] == utc(now_ms - now_ms % period + period), info["team"]

    for key, alias in ((SQUAD_A, "squad-a"), (SQUAD_B, "squad-b")):
        r = chat(sg, key, b)
        err = assert_openai_error(r, 429, "insufficient_quota", code="insufficient_quota")
        msg = err["message"]
        assert "team `squad`" in msg and f"key `{alias}`" in msg, msg
        assert f"${usd(2 * C_GPT)}" in msg and f"${usd(TEAM_BUDGET)}" in msg, msg
        assert "resets at " + info["team"]["budget_reset_at"] in msg, msg
        assert "retry-after" not in r.headers
    assert len(sg.provider_requests("openai")) == 2
    # squad-b spent nothing itself; the team did
    info_b = key_info(sg, SQUAD_B)["info"]
    assert info_b["spend_micro"] == 0 and info_b["team"]["spend_micro"] == 2 * C_GPT, info_b
    stats = all_stats(sg)
    assert usage_counter(stats, "key", "squad-a", "rejected_budget") == 1
    assert usage_counter(stats, "key", "squad-b", "rejected_budget") == 1
    assert usage_counter(stats, "key", "squad-a", "requests") == 2
    assert usage_counter(stats, "key", "squad-b", "requests") == 0
    # The master key is not held by the team's budget.
    assert chat(sg, MASTER_KEY, b).status == 200


def test_per_model_budget(sg):
    bg, bc = body_for("gpt"), body_for("claude")
    script_exact(sg, "gpt", bg, repeat=2)
    script_exact(sg, "claude", bc, repeat=2)
    r = chat(sg, PERMODEL, bg)
    assert r.status == 200, r.body[:300]
    assert r.headers.get("x-llm-gateway-remaining-budget") == usd(PERMODEL_GPT_BUDGET - C_GPT), r.headers
    info = wait_info(sg, PERMODEL, lambda i: i["model_max_budget"]["gpt"]["spend_micro"] == C_GPT and settled()(i))
    mb = info["model_max_budget"]["gpt"]
    assert mb["budget_limit"] == pytest.approx(PERMODEL_GPT_BUDGET / 1e6) and mb["time_period"] == "1d", mb
    now_ms = int(time.time() * 1000)
    assert mb["budget_reset_at"] == utc(now_ms - now_ms % 86_400_000 + 86_400_000), mb
    assert mb["reserved_micro"] == 0

    r = chat(sg, PERMODEL, bg)
    err = assert_openai_error(r, 429, "insufficient_quota", code="insufficient_quota")
    assert "key `permodel` on model `gpt`" in err["message"], err
    assert f"${usd(PERMODEL_GPT_BUDGET)}" in err["message"], err
    # other models still go
    r = chat(sg, PERMODEL, bc)
    assert r.status == 200, r.body[:300]
    assert r.headers.get("x-llm-gateway-remaining-budget") == usd(1_000_000 - C_GPT - C_CLAUDE), r.headers
    info = wait_info(sg, PERMODEL, settled(C_GPT + C_CLAUDE))
    assert info["model_max_budget"]["gpt"]["spend_micro"] == C_GPT
    assert "claude" not in info["model_max_budget"]
    assert len(sg.provider_requests("openai")) == 1 and len(sg.provider_requests("anthropic")) == 1
    assert usage_counter(all_stats(sg), "key", "permodel", "rejected_budget") == 1


def test_budget_window_resets(sg):
    """budget_duration 2s: windows are aligned to even seconds since the epoch."""
    b = body_for("gpt")
    script_exact(sg, "gpt", b, repeat=3)
    for _ in range(3):  # bounded: a window too short for the three steps (a slow machine) is retried
        now = int(time.time() * 1000)
        window_start = now - now % 2000 + 2000
        sleep_until_ms(window_start + 30)
        window_end = window_start + 2000
        info = key_info(sg, WINDOW)["info"]
        if info["spend_micro"] != 0:
            continue  # still the previous attempt's window
        r = chat(sg, WINDOW, b)
        assert r.status == 200, r.body[:300]
        assert r.headers.get("x-llm-gateway-remaining-budget") == "0.00", r.headers
        info = wait_info(sg, WINDOW, settled(C_GPT), timeout=1.0)
        refused = chat(sg, WINDOW, b)
        if int(time.time() * 1000) < window_end - 100:
            break
    else:
        pytest.fail("three 2 s windows in a row were too short for one request and one /key/info")
    assert info["budget_duration"] == "2s" and info["budget_reset_at"] == utc(window_end), info
    assert info["remaining_budget"] == 0, info
    err = assert_openai_error(refused, 429, "insufficient_quota", code="insufficient_quota")
    assert err["message"] == (f"Budget exceeded for key `window`: spend ${usd(C_GPT)} has reached max_budget "
                              f"${usd(C_GPT)}; the budget resets at {utc(window_end)}."), err
    n_before = len(sg.provider_requests("openai"))

    sleep_until_ms(window_end + 50)
    info = key_info(sg, WINDOW)["info"]
    assert info["spend_micro"] == 0 and info["budget_reset_at"] == utc(window_end + 2000), info
    r = chat(sg, WINDOW, b)
    assert r.status == 200, r.body[:300]
    assert len(sg.provider_requests("openai")) == n_before + 1
    wait_info(sg, WINDOW, settled(C_GPT), timeout=1.5)


def test_counters_after_a_scripted_sequence(sg):
    """Per-key and per-model counters (named as keys_helpers.usage_counter spells them, with the
    alias's `.`/`-` as `_`: `team.metered-1` -> `team_metered_1`), exact after a scripted sequence."""
    ensure_minute_left(5)
    stats = all_stats(sg)
    for kind, name in (("key", "team.metered-1"), ("model", "gpt.metered")):
        for what in ("requests", "tokens", "cost_micro_usd", "rejected_rpm", "rejected_budget"):
            assert usage_counter(stats, kind, name, what) == 0, (kind, name, what)
    body = chat_body("gpt.metered", user("count me"))
    sg.script("openai", {"usage": scripted_usage("openai", 10, 4)}, {"usage": scripted_usage("openai", 20, 6)},
              {"usage": scripted_usage("openai", 7, 3)}, {"status": 400})
    assert chat(sg, METERED, body).status == 200
    assert chat(sg, METERED, body, via="x-api-key").status == 200
    s = stream(sg, METERED, {**body, "stream": True})
    assert s.status == 200 and s.ends_with_done()
    r = chat(sg, METERED, body)
    assert_openai_error(r, 400)
    assert r.headers.get("x-llm-gateway-response-cost") in (None, "0.00"), r.headers
    for _ in range(2):
        r = chat(sg, METERED, body)
        err = assert_openai_error(r, 429, "rate_limit_error", code="rate_limit_exceeded")
        assert "rpm_limit 4" in err["message"], err
        left = 60 - time.time() % 60
        assert abs(int(r.headers["retry-after"]) - left) <= 1.5, (r.headers, left)
    assert chat(sg, METERED, chat_body("gpt")).status == 403  # not its model: no counter
    assert len(sg.provider_requests("openai")) == 4

    cost = cost_micro(GPT_PRICE, 10, 4) + cost_micro(GPT_PRICE, 20, 6) + cost_micro(GPT_PRICE, 7, 3)
    info = wait_info(sg, METERED, settled(cost))
    assert info["rpm_used"] == 4 and info["tpm_used"] == 50, info
    stats = all_stats(sg)
    want = {"requests": 4, "tokens": 50, "cost_micro_usd": cost, "rejected_rpm": 2, "rejected_budget": 0,
            "rejected_tpm": 0, "rejected_parallel": 0}
    for kind, name in (("key", "team.metered-1"), ("model", "gpt.metered")):
        got = {what: usage_counter(stats, kind, name, what) for what in want}
        assert got == want, (kind, name, got)
    # the sanitised names are the ones that exist
    assert any("team_metered_1" in n for n in stats) and not any("team.metered-1" in n for n in stats)
    assert any("gpt_metered" in n for n in stats) and not any("gpt.metered" in n for n in stats)


def test_remaining_budget_header_when_the_cost_is_below_the_reservation(sg):
    """A request reserving far more than it costs (max_tokens 1000, 2 tokens used): its
    remaining-budget header is the budget minus the spend *including this request's cost*, with
    nothing reserved for it any more, whether or not the counter service has applied its usage yet."""
    budget = 1_000_000
    body = chat_body("gpt", user("tiny"), max_tokens=1000)
    reservation = cost_micro(GPT_PRICE, prompt_estimate(body), 1000)
    cost = cost_micro(GPT_PRICE, 1, 1)
    assert reservation > 500 * cost
    sg.script("openai", {"usage": scripted_usage("openai", 1, 1), "repeat": 5})
    got = []
    for i in range(1, 6):  # sequential: nothing else in flight for this key
        r = chat(sg, REMAINING, body)
        assert r.status == 200 and r.headers.get("x-llm-gateway-response-cost") == usd(cost), r.headers
        got.append(r.headers.get("x-llm-gateway-remaining-budget"))
    want = [usd(budget - i * cost) for i in range(1, 6)]
    assert got == want, (f"remaining-budget headers {got}, expected {want} (the request's own reservation "
                         f"{usd(reservation)} still counted: {usd(budget - cost - reservation)})")
    wait_info(sg, REMAINING, settled(5 * cost))
