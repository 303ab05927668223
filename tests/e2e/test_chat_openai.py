"""Alias `gpt` -> openai/gpt-4o-mini on the OpenAI mock: raw HTTP through Envoy + the filter."""

from __future__ import annotations

import json

from conftest import (CLIENT_KEY, MULTIBYTE, OPENAI_HELLO, OPENAI_KEY, OPENAI_MODEL, PNG_B64, WEATHER_ARGS,
                      WEATHER_TOOL, assert_no_client_secret, chat_body, collect_tool_calls, finish_reasons, user)


def check_upstream(gw, req: dict) -> dict:
    """What every request forwarded to the OpenAI mock must look like. Returns its body."""
    assert req["method"] == "POST"
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["host"] == f"127.0.0.1:{gw.mocks.openai_port}"
    assert req["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    assert_no_client_secret(req)
    assert req["body"]["model"] == OPENAI_MODEL
    return req["body"]


def test_plain_completion(gw):
    r = gw.chat(chat_body("gpt", user("Hi there"), temperature=0.2, seed=7, user="end-user-1"))
    assert r.status == 200, r.body
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    req = gw.only_request("openai")
    sent = check_upstream(gw, req)
    # passthrough: the mock's answer arrives unchanged
    assert body["id"] == req["response"]["id"]
    assert body["object"] == "chat.completion"
    assert body["model"] == OPENAI_MODEL
    assert body["choices"][0]["message"]["content"] == OPENAI_HELLO + "Hi there"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == req["response"]["usage"]["prompt_tokens"]
    assert body["usage"]["completion_tokens"] == req["response"]["usage"]["completion_tokens"] == 10
    # everything but the model is forwarded as the client wrote it
    assert sent["messages"] == [user("Hi there")]
    assert sent["temperature"] == 0.2 and sent["seed"] == 7 and sent["user"] == "end-user-1"


def test_client_credentials_never_reach_provider(gw):
    r = gw.chat(chat_body("gpt"), headers={"x-api-key": CLIENT_KEY, "api-key": CLIENT_KEY,
                                           "OpenAI-Organization": "org-client"})
    assert r.status == 200, r.body
    req = gw.only_request("openai")
    check_upstream(gw, req)
    assert "x-api-key" not in req["headers"] and "api-key" not in req["headers"]
    assert "openai-organization" not in req["headers"]


def test_multibyte_round_trip(gw):
    r = gw.chat(chat_body("gpt", user(MULTIBYTE)))
    assert r.status == 200
    assert r.json()["choices"][0]["message"]["content"] == OPENAI_HELLO + MULTIBYTE
    assert gw.only_request("openai")["body"]["messages"][0]["content"] == MULTIBYTE


def test_stream(gw):
    res = gw.stream(chat_body("gpt", user(MULTIBYTE), stream=True))
    assert res.error is None, res.error
    assert res.status == 200 and res.headers["content-type"].startswith("text/event-stream")
    assert res.ends_with_done()
    assert res.content() == OPENAI_HELLO + MULTIBYTE
    chunks = res.chunks()
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert finish_reasons(chunks) == ["stop"]
    assert not res.errors()
    sent = check_upstream(gw, gw.only_request("openai"))
    assert sent["stream"] is True and "stream_options" not in sent


def test_stream_include_usage(gw):
    res = gw.stream(chat_body("gpt", user("count me"), stream=True, stream_options={"include_usage": True}))
    assert res.error is None and res.ends_with_done()
    req = gw.only_request("openai")
    assert check_upstream(gw, req)["stream_options"] == {"include_usage": True}
    last = res.chunks()[-1]
    assert last["choices"] == []
    u = req["response"]["usage"]
    assert last["usage"]["prompt_tokens"] == u["prompt_tokens"] == 2
    assert last["usage"]["completion_tokens"] == u["completion_tokens"]
    assert last["usage"]["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def test_tool_call_request_and_response(gw):
    r = gw.chat(chat_body("gpt", user("Weather in Zürich?"), tools=[WEATHER_TOOL], tool_choice="auto"))
    assert r.status == 200, r.body
    sent = check_upstream(gw, gw.only_request("openai"))
    assert sent["tools"] == [WEATHER_TOOL] and sent["tool_choice"] == "auto"
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (tc,) = choice["message"]["tool_calls"]
    assert tc["type"] == "function" and tc["function"]["name"] == "get_weather"
    assert json.loads(tc["function"]["arguments"]) == WEATHER_ARGS


def test_tool_call_streamed_arguments(gw):
    res = gw.stream(chat_body("gpt", user("Weather?"), tools=[WEATHER_TOOL], stream=True))
    assert res.error is None and res.ends_with_done()
    (call,) = collect_tool_calls(res.chunks())
    assert call["name"] == "get_weather" and call["type"] == "function" and call["id"].startswith("call_")
    assert json.loads(call["arguments"]) == WEATHER_ARGS
    assert finish_reasons(res.chunks()) == ["tool_calls"]


def test_tool_result_round_trip(gw):
    msgs = [user("Weather in Zürich?"),
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": json.dumps({"city": "Zürich"})}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C and sunny"}]
    r = gw.chat(chat_body("gpt", *msgs, tools=[WEATHER_TOOL]))
    assert r.status == 200, r.body
    assert r.json()["choices"][0]["message"]["content"] == "The tool returned: 18°C and sunny"
    assert check_upstream(gw, gw.only_request("openai"))["messages"] == msgs


def test_image_parts_pass_through(gw):
    parts = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
             {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}}]
    r = gw.chat(chat_body("gpt", user(parts)))
    assert r.status == 200
    assert r.json()["choices"][0]["message"]["content"] == OPENAI_HELLO + "What is this? (with 2 images)"
    assert check_upstream(gw, gw.only_request("openai"))["messages"][0]["content"] == parts


def test_system_and_stop_pass_through(gw):
    r = gw.chat(chat_body("gpt", {"role": "system", "content": "Be brief."}, user("alpha STOP beta"),
                          stop=["STOP"], max_tokens=50))
    assert r.status == 200
    assert r.json()["choices"][0]["message"]["content"] == OPENAI_HELLO + "alpha "
    sent = check_upstream(gw, gw.only_request("openai"))
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["stop"] == ["STOP"] and sent["max_tokens"] == 50


def test_length_finish_reason(gw):
    r = gw.chat(chat_body("gpt", user("a b c d e f"), max_completion_tokens=2))
    assert r.status == 200
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"] == "Hello from "
