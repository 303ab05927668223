"""Issue 5, mid-stream enforcement (`gateway.enforce_mid_stream: true`, here with
`budget_reservation: false`, where it matters): a stream whose key runs out of budget while it is
generating is ended cleanly at the event whose running cost (prompt estimate + streamed text / 4
tokens at the output price) reaches what the budget had left: a final chunk with
`finish_reason: "length"` and the charged usage, then `[DONE]`; the request is charged that usage.

  long         openai/gpt-mock-long          $0 / $1 per Mtok: 1 micro-USD per completion token
  long-claude  anthropic/claude-mock-long    the same prices
"""

from __future__ import annotations

import json

import pytest

from conftest import assert_openai_error, attach_gateway, chat_body, mock_deployment, user
from keys_helpers import (Price, all_stats, chat, cost_micro, keyed_config, scripted_usage, settled, stream,
                          usage_counter, vkey, wait_info)

PRICE = Price(0, 1_000_000)
KEYS = {"openai": "sk-mid-oai-Ss11Tt22", "anthropic": "sk-mid-ant-Uu33Vv44"}
ALIAS = {"openai": "long", "anthropic": "long-claude"}
BUDGET = 100  # micro-USD
SPENT_BEFORE = 40
WORDS = [f"w{i:04d}" for i in range(400)]
LONG_TEXT = " ".join(WORDS)  # 400 words of 5 letters (+ a space): about 600 tokens by the 4-byte estimate


@pytest.fixture(scope="module")
def midstream_gateway(start_gateway, mocks):
    models = [mock_deployment(mocks, "long", "openai/gpt-mock-long", **PRICE.params()),
              mock_deployment(mocks, "long-claude", "anthropic/claude-mock-long", **PRICE.params())]
    keys = [vkey(KEYS[p], f"mid-{p}", max_budget=BUDGET / 1e6) for p in ("openai", "anthropic")]
    cfg = keyed_config(mocks, keys, master=False, models=models,
                       gateway={"budget_reservation": False, "enforce_mid_stream": True})
    with start_gateway(cfg, name="budget-midstream") as g:
        yield g


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_stream_is_ended_cleanly_at_the_budget(midstream_gateway, request, provider):
    gw = attach_gateway(midstream_gateway, request)
    key, alias = KEYS[provider], ALIAS[provider]
    # 40 of the 100 micro-USD spent first: the stream may spend what is left, 60
    gw.script(provider, {"usage": scripted_usage(provider, 3, SPENT_BEFORE)})
    r = chat(gw, key, chat_body(alias, user("warm up")))
    assert r.status == 200 and r.headers.get("x-llm-gateway-response-cost") == "0.00004", r.headers
    wait_info(gw, key, settled(SPENT_BEFORE))
    left = BUDGET - SPENT_BEFORE

    gw.script(provider, {"text": LONG_TEXT, "chunk_delay_ms": 1})
    s = stream(gw, key, chat_body(alias, user("Tell me everything"), stream=True), deadline=15)
    assert s.error is None and s.status == 200, (s.error, s.raw[:300])
    assert not s.errors(), s.errors()
    items = s.data_items()
    assert items[-1] == "[DONE]" and items.count("[DONE]") == 1, items[-3:]
    chunks = s.chunks()
    last = chunks[-1]
    assert [c.get("finish_reason") for c in last["choices"]] == ["length"], last
    usage = last.get("usage")
    assert usage and {"prompt_tokens", "completion_tokens"} <= set(usage), last
    finishes = [c["finish_reason"] for ch in chunks for c in ch.get("choices") or [] if c.get("finish_reason")]
    assert finishes == ["length"], finishes
    content = s.content()
    assert content and LONG_TEXT.startswith(content) and len(content) < len(LONG_TEXT) // 2, content[-80:]
    # the running cost reached what was left at the last event, not before
    completion = usage["completion_tokens"]
    assert completion == -(-len(content.encode()) // 4), (completion, len(content))
    charged = cost_micro(PRICE, usage["prompt_tokens"], completion)
    pieces = [c["delta"]["content"] for ch in chunks for c in ch.get("choices") or []
              if (c.get("delta") or {}).get("content")]
    before_last = len("".join(pieces[:-1]).encode())
    previous = cost_micro(PRICE, usage["prompt_tokens"], -(-before_last // 4))
    assert previous < left <= charged <= left + 2, (previous, left, charged)

    info = wait_info(gw, key, settled(SPENT_BEFORE + charged))
    assert info["remaining_budget"] == 0, info
    r = chat(gw, key, chat_body(alias))
    assert_openai_error(r, 429, "insufficient_quota", code="insufficient_quota")
    assert usage_counter(all_stats(gw), "key", f"mid-{provider}", "cost_micro_usd") == SPENT_BEFORE + charged
    assert json.loads(items[-2])["choices"][0]["finish_reason"] == "length"
