"""Deployment defaults in real Envoy, through the official openai SDK: the model parameters a
LiteLLM config writes in a deployment's `litellm_params` (`temperature`, `max_tokens`, `stop`,
`top_k` ...) reach the provider with every call unless the request sets them (the request wins),
translated for native providers; `extra_headers` reach the provider as headers (an environment
reference resolved), `extra_body` members the native body; `router_settings.default_litellm_params`
applies to every deployment. The mocks record what they got."""

from __future__ import annotations

import openai
import pytest

from conftest import HTTP_TIMEOUT, mock_cluster_map, mock_deployment


@pytest.fixture(scope="module")
def defaulted(start_gateway, mocks):
    cfg = {"model_list": [
        mock_deployment(mocks, "gpt", "openai/gpt-4o-mini", temperature=0.1, max_tokens=64,
                        stop=["END"], extra_headers={"X-Tenant": "os.environ/TENANT_ID"},
                        extra_body={"safe_prompt": True}),
        mock_deployment(mocks, "claude", "anthropic/claude-sonnet-4-5", max_tokens=100, top_k=5,
                        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"})],
        "router_settings": {"default_litellm_params": {"presence_penalty": 0.5}},
        "litellm_settings": {"drop_params": True},
        "gateway": {"clusters": mock_cluster_map(mocks)}}
    env = {"MOCK_OPENAI_KEY": "sk-oai-test", "MOCK_ANTHROPIC_KEY": "sk-ant-test", "TENANT_ID": "t-42"}
    with start_gateway(cfg, env=env, name="deployment-defaults") as gw:
        yield gw


def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key="client-key", max_retries=0,
                         timeout=HTTP_TIMEOUT)


def test_openai_compatible_deployment_sends_its_defaults(defaulted):
    defaulted.reset()
    answer = sdk(defaulted).chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    got = defaulted.only_request("openai")
    sent = got["body"]
    assert (sent["temperature"], sent["max_tokens"], sent["stop"]) == (0.1, 64, ["END"])
    assert sent["presence_penalty"] == 0.5, "router_settings.default_litellm_params"
    assert sent["safe_prompt"] is True, "extra_body"
    assert got["headers"]["x-tenant"] == "t-42"
    assert got["headers"]["authorization"] == "Bearer sk-oai-test"


def test_the_requests_own_values_win(defaulted):
    defaulted.reset()
    sdk(defaulted).chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "hi"}], temperature=0.9, max_tokens=7,
        stop="STOP")
    sent = defaulted.only_request("openai")["body"]
    assert (sent["temperature"], sent["max_tokens"], sent["stop"]) == (0.9, 7, "STOP")


def test_anthropic_deployment_translates_its_defaults(defaulted):
    defaulted.reset()
    answer = sdk(defaulted).chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    got = defaulted.only_request("anthropic")
    sent = got["body"]
    assert (sent["max_tokens"], sent["top_k"]) == (100, 5)
    assert "presence_penalty" not in sent, "Anthropic has none: dropped (drop_params)"
    assert got["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert got["headers"]["x-api-key"] == "sk-ant-test"


def test_streamed_request_gets_the_defaults_too(defaulted):
    defaulted.reset()
    stream = sdk(defaulted).chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    sent = defaulted.only_request("anthropic")["body"]
    assert (sent["max_tokens"], sent["top_k"], sent["stream"]) == (100, 5, True)
