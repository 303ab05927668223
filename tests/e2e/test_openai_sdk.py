"""The official OpenAI Python SDK against the gateway, for both providers.

Client: OpenAI(base_url="http://127.0.0.1:PORT/v1", api_key="client-secret-123", max_retries=0, timeout=10).
"""

from __future__ import annotations

import json
import time

import openai
import pytest

from conftest import (ALIASES, ANTHROPIC_KEY, HELLO, MULTIBYTE, OPENAI_KEY, WEATHER_ARGS, WEATHER_PARAMS,
                      WEATHER_TOOL, PNG_B64, assert_no_client_secret, user)

PROVIDERS = ["anthropic", "openai"]


def upstream(gw, provider: str) -> dict:
    (req,) = gw.provider_requests(provider)
    assert_no_client_secret(req)
    if provider == "anthropic":
        assert req["headers"]["x-api-key"] == ANTHROPIC_KEY
    else:
        assert req["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    return req


@pytest.mark.parametrize("provider", PROVIDERS)
def test_create_plain(gw, client, provider):
    resp = client.chat.completions.create(model=ALIASES[provider], messages=[user(MULTIBYTE)])
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == HELLO[provider] + MULTIBYTE
    assert resp.choices[0].finish_reason == "stop"
    req = upstream(gw, provider)
    u = req["response"]["usage"]
    assert resp.usage.prompt_tokens == u.get("input_tokens", u.get("prompt_tokens"))
    assert resp.usage.completion_tokens == u.get("output_tokens", u.get("completion_tokens")) == 10
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


@pytest.mark.parametrize("provider", PROVIDERS)
def test_create_stream(gw, client, provider):
    stream = client.chat.completions.create(model=ALIASES[provider], messages=[user(MULTIBYTE)], stream=True)
    text, finishes, n = "", [], 0
    for chunk in stream:
        n += 1
        assert chunk.object == "chat.completion.chunk"
        for c in chunk.choices:
            text += c.delta.content or ""
            if c.finish_reason:
                finishes.append(c.finish_reason)
    assert text == HELLO[provider] + MULTIBYTE
    assert finishes == ["stop"]
    assert n >= 5, "expected several chunks"
    assert upstream(gw, provider)["body"]["stream"] is True


@pytest.mark.parametrize("provider", PROVIDERS)
def test_create_stream_include_usage(gw, client, provider):
    stream = client.chat.completions.create(model=ALIASES[provider], messages=[user("usage please")], stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage is not None
    u = upstream(gw, provider)["response"]["usage"]
    assert usage.prompt_tokens == u.get("input_tokens", u.get("prompt_tokens"))
    assert usage.completion_tokens == u.get("output_tokens", u.get("completion_tokens")) == 10
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.parametrize("provider", PROVIDERS)
def test_create_with_tools(gw, client, provider):
    resp = client.chat.completions.create(model=ALIASES[provider], messages=[user("Weather in Zürich?")],
                                          tools=[WEATHER_TOOL])
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    (tc,) = choice.message.tool_calls
    assert tc.type == "function" and tc.function.name == "get_weather"
    assert json.loads(tc.function.arguments) == WEATHER_ARGS
    req = upstream(gw, provider)
    if provider == "anthropic":
        assert req["body"]["tools"] == [{"name": "get_weather", "description": "Get the current weather for a city",
                                         "input_schema": WEATHER_PARAMS}]
        assert tc.id == req["response"]["content"][1]["id"]
    else:
        assert req["body"]["tools"] == [WEATHER_TOOL]

    # second turn: send the tool result back
    follow = client.chat.completions.create(
        model=ALIASES[provider], tools=[WEATHER_TOOL],
        messages=[user("Weather in Zürich?"), choice.message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": tc.id, "content": "18°C and sunny"}])
    assert follow.choices[0].message.content == "The tool returned: 18°C and sunny"
    assert follow.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_create_stream_with_tools(gw, client, provider):
    stream = client.chat.completions.create(model=ALIASES[provider], messages=[user("Weather?")],
                                            tools=[WEATHER_TOOL], stream=True)
    calls: dict[int, dict] = {}
    finishes = []
    for chunk in stream:
        for c in chunk.choices:
            if c.finish_reason:
                finishes.append(c.finish_reason)
            for tc in c.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": "", "args": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    slot["args"] += tc.function.arguments
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert json.loads(calls[0]["args"]) == WEATHER_ARGS  # valid JSON, multi-byte intact
    assert finishes == ["tool_calls"]
    req = upstream(gw, provider)
    if provider == "anthropic":
        assert req["body"]["tools"][0]["input_schema"] == WEATHER_PARAMS


def test_image_and_system_via_sdk(gw, client):
    resp = client.chat.completions.create(model="claude", messages=[
        {"role": "system", "content": "Describe images."},
        user([{"type": "text", "text": "What is it?"},
              {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}])])
    assert resp.choices[0].message.content == HELLO["anthropic"] + "What is it? (with 1 image)"
    body = upstream(gw, "anthropic")["body"]
    sysp = body["system"]
    assert (sysp if isinstance(sysp, str) else "".join(b["text"] for b in sysp)) == "Describe images."


def test_models_list(gw, client):
    assert sorted(m.id for m in client.models.list()) == ["claude", "dead-first", "gpt", "ha"]


def test_unknown_model_raises_not_found(gw, client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="nope", messages=[user("x")])
    assert ei.value.status_code == 404
    assert ei.value.code == "model_not_found"


def test_missing_messages_raises_bad_request(gw, client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="gpt", messages=[])
    assert ei.value.param == "messages"


@pytest.mark.parametrize("provider,status,exc,expected", [
    ("anthropic", 529, openai.InternalServerError, 503),
    ("anthropic", 429, openai.RateLimitError, 429),
    ("anthropic", 401, openai.AuthenticationError, 401),
    ("anthropic", 400, openai.BadRequestError, 400),
    ("openai", 429, openai.RateLimitError, 429),
    ("openai", 500, openai.InternalServerError, 500),
])
def test_provider_errors_raise_sdk_exceptions(gw, client, provider, status, exc, expected):
    gw.script(provider, {"status": status})
    with pytest.raises(exc) as ei:
        client.chat.completions.create(model=ALIASES[provider], messages=[user("x")])
    assert ei.value.status_code == expected
    assert isinstance(ei.value.body, dict) and ei.value.body.get("message"), ei.value.body


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", [{"reset_after_events": 6}, {"truncate_after_events": 6}])
def test_stream_fault_surfaces_or_ends(gw, client, provider, fault):
    """A broken upstream stream ends the SDK iteration (error or end) within seconds, never hangs."""
    gw.script(provider, fault)
    t0 = time.monotonic()
    text = ""
    try:
        for chunk in client.chat.completions.create(model=ALIASES[provider], messages=[user("broken")],
                                                    stream=True):
            for c in chunk.choices:
                text += c.delta.content or ""
    except (openai.APIError, openai.APIConnectionError):
        pass
    assert time.monotonic() - t0 < 5
    assert (HELLO[provider] + "broken").startswith(text) and text != HELLO[provider] + "broken"


def test_keep_alive_many_requests(gw, client):
    """One SDK client (one pooled connection) alternating providers."""
    for i in range(6):
        provider = PROVIDERS[i % 2]
        resp = client.chat.completions.create(model=ALIASES[provider], messages=[user(f"n{i}")])
        assert resp.choices[0].message.content == HELLO[provider] + f"n{i}"
    assert len(gw.provider_requests("anthropic")) == 3
    assert len(gw.provider_requests("openai")) == 3
