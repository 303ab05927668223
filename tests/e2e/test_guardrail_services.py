"""Guardrail services in real Envoy, through the official openai SDK: LiteLLM's generic
guardrail API and the OpenAI moderation API, played by a local HTTP server speaking both
(tests/mocks/mock_guardrail.py), called by the filter with dispatch_http_call before any
provider sees the request. What the service received, what the provider received, and the
failure policy: a service that is down or slow refuses with 503 (fail closed, the default),
or lets the request through and counts it (fail open)."""

from __future__ import annotations

import openai
import pytest

from conftest import HTTP_TIMEOUT, dead_port, mock_cluster_map, mock_deployment
from keys_helpers import vkey
from mock_guardrail import GuardrailMock

APP_KEY = "sk-app-guarded-0001"


def generic(name: str, base: str, **params) -> dict:
    return {"guardrail_name": name, "litellm_params": {
        "guardrail": "generic_guardrail_api", "mode": "pre_call", "api_base": base,
        "api_key": "os.environ/GUARD_KEY", "headers": {"x-tenant": "acme"},
        "additional_provider_specific_params": {"threshold": 0.8}, **params}}


@pytest.fixture(scope="module")
def guard():
    with GuardrailMock() as g:
        yield g


@pytest.fixture(scope="module")
def guarded(start_gateway, mocks, guard):
    base = f"http://127.0.0.1:{guard.port}"
    dead = f"http://127.0.0.1:{dead_port()}"
    cfg = {"model_list": [mock_deployment(mocks, "gpt", "openai/gpt-4o-mini"),
                          mock_deployment(mocks, "claude", "anthropic/claude-sonnet-4-5")],
           "guardrails": [
               generic("svc", base, timeout=1),
               generic("svc-down", dead),
               generic("svc-down-open", dead, unreachable_fallback="fail_open"),
               generic("svc-out", base, mode="post_call"),
               {"guardrail_name": "pii", "litellm_params": {
                   "guardrail": "presidio", "mode": "pre_call",
                   "presidio_analyzer_api_base": base, "presidio_anonymizer_api_base": base,
                   "pii_entities_config": {"PERSON": "MASK", "EMAIL_ADDRESS": "MASK", "US_SSN": "BLOCK"}}},
               {"guardrail_name": "mod", "litellm_params": {
                   "guardrail": "openai_moderation", "mode": "during_call", "api_base": f"{base}/v1",
                   "api_key": "os.environ/MOD_KEY"}},
           ],
           "virtual_keys": [vkey(APP_KEY, "app")],
           "gateway": {"clusters": {**mock_cluster_map(mocks), f"127.0.0.1:{guard.port}": "guard"}}}
    env = {"MOCK_OPENAI_KEY": "sk-oai-test", "MOCK_ANTHROPIC_KEY": "sk-ant-test",
           "GUARD_KEY": "gk-secret", "MOD_KEY": "sk-mod-secret"}
    with start_gateway(cfg, extra_clusters={"guard": guard.port}, env=env, name="guardrail-services") as gw:
        yield gw


def ask(gw, guardrails: list[str], text: str, model: str = "gpt"):
    client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=APP_KEY, max_retries=0, timeout=HTTP_TIMEOUT)
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], extra_body={"guardrails": guardrails})


