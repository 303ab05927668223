"""The built-in content filter (LiteLLM's `litellm_content_filter`, pre_call) in real Envoy,
through the official openai SDK: PII masked before the provider sees it (the mock asserts what
it received), a blocked pattern refused with 400 content_policy_violation and nothing upstream,
the applied guardrails named in LiteLLM's response header and in the metrics."""

from __future__ import annotations

import json

import openai
import pytest

from conftest import HTTP_TIMEOUT, mock_cluster_map, mock_deployment

GUARDRAILS = [{
    "guardrail_name": "pii",
    "litellm_params": {
        "guardrail": "litellm_content_filter", "mode": "pre_call", "default_on": True,
        "patterns": [
            {"pattern_type": "prebuilt", "pattern_name": "email", "action": "MASK"},
            {"pattern_type": "prebuilt", "pattern_name": "credit_card", "action": "MASK"},
            {"pattern_type": "prebuilt", "pattern_name": "us_ssn", "action": "BLOCK"},
            {"pattern_type": "regex", "pattern": r"\bEMP-\d{5}\b", "name": "employee_id", "action": "MASK"},
        ],
    },
}]


@pytest.fixture(scope="module")
def filtered(start_gateway, mocks):
    cfg = {"model_list": [mock_deployment(mocks, "gpt", "openai/gpt-4o-mini"),
                          mock_deployment(mocks, "claude", "anthropic/claude-sonnet-4-5")],
           "guardrails": GUARDRAILS,
           "gateway": {"clusters": mock_cluster_map(mocks)}}
    with start_gateway(cfg, env={"MOCK_OPENAI_KEY": "sk-oai-test", "MOCK_ANTHROPIC_KEY": "sk-ant-test"},
                       name="guardrails") as gw:
        yield gw


def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key="client-key", max_retries=0,
                         timeout=HTTP_TIMEOUT)


@pytest.mark.parametrize("alias, provider", [("gpt", "openai"), ("claude", "anthropic")])
def test_pii_is_masked_before_the_provider_sees_it(filtered, alias, provider):
    filtered.reset()
    raw = sdk(filtered).chat.completions.with_raw_response.create(
        model=alias, messages=[{"role": "user", "content": "Reach me at jane@example.com, card 4111-1111-1111-1111, badge emp-40213. Danke schön!"}])
    assert raw.headers.get("x-litellm-applied-guardrails") == "pii"
    assert raw.parse().choices[0].message.content
    got = filtered.only_request(provider)["body"]
    text = got["messages"][-1]["content"]
    text = text if isinstance(text, str) else "".join(p.get("text", "") for p in text)
    assert "jane@example.com" not in text and "4111" not in text, text
    assert "[EMAIL_REDACTED]" in text and "[CREDIT_CARD_REDACTED]" in text and "Danke schön!" in text, text
    assert "40213" not in text and "[EMPLOYEE_ID_REDACTED]" in text, text


def test_a_blocked_pattern_is_refused_and_nothing_goes_upstream(filtered):
    filtered.reset()
    with pytest.raises(openai.BadRequestError) as e:
        sdk(filtered).chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "my SSN is 123-45-6789"}])
    assert e.value.status_code == 400
    body = e.value.body
    assert body["code"] == "content_policy_violation", body
    assert "`pii`" in body["message"] and "123-45-6789" not in body["message"], body
    assert filtered.requests("openai") == []
    stats = filtered.admin("/stats?filter=llm_gateway.guardrail").text
    assert "llm_gateway.guardrail.blocked.guardrail.pii: 1" in stats, stats
    assert "llm_gateway.guardrail.masked.guardrail.pii" in stats, stats


# --- post_call (the answer), per-key guardrails, who may switch one off -----------------------

OUTPUT_GUARDRAILS = [
    {"guardrail_name": "out", "litellm_params": {
        "guardrail": "litellm_content_filter", "mode": "post_call", "default_on": True,
        "patterns": [
            {"pattern_type": "prebuilt", "pattern_name": "email", "action": "MASK"},
            {"pattern_type": "prebuilt", "pattern_name": "us_ssn", "action": "BLOCK"},
        ],
    }},
    {"guardrail_name": "secrets", "litellm_params": {
        "guardrail": "litellm_content_filter", "mode": "during_call",
        "patterns": [{"pattern_type": "prebuilt", "pattern_name": "api_key", "action": "BLOCK"}],
    }},
    {"guardrail_name": "optional", "litellm_params": {
        "guardrail": "litellm_content_filter", "mode": "pre_call", "default_on": True,
        "blocked_words": [{"keyword": "draft", "action": "MASK"}],
    }},
]

STRICT, LOOSE = "sk-gw-strict-0001", "sk-gw-loose-0002"


