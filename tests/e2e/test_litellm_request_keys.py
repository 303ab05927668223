"""LiteLLM's own request-level keys in real Envoy, through the official openai SDK (its
`extra_body`, as LiteLLM's docs show them): none reaches a provider (the mocks record what they
got), `drop_params` in the body drops what Anthropic cannot take, and what LiteLLM's proxy refuses
in a body (an `api_base`, a mock response) is a 400 naming the key, nothing sent upstream."""

from __future__ import annotations

import openai
import pytest

from conftest import HTTP_TIMEOUT, mock_cluster_map, mock_deployment

LITELLM_ONLY = {"drop_params": True, "metadata": {"generation_name": "g", "trace_id": "t"},
                "tags": ["team-a"], "caching": False, "cache": {"no-cache": True},
                "litellm_session_id": "s-1", "num_retries": 0}


@pytest.fixture(scope="module")
def keyed(start_gateway, mocks):
    cfg = {"model_list": [mock_deployment(mocks, "gpt", "openai/gpt-4o-mini"),
                          mock_deployment(mocks, "claude", "anthropic/claude-sonnet-4-5")],
           "gateway": {"clusters": mock_cluster_map(mocks)}}
    with start_gateway(cfg, env={"MOCK_OPENAI_KEY": "sk-oai-test", "MOCK_ANTHROPIC_KEY": "sk-ant-test"},
                       name="litellm-keys") as gw:
        yield gw


def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key="client-key", max_retries=0,
                         timeout=HTTP_TIMEOUT)


@pytest.mark.parametrize("alias, provider", [("gpt", "openai"), ("claude", "anthropic")])
def test_no_litellm_key_reaches_the_provider(keyed, alias, provider):
    keyed.reset()
    answer = sdk(keyed).chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "hi"}], temperature=0.3,
        extra_body={**LITELLM_ONLY, "logit_bias": {"50256": -100}})
    assert answer.choices[0].message.content
    sent = keyed.only_request(provider)["body"]
    for k in LITELLM_ONLY:
        assert k not in sent, (k, sent)
    assert sent["temperature"] == 0.3
    if provider == "anthropic":
        assert "logit_bias" not in sent, "dropped: Anthropic has no logit_bias"
    else:
        assert sent["logit_bias"] == {"50256": -100}


@pytest.mark.parametrize("key, value", [("api_base", "http://attacker.example"),
                                        ("mock_response", "hello")])
def test_what_litellm_refuses_in_a_body_is_a_400_naming_it(keyed, key, value):
    keyed.reset()
    with pytest.raises(openai.BadRequestError) as e:
        sdk(keyed).chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "hi"}], extra_body={key: value})
    assert e.value.body["param"] == key, e.value.body
    assert keyed.requests("openai") == []
