"""Streaming (`stream: true`) through the gateway for both providers, including upstream faults.

The Anthropic mock sends `message_start` ... `message_stop` events one write at a time and
splits one write in the middle of a UTF-8 character, so the filter sees many body callbacks
and must never decode a partial character.
"""

from __future__ import annotations

import json

import pytest

from conftest import (ANTHROPIC_MODEL, HELLO, MULTIBYTE, OPENAI_MODEL, WEATHER_ARGS, WEATHER_TOOL, ALIASES,
                      assert_openai_error, chat_body, collect_tool_calls, finish_reasons, user)

PROVIDERS = ["anthropic", "openai"]
MODEL = {"anthropic": ANTHROPIC_MODEL, "openai": OPENAI_MODEL}


def check_chunks(res, provider: str) -> list[dict]:
    assert res.error is None, f"stream broke: {res.error!r}; got {res.raw[-400:]!r}"
    assert res.status == 200, res.raw[:500]
    assert res.headers["content-type"].startswith("text/event-stream"), res.headers
    assert res.ends_with_done(), f"stream must end with data: [DONE]; tail {res.raw[-300:]!r}"
    assert res.data_items().count("[DONE]") == 1
    assert not res.errors(), res.errors()
    chunks = res.chunks()
    assert chunks, "no chunks"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1, "all chunks of one completion share one id"
    assert all(c["model"] == MODEL[provider] for c in chunks)
    assert all(isinstance(c["created"], int) for c in chunks)
    first = chunks[0]["choices"][0]
    assert first["index"] == 0 and first["delta"].get("role") == "assistant"
    return chunks


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_text_multibyte(gw, provider):
    res = gw.stream(chat_body(ALIASES[provider], user(MULTIBYTE), stream=True))
    chunks = check_chunks(res, provider)
    assert res.content() == HELLO[provider] + MULTIBYTE
    assert finish_reasons(chunks) == ["stop"]
    # the finish_reason chunk is the last one with choices
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[-1]["choices"][0]["finish_reason"] == "stop"
    # no usage unless asked for (OpenAI: stream_options.include_usage)
    assert not any(c.get("usage") for c in chunks)
    (req,) = gw.provider_requests(provider)
    assert req["body"]["stream"] is True
    assert req["response"]["status"] == 200, req["response"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_include_usage(gw, provider):
    res = gw.stream(chat_body(ALIASES[provider], user("count these words"), stream=True,
                              stream_options={"include_usage": True}))
    chunks = check_chunks(res, provider)
    assert res.content() == HELLO[provider] + "count these words"
    (req,) = gw.provider_requests(provider)
    u = req["response"]["usage"]
    inp, out = (u["input_tokens"], u["output_tokens"]) if provider == "anthropic" else \
        (u["prompt_tokens"], u["completion_tokens"])
    last = chunks[-1]
    assert last["choices"] == [], "usage arrives in a final chunk with empty choices"
    assert last["usage"]["prompt_tokens"] == inp
    assert last["usage"]["completion_tokens"] == out == 11
    assert last["usage"]["total_tokens"] == inp + out
    # only the final chunk carries usage
    assert not any(c.get("usage") for c in chunks[:-1])
    if provider == "anthropic":
        assert "stream_options" not in req["body"], "stream_options is not an Anthropic field"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_tool_call(gw, provider):
    res = gw.stream(chat_body(ALIASES[provider], user("Weather in Zürich?"), tools=[WEATHER_TOOL], stream=True))
    chunks = check_chunks(res, provider)
    (call,) = collect_tool_calls(chunks)
    assert call["index"] == 0
    assert call["type"] == "function"
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == WEATHER_ARGS
    assert finish_reasons(chunks) == ["tool_calls"]
    (req,) = gw.provider_requests(provider)
    if provider == "anthropic":
        blocks = req["response"]["content"]
        assert call["id"] == blocks[1]["id"]
        assert res.content() == "I'll use the get_weather tool."
        assert req["body"]["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]
    else:
        assert call["id"] == req["response"]["message"]["tool_calls"][0]["id"]


def test_stream_anthropic_two_tool_calls_get_openai_indexes(gw):
    gw.script("anthropic", {"text": "", "tool_calls": [
        {"name": "get_weather", "arguments": {"city": "Oslo"}},
        {"name": "get_weather", "arguments": {"city": "Köln", "unit": "fahrenheit"}}]})
    res = gw.stream(chat_body("claude", user("two cities"), tools=[WEATHER_TOOL], stream=True))
    chunks = check_chunks(res, "anthropic")
    calls = collect_tool_calls(chunks)
    assert [c["index"] for c in calls] == [0, 1]
    assert [json.loads(c["arguments"]) for c in calls] == [{"city": "Oslo"},
                                                           {"city": "Köln", "unit": "fahrenheit"}]
    assert len({c["id"] for c in calls}) == 2
    assert finish_reasons(chunks) == ["tool_calls"]


def test_stream_anthropic_length_and_stop_sequence(gw):
    res = gw.stream(chat_body("claude", user("Hi"), stream=True, max_tokens=4))
    check_chunks(res, "anthropic")
    assert res.content() == "Hello from the mock "
    assert finish_reasons(res.chunks()) == ["length"]
    res = gw.stream(chat_body("claude", user("one STOP two"), stream=True, stop=["STOP"]))
    check_chunks(res, "anthropic")
    assert res.content() == HELLO["anthropic"] + "one "
    assert finish_reasons(res.chunks()) == ["stop"]
    assert gw.provider_requests("anthropic")[-1]["body"]["stop_sequences"] == ["STOP"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_is_forwarded_incrementally(gw, provider):
    """With 150 ms between upstream events the client must see bytes arrive over time, not all at the end."""
    gw.script(provider, {"chunk_delay_ms": 150})
    res = gw.stream(chat_body(ALIASES[provider], user("slowly please"), stream=True), deadline=15)
    check_chunks(res, provider)
    assert res.content() == HELLO[provider] + "slowly please"
    times = [t for t, _ in res.arrivals]
    assert len(times) >= 5, f"stream arrived in {len(times)} reads: buffered? {res.arrivals}"
    assert times[-1] - times[0] >= 1.0, f"all bytes arrived within {times[-1] - times[0]:.2f}s: buffered?"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_upstream_reset_mid_stream(gw, provider):
    """The provider aborts the TCP connection (RST) after a few events: the client must not hang,
    and its already-started stream must not look complete. Envoy resets the client's stream too
    (README: a filter cannot write after an upstream reset), so the client sees a connection
    error; if it ever gets a normal end instead, that must be an OpenAI error event then [DONE],
    never a clean [DONE] (that would pass a cut answer off as a whole one)."""
    gw.script(provider, {"reset_after_events": 6})
    res = gw.stream(chat_body(ALIASES[provider], user("reset me"), stream=True))
    assert res.elapsed < 5, f"took {res.elapsed:.1f}s"
    assert res.status == 200
    full = HELLO[provider] + "reset me"
    got = res.content()
    assert full.startswith(got) and got != full, f"partial text expected, got {got!r}"
    assert "stop" not in [c.get("finish_reason") for ch in res.chunks() for c in ch.get("choices") or []], \
        "a cut stream must not end like a complete answer"
    if res.error is None:
        errors = res.errors()
        assert len(errors) == 1, f"a reset stream ended without one error event: {errors}; tail {res.raw[-300:]!r}"
        assert {"message", "type", "param", "code"} <= set(errors[0]), errors[0]
        items = res.data_items()
        assert items[-1] == "[DONE]" and items.count("[DONE]") == 1, items[-3:]
        assert "error" in items[-2], f"the error event comes right before [DONE]: {items[-3:]}"
    (req,) = gw.provider_requests(provider)
    assert req["response"]["outcome"] == "reset"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_upstream_truncated_stream(gw, provider):
    """The provider ends the HTTP response cleanly but before its end marker (no message_stop / [DONE])."""
    gw.script(provider, {"truncate_after_events": 6})
    res = gw.stream(chat_body(ALIASES[provider], user("truncate me"), stream=True))
    assert res.elapsed < 5, f"took {res.elapsed:.1f}s"
    assert res.status == 200
    full = HELLO[provider] + "truncate me"
    got = res.content()
    assert full.startswith(got) and got != full, f"partial text expected, got {got!r}"
    assert res.error is not None or res.errors() or res.ends_with_done(), res.raw[-300:]
    if res.error is None:
        # a stream that ends cleanly must still be a complete SSE stream ending with [DONE]
        assert res.ends_with_done(), f"stream neither failed nor ended with [DONE]: {res.raw[-300:]!r}"
        assert finish_reasons(res.chunks()) != ["stop"] or res.errors(), \
            "a truncated stream must not look like a normal completion"


def test_anthropic_error_event_mid_stream(gw):
    """Anthropic can send `event: error` (overloaded_error) inside a 200 stream."""
    gw.script("anthropic", {"error_after_events": 5})
    res = gw.stream(chat_body("claude", user("then fail"), stream=True))
    assert res.elapsed < 5
    assert res.status == 200
    errors = res.errors()
    assert errors, f"the provider's error event must reach the client: {res.raw[-400:]!r}"
    assert errors[-1]["message"] == "Overloaded", errors
    assert {"message", "type", "param", "code"} <= set(errors[-1])
    assert res.error is not None or res.ends_with_done()


@pytest.mark.parametrize("provider,status,expected", [
    ("anthropic", 529, 503), ("anthropic", 429, 429), ("openai", 500, 500), ("openai", 429, 429)])
def test_error_status_on_stream_request_is_json(gw, provider, status, expected):
    """An error before any byte of the stream is an ordinary JSON error response, not SSE."""
    gw.script(provider, {"status": status})
    r = gw.chat(chat_body(ALIASES[provider], user("x"), stream=True))
    assert_openai_error(r, expected)