def provider_text(gw, provider: str) -> str:
    content = gw.provider_requests(provider)[-1]["body"]["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def test_the_service_sees_the_texts_and_none_lets_the_request_through(guarded, guard):
    guarded.reset()
    guard.reset()
    raw = ask(guarded, ["svc"], "hello there")
    assert raw.parse().choices[0].message.content
    assert raw.headers.get("x-litellm-applied-guardrails") == "svc"
    [call] = guard.requests()
    assert call["path"] == "/beta/litellm_basic_guardrail_api"
    assert call["headers"]["x-api-key"] == "gk-secret" and call["headers"]["x-tenant"] == "acme"
    body = call["body"]
    assert body["texts"] == ["hello there"] and body["input_type"] == "request"
    assert body["request_data"]["user_api_key_alias"] == "app"
    assert body["additional_provider_specific_params"] == {"threshold": 0.8}
    assert provider_text(guarded, "openai") == "hello there"


@pytest.mark.parametrize("alias, provider", [("gpt", "openai"), ("claude", "anthropic")])
def test_an_intervention_is_what_the_provider_receives(guarded, guard, alias, provider):
    guarded.reset()
    raw = ask(guarded, ["svc"], "my name is Jane Doe", model=alias)
    assert raw.parse().choices[0].message.content
    assert provider_text(guarded, provider) == "my name is <PERSON>"


def test_a_block_is_a_400_and_the_provider_never_hears_of_it(guarded):
    guarded.reset()
    with pytest.raises(openai.BadRequestError) as e:
        ask(guarded, ["svc"], "please BLOCKME now")
    assert e.value.body["code"] == "content_policy_violation"
    assert "policy: demo block" in e.value.body["message"]
    assert guarded.provider_requests("openai") == []
    stats = guarded.admin("/stats?filter=llm_gateway.guardrail").text
    assert "llm_gateway.guardrail.blocked.guardrail.svc: 1" in stats, stats


@pytest.mark.parametrize("guardrail, text", [("svc-down", "hi"), ("svc", "SLOWME please"), ("svc", "GARBAGE")])
def test_a_service_down_slow_or_broken_fails_closed_with_503(guarded, guardrail, text):
    guarded.reset()
    with pytest.raises(openai.APIStatusError) as e:
        ask(guarded, [guardrail], text)
    assert e.value.status_code == 503, e.value
    assert e.value.body["code"] == "guardrail_unavailable", e.value.body
    assert guarded.provider_requests("openai") == []


def test_fail_open_lets_the_request_through_and_counts_it(guarded):
    guarded.reset()
    raw = ask(guarded, ["svc-down-open"], "hello anyway")
    assert raw.parse().choices[0].message.content
    assert provider_text(guarded, "openai") == "hello anyway"
    stats = guarded.admin("/stats?filter=llm_gateway.guardrail.errored").text
    # (metric labels have `-` as `_`)
    assert "llm_gateway.guardrail.errored.guardrail.svc_down_open: 1" in stats, stats


def test_openai_moderation_blocks_flagged_text_and_passes_the_rest(guarded, guard):
    guarded.reset()
    guard.reset()
    with pytest.raises(openai.BadRequestError) as e:
        ask(guarded, ["mod"], "something nasty")
    assert "violence" in e.value.body["message"]
    [call] = guard.requests()
    assert call["path"] == "/v1/moderations"
    assert call["headers"]["authorization"] == "Bearer sk-mod-secret"
    assert call["body"] == {"model": "omni-moderation-latest", "input": ["something nasty"]}
    assert guarded.provider_requests("openai") == []
    assert ask(guarded, ["mod"], "something kind").parse().choices[0].message.content


@pytest.mark.parametrize("alias, provider", [("gpt", "openai"), ("claude", "anthropic")])
def test_presidio_masks_what_its_analyzer_finds(guarded, guard, alias, provider):
    guarded.reset()
    guard.reset()
    raw = ask(guarded, ["pii"], "Grüße, Jane Doe (jane.doe@example.com)", model=alias)
    assert raw.parse().choices[0].message.content
    assert provider_text(guarded, provider) == "Grüße, <PERSON> (<EMAIL_ADDRESS>)"
    [call] = guard.requests()
    assert call["path"] == "/analyze"
    assert sorted(call["body"]["entities"]) == ["EMAIL_ADDRESS", "PERSON", "US_SSN"]


def test_presidio_blocks_an_entity_configured_to_block(guarded):
    guarded.reset()
    with pytest.raises(openai.BadRequestError) as e:
        ask(guarded, ["pii"], "my ssn is 078-05-1120")
    assert "US_SSN" in e.value.body["message"] and "078-05-1120" not in e.value.body["message"]
    assert guarded.provider_requests("openai") == []


@pytest.mark.parametrize("alias, provider", [("gpt", "openai"), ("claude", "anthropic")])
def test_a_post_call_service_rewrites_the_answer_the_client_gets(guarded, guard, alias, provider):
    guarded.reset()
    guard.reset()
    guarded.script(provider, {"text": "Please call Jane Doe tomorrow."})
    raw = ask(guarded, ["svc-out"], "who should I call?", model=alias)
    assert raw.parse().choices[0].message.content == "Please call <PERSON> tomorrow."
    [call] = guard.requests()
    assert call["body"]["input_type"] == "response"
    assert call["body"]["texts"] == ["Please call Jane Doe tomorrow."]
    assert provider_text(guarded, provider) == "who should I call?"


def test_a_post_call_service_block_is_a_400_and_a_stream_is_refused_up_front(guarded):
    guarded.reset()
    guarded.script("openai", {"text": "BLOCKME says the model"})
    with pytest.raises(openai.BadRequestError) as e:
        ask(guarded, ["svc-out"], "anything")
    assert e.value.body["code"] == "content_policy_violation"
    client = openai.OpenAI(base_url=f"{guarded.base_url}/v1", api_key=APP_KEY, max_retries=0, timeout=HTTP_TIMEOUT)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt", stream=True, messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"guardrails": ["svc-out"]})
    assert e.value.body["code"] == "guardrail_needs_whole_answer"