@pytest.fixture(scope="module")
def output_filtered(start_gateway, mocks):
    from keys_helpers import vkey
    cfg = {"model_list": [mock_deployment(mocks, "gpt", "openai/gpt-4o-mini"),
                          mock_deployment(mocks, "claude", "anthropic/claude-sonnet-4-5")],
           "guardrails": OUTPUT_GUARDRAILS,
           "virtual_keys": [vkey(STRICT, "strict", guardrails=["secrets"]), vkey(LOOSE, "loose")],
           "gateway": {"clusters": mock_cluster_map(mocks), "guardrails_caller_may_disable": ["optional"]}}
    with start_gateway(cfg, env={"MOCK_OPENAI_KEY": "sk-oai-test", "MOCK_ANTHROPIC_KEY": "sk-ant-test"},
                       name="guardrails-output") as gw:
        yield gw


def keyed_sdk(gw, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=HTTP_TIMEOUT)


def openai_sse(pieces: list[str]) -> list[str]:
    def ev(delta: dict, finish=None) -> str:
        return "data: " + json.dumps({"id": "chatcmpl-m", "object": "chat.completion.chunk", "created": 1,
                                      "model": "gpt-4o-mini", "choices": [
                                          {"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"
    return ([ev({"role": "assistant", "content": ""})] + [ev({"content": p}) for p in pieces]
            + [ev({}, "stop"), "data: [DONE]\n\n"])


@pytest.mark.parametrize("alias, provider", [("gpt", "openai"), ("claude", "anthropic")])
def test_post_call_masks_the_answer_not_the_request(output_filtered, alias, provider):
    gw = output_filtered
    gw.reset()
    gw.script(provider, {"text": "Write to jane.doe@example.com today."})
    raw = keyed_sdk(gw, LOOSE).chat.completions.with_raw_response.create(
        model=alias, messages=[{"role": "user", "content": "Who? (ask jane.doe@example.com)"}])
    assert raw.parse().choices[0].message.content == "Write to [EMAIL_REDACTED] today."
    assert raw.headers.get("x-litellm-applied-guardrails") == "out,optional"
    sent = gw.only_request(provider)["body"]["messages"][-1]["content"]
    sent = sent if isinstance(sent, str) else "".join(p.get("text", "") for p in sent)
    assert "jane.doe@example.com" in sent, "post_call leaves the request alone"


def test_post_call_masks_a_stream_split_inside_the_address(output_filtered):
    gw = output_filtered
    gw.reset()
    gw.script("openai", {"sse_chunks": openai_sse(["Write to jane.d", "oe@exa", "mple.com", " today, ok?"])})
    stream = keyed_sdk(gw, LOOSE).chat.completions.create(
        model="gpt", stream=True, messages=[{"role": "user", "content": "who?"}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Write to [EMAIL_REDACTED] today, ok?", text


def test_post_call_block_ends_the_stream_before_the_span(output_filtered):
    gw = output_filtered
    gw.reset()
    gw.script("openai", {"sse_chunks": openai_sse(["The number is 078-0", "5-1120 and", " more after it"])})
    got = []
    with pytest.raises(openai.APIError) as e:
        for c in keyed_sdk(gw, LOOSE).chat.completions.create(
                model="gpt", stream=True, messages=[{"role": "user", "content": "ssn?"}]):
            got.append(c.choices[0].delta.content or "" if c.choices else "")
    seen = "".join(got)
    assert "078" not in seen and "more" not in seen, seen
    assert "content_policy_violation" in str(e.value.body or e.value.message), e.value
    stats = gw.admin("/stats?filter=llm_gateway.guardrail").text
    assert "llm_gateway.guardrail.blocked.guardrail.out: 1" in stats, stats


def test_a_keys_guardrail_runs_only_for_that_key(output_filtered):
    gw = output_filtered
    gw.reset()
    leaked = [{"role": "user", "content": "my key is sk-proj-abcdefghijklmnopqrstuvwx"}]
    with pytest.raises(openai.BadRequestError) as e:
        keyed_sdk(gw, STRICT).chat.completions.create(model="gpt", messages=leaked)
    assert e.value.body["code"] == "content_policy_violation"
    assert "`secrets`" in e.value.body["message"]
    assert gw.provider_requests("openai") == []
    assert keyed_sdk(gw, LOOSE).chat.completions.create(model="gpt", messages=leaked).choices


def test_a_caller_switches_off_only_what_the_operator_allows(output_filtered):
    gw = output_filtered
    gw.reset()
    gw.script("openai", {"text": "mail jane@example.com"})
    raw = keyed_sdk(gw, LOOSE).chat.completions.with_raw_response.create(
        model="gpt", messages=[{"role": "user", "content": "a draft"}],
        extra_body={"guardrails": {"optional": False, "out": False}})
    # `optional` may be switched off: the word reaches the provider; `out` may not: still masked.
    assert raw.parse().choices[0].message.content == "mail [EMAIL_REDACTED]"
    assert raw.headers.get("x-litellm-applied-guardrails") == "out"
    body = gw.provider_requests("openai")[-1]["body"]
    assert body["messages"][0]["content"] == "a draft" and "guardrails" not in body, body
