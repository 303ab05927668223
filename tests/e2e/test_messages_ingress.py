"""The Anthropic Messages ingress (`POST /v1/messages`, `/v1/messages/count_tokens`) through real
Envoy, with the official `anthropic` Python SDK as the client: to the Anthropic mock (passthrough:
what the mock received is the client's body with only the model and the key changed) and to the
OpenAI, Gemini and Bedrock mocks (translated through the chat translators and back). Plain,
streamed (the SDK's own accumulator rebuilds the same message), tools, errors in Anthropic's shape.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anthropic
import pytest

from conftest import (ANTHROPIC_HELLO, ANTHROPIC_KEY, ANTHROPIC_MODEL, HTTP_TIMEOUT, OPENAI_HELLO, OPENAI_KEY,
                      OPENAI_MODEL, attach_gateway, mock_cluster_map, mock_deployment)
from keys_helpers import vkey

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mocks"))
from bedrock_mock import HELLO as BEDROCK_HELLO, BedrockMock  # noqa: E402
from mock_gemini import MockGemini  # noqa: E402

KEY = "sk-ingress-client"
BROKE = "sk-ingress-broke"
AWS_ID, AWS_SECRET, REGION = "AKIDMOCKINGRESS01", "mock/Ingress+Secret0123456789EXAMPLE", "us-east-1"
BEDROCK_MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
GEMINI_KEY = "AIza-mock-ingress-key"
GEMINI_HELLO = "Hello from the mock Gemini provider! You said: "
WEATHER = {"name": "get_weather", "description": "Get the current weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def google():
    m = MockGemini(chunk_delay_ms=2).start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def bedrock():
    m = BedrockMock({AWS_ID: AWS_SECRET}, region=REGION).start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def ingress_gateway(start_gateway, mocks, google, bedrock):
    clusters = {**mock_cluster_map(mocks), f"127.0.0.1:{google.port}": "mock_gemini",
                f"127.0.0.1:{bedrock.port}": "mock_bedrock"}
    cfg = {
        "model_list": [
            mock_deployment(mocks, "claude", f"anthropic/{ANTHROPIC_MODEL}"),
            mock_deployment(mocks, "gpt", f"openai/{OPENAI_MODEL}"),
            {"model_name": "gem", "litellm_params": {"model": "gemini/gemini-2.5-flash",
                                                     "api_base": f"http://127.0.0.1:{google.port}",
                                                     "api_key": "os.environ/GEMINI_KEY"}},
            {"model_name": "br", "litellm_params": {"model": f"bedrock/{BEDROCK_MODEL}",
                                                    "api_base": f"http://127.0.0.1:{bedrock.port}",
                                                    "aws_access_key_id": AWS_ID,
                                                    "aws_secret_access_key": "os.environ/AWS_SECRET",
                                                    "aws_region_name": REGION}},
        ],
        "virtual_keys": [vkey(KEY, "client"), vkey(BROKE, "broke", max_budget=0.0)],
        "router_settings": {"disable_cooldowns": True, "num_retries": 0},
        "gateway": {"clusters": clusters},
    }
    env = {"GEMINI_KEY": GEMINI_KEY, "AWS_SECRET": AWS_SECRET,
           "MOCK_ANTHROPIC_KEY": ANTHROPIC_KEY, "MOCK_OPENAI_KEY": OPENAI_KEY}
    with start_gateway(cfg, extra_clusters={"mock_gemini": google.port, "mock_bedrock": bedrock.port},
                       name="ingress", env=env) as g:
        yield g


@pytest.fixture
def gw(ingress_gateway, google, bedrock, request):
    google.reset()
    bedrock.reset()
    return attach_gateway(ingress_gateway, request)


@pytest.fixture
def sdk(gw):
    c = anthropic.Anthropic(base_url=gw.base_url, api_key=KEY, max_retries=0, timeout=HTTP_TIMEOUT)
    yield c
    c.close()


def provider_requests(gw, google, bedrock, alias: str) -> list[dict]:
    if alias == "claude":
        return gw.requests("anthropic")
    if alias == "gpt":
        return gw.requests("openai")
    if alias == "gem":
        return google.state.snapshot()
    return bedrock.requests()


def blocks(msg) -> list[dict]:
    """A message's content blocks as plain dicts (the stream's parsed blocks carry `parsed_output`)."""
    return [b.model_dump(exclude={"parsed_output"}, exclude_none=True) for b in msg.content]


HELLOS = {"claude": ANTHROPIC_HELLO, "gpt": OPENAI_HELLO, "gem": GEMINI_HELLO, "br": BEDROCK_HELLO}
NATIVE_PATHS = {"gpt": "/v1/chat/completions", "gem": ":generateContent", "br": "/converse"}


# ---------------------------------------------------------------- passthrough to Anthropic


def test_passthrough_changes_only_model_and_key(gw):
    body = {"model": "claude", "max_tokens": 64, "system": [{"type": "text", "text": "Be brief.",
                                                             "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}],
            "temperature": 0.2, "top_k": 5, "metadata": {"user_id": "u-42"}}
    r = gw.request("POST", "/v1/messages", body,
                   headers={"Authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01",
                            "anthropic-beta": "prompt-caching-2024-07-31"})
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    assert req["path"] == "/v1/messages"
    assert req["body"] == {**body, "model": ANTHROPIC_MODEL}, "only the model changed"
    h = req["headers"]
    assert h["x-api-key"] == ANTHROPIC_KEY, "the gateway's key, not the client's"
    assert h["anthropic-version"] == "2023-06-01"
    assert h["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert KEY not in json.dumps(req["header_list"])
    msg = r.json()
    assert msg["type"] == "message" and msg["id"].startswith("msg_")
    assert msg["content"] == [{"type": "text", "text": ANTHROPIC_HELLO + "Hi there"}]
    assert msg["usage"] == req["response"]["usage"], "the provider's own answer"


def test_sdk_plain_stream_and_tools_against_anthropic(gw, sdk):
    kw = dict(model="claude", max_tokens=200, messages=[{"role": "user", "content": "Hi there"}])
    plain = sdk.messages.create(**kw)
    assert plain.content[0].text == ANTHROPIC_HELLO + "Hi there"
    assert plain.stop_reason == "end_turn"
    with sdk.messages.stream(**kw) as s:
        streamed = s.get_final_message()
    assert blocks(streamed) == blocks(plain)
    assert (streamed.stop_reason, streamed.usage.input_tokens, streamed.usage.output_tokens) == \
        (plain.stop_reason, plain.usage.input_tokens, plain.usage.output_tokens)
    bodies = [q["body"] for q in gw.requests("anthropic")]
    assert [b.get("stream") for b in bodies] == [None, True]
    assert all(b["model"] == ANTHROPIC_MODEL for b in bodies)
    tool = sdk.messages.create(model="claude", max_tokens=200, tools=[WEATHER],
                               messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert tool.stop_reason == "tool_use"
    use = [b for b in tool.content if b.type == "tool_use"]
    assert len(use) == 1 and use[0].name == "get_weather" and isinstance(use[0].input, dict)


# ---------------------------------------------------------------- translated to other providers


@pytest.mark.parametrize("alias", ["gpt", "gem", "br"])
def test_sdk_plain_and_stream_translated(gw, sdk, google, bedrock, alias):
    kw = dict(model=alias, max_tokens=200, system="You are terse.",
              messages=[{"role": "user", "content": "Hi there"}])
    plain = sdk.messages.create(**kw)
    assert plain.type == "message" and plain.role == "assistant"
    assert [b.type for b in plain.content] == ["text"]
    assert plain.content[0].text == HELLOS[alias] + "Hi there"
    assert plain.stop_reason == "end_turn"
    assert plain.usage.input_tokens > 0 and plain.usage.output_tokens > 0
    with sdk.messages.stream(**kw) as s:
        texts = list(s.text_stream)
        streamed = s.get_final_message()
    assert "".join(texts) == plain.content[0].text
    assert blocks(streamed) == blocks(plain), "the SDK's accumulator rebuilds the same message"
    assert streamed.stop_reason == plain.stop_reason
    assert (streamed.usage.input_tokens, streamed.usage.output_tokens) == \
        (plain.usage.input_tokens, plain.usage.output_tokens)
    reqs = provider_requests(gw, google, bedrock, alias)
    assert len(reqs) == 2, [q["path"] for q in reqs]
    assert NATIVE_PATHS[alias] in reqs[0]["path"], reqs[0]["path"]
    if alias == "gpt":
        sent = reqs[0]["body"]
        assert sent["model"] == OPENAI_MODEL
        assert sent["messages"] == [{"role": "system", "content": "You are terse."},
                                    {"role": "user", "content": "Hi there"}]
        assert sent["max_tokens"] == 200
        assert reqs[1]["body"]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("alias", ["gpt", "gem", "br"])
def test_sdk_tools_round_trip_translated(gw, sdk, alias):
    first = sdk.messages.create(model=alias, max_tokens=300, tools=[WEATHER],
                                tool_choice={"type": "any"},
                                messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert first.stop_reason == "tool_use", first
    use = [b for b in first.content if b.type == "tool_use"]
    assert len(use) == 1 and use[0].name == "get_weather"
    assert isinstance(use[0].input, dict) and isinstance(use[0].input.get("city"), str)
    with sdk.messages.stream(model=alias, max_tokens=300, tools=[WEATHER], tool_choice={"type": "any"},
                             messages=[{"role": "user", "content": "Weather in Paris?"}]) as s:
        streamed = s.get_final_message()
    assert streamed.stop_reason == "tool_use"
    s_use = [b for b in streamed.content if b.type == "tool_use"]
    assert [(b.name, sorted(b.input)) for b in s_use] == [(b.name, sorted(b.input)) for b in use]
    second = sdk.messages.create(
        model=alias, max_tokens=300, tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use[0].id,
                                                "content": "18C and sunny"}]}])
    assert second.stop_reason == "end_turn"
    assert "18C and sunny" in second.content[-1].text


def test_image_blocks_reach_openai_as_image_parts(gw, sdk):
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    m = sdk.messages.create(model="gpt", max_tokens=100, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "text", "text": "What is this?"}]}])
    assert m.content[0].text.endswith("(with 1 image)")
    sent = gw.only_request("openai")["body"]["messages"][0]["content"]
    assert sent[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}


# ---------------------------------------------------------------- errors and counting


def test_errors_are_anthropic_shaped(gw, sdk):
    with pytest.raises(anthropic.NotFoundError) as e:
        sdk.messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.response.json()["error"]["type"] == "not_found_error"
    broke = anthropic.Anthropic(base_url=gw.base_url, api_key=BROKE, max_retries=0, timeout=HTTP_TIMEOUT)
    with pytest.raises(anthropic.RateLimitError) as e:
        broke.messages.create(model="claude", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    body = e.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error", body
    assert "budget" in body["error"]["message"].lower()
    assert gw.requests("anthropic") == [], "refused before any provider"
    wrong = anthropic.Anthropic(base_url=gw.base_url, api_key="sk-wrong", max_retries=0, timeout=HTTP_TIMEOUT)
    with pytest.raises(anthropic.AuthenticationError) as e:
        wrong.messages.create(model="gpt", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.response.json()["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        sdk.messages.create(model="gpt", max_tokens=10, messages=[{"role": "robot", "content": "x"}])
    assert e.value.response.json()["error"]["type"] == "invalid_request_error"
    gw.script("openai", {"status": 429})
    with pytest.raises(anthropic.RateLimitError) as e:
        sdk.messages.create(model="gpt", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.response.json()["type"] == "error"


def test_count_tokens(gw, sdk):
    msgs = [{"role": "user", "content": "Hi there, how are you"}]
    native = sdk.messages.count_tokens(model="claude", messages=msgs)
    req = gw.only_request("anthropic")
    assert req["path"] == "/v1/messages/count_tokens"
    assert req["body"] == {"model": ANTHROPIC_MODEL, "messages": msgs}
    assert native.input_tokens == req["response"]["usage"]["input_tokens"]
    estimate = sdk.messages.count_tokens(model="gpt", messages=msgs)
    assert estimate.input_tokens == -(-len("Hi there, how are you") // 4)
    assert gw.requests("openai") == []


@pytest.mark.parametrize("alias,provider", [("gpt", "openai"), ("claude", "anthropic")])
def test_a_cut_stream_is_an_error_for_the_sdk(gw, sdk, alias, provider):
    gw.script(provider, {"truncate_after_events": 3})
    with pytest.raises(anthropic.APIStatusError) as e:
        with sdk.messages.stream(model=alias, max_tokens=100,
                                 messages=[{"role": "user", "content": "Hi there friend"}]) as s:
            s.get_final_message()
    assert e.value.body["type"] == "error", e.value.body
    assert e.value.body["error"]["type"] == "api_error", e.value.body
    assert gw.only_request(provider)["response"]["outcome"] == "truncated"
