"""`output_parse_pii` in real Envoy, through the official openai SDK: what a guardrail masks in
the request reaches the provider as a numbered token (the mock provider records it, and echoes
it back as models do), and the client gets its own value back where the answer carries the
token, in whole answers, in streams (the mocks split their text across many chunks) and in tool
call arguments. The built-in content filter and Presidio (tests/mocks/mock_guardrail.py plays
its analyzer)."""

from __future__ import annotations

import json

import openai
import pytest

from conftest import HTTP_TIMEOUT, mock_cluster_map, mock_deployment
from mock_guardrail import GuardrailMock

EMAIL = "jane.doe@example.com"


@pytest.fixture(scope="module")
def guard():
    with GuardrailMock() as g:
        yield g


@pytest.fixture(scope="module")
def unmasking(start_gateway, mocks, guard):
    base = f"http://127.0.0.1:{guard.port}"
    cfg = {"model_list": [mock_deployment(mocks, "gpt", "openai/gpt-4o-mini"),
                          mock_deployment(mocks, "claude", "anthropic/claude-sonnet-4-5")],
           "guardrails": [
               {"guardrail_name": "pii", "litellm_params": {
                   "guardrail": "litellm_content_filter", "mode": "pre_call", "default_on": True,
                   "output_parse_pii": True,
                   "patterns": [{"pattern_type": "prebuilt", "pattern_name": "email", "action": "MASK"}]}},
               {"guardrail_name": "presidio", "litellm_params": {
                   "guardrail": "presidio", "mode": "pre_call",
                   "presidio_analyzer_api_base": base, "presidio_anonymizer_api_base": base,
                   "pii_entities_config": {"PERSON": "MASK"}}},
           ],
           # LiteLLM's global switch, for the Presidio entry.
           "litellm_settings": {"output_parse_pii": True},
           "gateway": {"clusters": {**mock_cluster_map(mocks), f"127.0.0.1:{guard.port}": "guard"}}}
    with start_gateway(cfg, extra_clusters={"guard": guard.port},
                       env={"MOCK_OPENAI_KEY": "sk-oai-test", "MOCK_ANTHROPIC_KEY": "sk-ant-test"},
                       name="guardrail-unmask") as gw:
        yield gw


def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key="client-key", max_retries=0,
                         timeout=HTTP_TIMEOUT)


def provider_text(gw, provider: str) -> str:
    content = gw.only_request(provider)["body"]["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


@pytest.mark.parametrize("alias, provider", [("gpt", "openai"), ("claude", "anthropic")])
def test_the_provider_gets_a_token_and_the_client_its_own_address(unmasking, alias, provider):
    unmasking.reset()
    answer = sdk(unmasking).chat.completions.create(
        model=alias, messages=[{"role": "user", "content": f"Mail {EMAIL}, please."}])
    assert provider_text(unmasking, provider) == "Mail [EMAIL_REDACTED_1], please."
    text = answer.choices[0].message.content
    assert text.endswith(f"You said: Mail {EMAIL}, please."), text


@pytest.mark.parametrize("alias, provider", [("gpt", "openai"), ("claude", "anthropic")])
def test_a_stream_gets_the_address_back_and_never_a_piece_of_the_token(unmasking, alias, provider):
    unmasking.reset()
    pieces = [c.choices[0].delta.content or "" for c in sdk(unmasking).chat.completions.create(
        model=alias, stream=True, messages=[{"role": "user", "content": f"Mail {EMAIL} today"}])
        if c.choices]
    text = "".join(pieces)
    assert text.endswith(f"You said: Mail {EMAIL} today"), text
    assert not any("REDACTED" in p or "[EMAIL" in p for p in pieces), pieces
    assert provider_text(unmasking, provider) == "Mail [EMAIL_REDACTED_1] today"


def test_tool_call_arguments_get_the_address_back(unmasking):
    unmasking.reset()
    unmasking.script("anthropic", {"tool_calls": [
        {"name": "send_mail", "arguments": {"to": "[EMAIL_REDACTED_1]", "subject": "hi"}}]})
    tools = [{"type": "function", "function": {"name": "send_mail", "parameters": {
        "type": "object", "properties": {"to": {"type": "string"}, "subject": {"type": "string"}}}}}]
    answer = sdk(unmasking).chat.completions.create(
        model="claude", tools=tools, messages=[{"role": "user", "content": f"Write to {EMAIL}"}])
    [call] = answer.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"to": EMAIL, "subject": "hi"}


@pytest.mark.parametrize("alias, provider", [("gpt", "openai"), ("claude", "anthropic")])
def test_presidio_tokens_are_numbered_and_given_back(unmasking, guard, alias, provider):
    unmasking.reset()
    guard.reset()
    answer = sdk(unmasking).chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "Grüße an Jane Doe"}],
        extra_body={"guardrails": ["presidio"]})
    assert provider_text(unmasking, provider) == "Grüße an <PERSON_1>"
    text = answer.choices[0].message.content
    assert text.endswith("You said: Grüße an Jane Doe"), text
