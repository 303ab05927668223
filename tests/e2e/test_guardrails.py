"""The built-in content filter (LiteLLM's `litellm_content_filter`, pre_call) in real Envoy,
through the official openai SDK: PII masked before the provider sees it (the mock asserts what
it received), a blocked pattern refused with 400 content_policy_violation and nothing upstream,
the applied guardrails named in LiteLLM's response header and in the metrics."""

from __future__ import annotations

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
        model=alias, messages=[{"role": "user", "content": "Reach me at jane@example.com, card 4111-1111-1111-1111. Danke schön!"}])
    assert raw.headers.get("x-litellm-applied-guardrails") == "pii"
    assert raw.parse().choices[0].message.content
    got = filtered.only_request(provider)["body"]
    text = got["messages"][-1]["content"]
    text = text if isinstance(text, str) else "".join(p.get("text", "") for p in text)
    assert "jane@example.com" not in text and "4111" not in text, text
    assert "[EMAIL_REDACTED]" in text and "[CREDIT_CARD_REDACTED]" in text and "Danke schön!" in text, text


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
