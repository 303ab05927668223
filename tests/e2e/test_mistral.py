"""Mistral end to end: the official openai SDK -> Envoy + llm-gateway -> the Mistral mock
(tests/mocks/mistral_mock.py, which refuses what Mistral's API refuses: unknown fields such as
`user` or `seed`, `stream_options`, the `developer` role, `name` on user messages, empty assistant
turns), asserting what the client got and what Mistral received: LiteLLM's Mistral mapping."""

from __future__ import annotations

import openai
import pytest

from conftest import HTTP_TIMEOUT, MockControl, attach_gateway
from mistral_mock import MistralMock

KEY = "ms-e2e-key"


@pytest.fixture(scope="module")
def mistral_mock():
    m = MistralMock().start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def mistral_gateway(start_gateway, mistral_mock):
    base = f"http://127.0.0.1:{mistral_mock.port}/v1"
    cfg = {"model_list": [
        {"model_name": "mistral", "litellm_params": {"model": "mistral/mistral-small-latest", "api_base": base,
                                                     "api_key": "os.environ/MISTRAL_E2E_KEY"}},
        {"model_name": "magistral", "litellm_params": {"model": "mistral/magistral-small-latest",
                                                       "api_base": base, "api_key": "os.environ/MISTRAL_E2E_KEY"}}],
        "router_settings": {"disable_cooldowns": True, "num_retries": 0},
        "gateway": {"clusters": {f"127.0.0.1:{mistral_mock.port}": "mock_mistral"}}}
    with start_gateway(cfg, extra_clusters={"mock_mistral": mistral_mock.port}, name="mistral",
                       env={"MISTRAL_E2E_KEY": KEY}) as g:
        yield g


class Mistral(MockControl):
    """The gateway plus this mock's control API."""


@pytest.fixture
def ms(mistral_gateway, mistral_mock, request):
    attach_gateway(mistral_gateway, request)
    mistral_mock.reset()
    return Mistral(mistral_gateway, mistral_mock)


@pytest.fixture
def sdk(mistral_gateway):
    return openai.OpenAI(base_url=f"{mistral_gateway.base_url}/v1", api_key="client", max_retries=0,
                         timeout=HTTP_TIMEOUT)


def test_litellms_mapping_reaches_mistral(ms, sdk):
    answer = sdk.chat.completions.create(
        model="mistral",
        messages=[{"role": "developer", "content": "be brief"},
                  {"role": "user", "name": "bob", "content": [{"type": "text", "text": "hi "},
                                                              {"type": "text", "text": "there"}]}],
        seed=3, max_completion_tokens=50, user="u-1", presence_penalty=0.1)
    assert answer.choices[0].message.content.startswith("Hello from the mock OpenAI provider! You said: hi there")
    got = ms.only_request()
    assert got["headers"]["authorization"] == f"Bearer {KEY}"
    sent = got["body"]
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    assert (sent["random_seed"], sent["max_tokens"], sent["presence_penalty"]) == (3, 50, 0.1)
    for k in ("seed", "user", "max_completion_tokens"):
        assert k not in sent, k


def test_tools_with_required_choice_and_a_tool_turn(ms, sdk):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    first = sdk.chat.completions.create(model="mistral", messages=[{"role": "user", "content": "weather?"}],
                                        tools=tools, tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].message.content is None, "Mistral's empty content is null, as LiteLLM makes it"
    assert ms.only_request()["body"]["tool_choice"] == "any"
    ms.mock.reset()
    answer = sdk.chat.completions.create(model="mistral", tools=tools, messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": [{"type": "text", "text": "sunny"}]},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "thanks"}], tool_choice="none")
    assert answer.choices[0].message.content.startswith("Hello from the mock")
    msgs = ms.only_request()["body"]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "user"], "the empty turn is left out"
    assert msgs[2]["content"] == "sunny"
    assert "content" not in msgs[1]


def test_stream_usage_arrives_unasked_and_no_stream_options_is_sent(ms, sdk):
    stream = sdk.chat.completions.create(model="mistral", messages=[{"role": "user", "content": "hi"}],
                                         stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from the mock")
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert "stream_options" not in ms.only_request()["body"]


def test_magistral_thinking_blocks_become_reasoning_content(ms, sdk):
    ms.script({"thinking": "Let me think.", "text": "42"})
    answer = sdk.chat.completions.create(model="magistral", messages=[{"role": "user", "content": "q"}])
    msg = answer.choices[0].message
    assert msg.content == "42"
    assert msg.model_extra["reasoning_content"] == "Let me think."
    ms.mock.reset()
    ms.script({"thinking": "Hmm.", "text": "forty two", "match_stream": True})
    chunks = list(sdk.chat.completions.create(model="magistral", messages=[{"role": "user", "content": "q"}],
                                              stream=True))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks if c.choices)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (reasoning, text) == ("Hmm.", "forty two")


def test_what_mistral_lacks_is_a_400_naming_it(ms, sdk):
    with pytest.raises(openai.BadRequestError) as e:
        sdk.chat.completions.create(model="mistral", messages=[{"role": "user", "content": "hi"}],
                                    logit_bias={"1": 2})
    assert e.value.body["param"] == "logit_bias"
    ms.mock.reset()
    assert ms._control("GET", "/__mock/requests") == []
