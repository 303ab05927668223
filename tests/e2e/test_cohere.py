"""Cohere v2 end to end: OpenAI clients (raw HTTP and the official SDK) -> Envoy + llm-gateway ->
the Cohere mock (tests/mocks/cohere_mock.py), asserting what the client got and what Cohere
received."""

from __future__ import annotations

import json

import pytest

from conftest import (run_fault_rows, 
    MockControl,
    CLIENT_KEY, HTTP_TIMEOUT, MULTIBYTE, WEATHER_ARGS, WEATHER_TOOL, assert_no_client_secret, assert_openai_error,
    attach_gateway, chat_body, collect_tool_calls, finish_reasons, user,
)
from cohere_mock import CohereMock

KEY = "co-e2e-key"
MODEL = "command-a-03-2025"
HELLO = "Hello from the mock Cohere provider! You said: "


@pytest.fixture(scope="module")
def cohere_mock():
    m = CohereMock(require_key=KEY).start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def cohere_gateway(start_gateway, cohere_mock):
    base = f"http://127.0.0.1:{cohere_mock.port}"
    params = {"api_base": base, "api_key": "os.environ/COHERE_E2E_KEY"}
    cfg = {
        "model_list": [
            {"model_name": "command", "litellm_params": {"model": f"cohere/{MODEL}", **params}},
            {"model_name": "command-chat", "litellm_params": {"model": "cohere_chat/command-r-plus", **params}},
            {"model_name": "cohere-embed", "litellm_params": {"model": "cohere/embed-v4.0", **params}},
        ],
        "router_settings": {"disable_cooldowns": True, "num_retries": 0},
        "gateway": {"clusters": {f"127.0.0.1:{cohere_mock.port}": "mock_cohere"}},
    }
    with start_gateway(cfg, extra_clusters={"mock_cohere": cohere_mock.port}, name="cohere",
                       env={"COHERE_E2E_KEY": KEY}) as g:
        yield g


class Cohere(MockControl):
    """The gateway plus the Cohere mock's control API."""


@pytest.fixture
def co(cohere_gateway, cohere_mock, request):
    attach_gateway(cohere_gateway, request)
    cohere_mock.reset()
    return Cohere(cohere_gateway, cohere_mock)


@pytest.fixture
def sdk(cohere_gateway):
    from openai import OpenAI

    c = OpenAI(base_url=f"{cohere_gateway.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=HTTP_TIMEOUT)
    yield c
    c.close()


def assert_native_request(req: dict, model: str = MODEL) -> dict:
    assert req["method"] == "POST"
    assert req["path"] == "/v2/chat"
    assert req["headers"]["authorization"] == f"Bearer {KEY}"
    assert req["headers"]["content-type"] == "application/json"
    assert_no_client_secret(req)
    body = req["body"]
    assert body["model"] == model
    return body


def test_plain_chat(co):
    r = co.gw.chat(chat_body("command", {"role": "system", "content": "Be brief."}, user("Hi there"),
                             max_tokens=50, temperature=0.3, top_p=0.9, stop=["zzz"], seed=7))
    assert r.status == 200, r.body
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == MODEL
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": HELLO + "Hi there"}
    assert choice["finish_reason"] == "stop"
    u = body["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["completion_tokens"] > 0
    sent = assert_native_request(co.only_request())
    assert sent == {"model": MODEL, "messages": [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "Hi there"}],
                    "max_tokens": 50, "temperature": 0.3, "p": 0.9, "stop_sequences": ["zzz"], "seed": 7}


def test_cohere_chat_prefix_and_max_tokens(co):
    r = co.gw.chat(chat_body("command-chat", user("one two three four five six"), max_completion_tokens=3))
    assert r.status == 200, r.body
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == "Hello from the "
    assert assert_native_request(co.only_request(), "command-r-plus")["max_tokens"] == 3


def test_streaming(co):
    res = co.gw.stream(chat_body("command", user(MULTIBYTE), stream=True, stream_options={"include_usage": True}))
    assert res.status == 200 and res.error is None, (res.status, res.error, res.raw[:300])
    assert res.headers["content-type"].startswith("text/event-stream")
    assert res.ends_with_done()
    assert res.content() == HELLO + MULTIBYTE
    chunks = res.chunks()
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert finish_reasons(chunks) == ["stop"]
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and usage["total_tokens"] > 0
    sent = assert_native_request(co.only_request())
    assert sent["stream"] is True and "stream_options" not in sent


def test_tool_round_trip_with_the_openai_sdk(co, sdk):
    first = sdk.chat.completions.create(model="command", messages=[user("Weather in Zürich?")], tools=[WEATHER_TOOL],
                                        tool_choice="required")
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert msg.content == "I will use the get_weather tool."
    (call,) = msg.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == WEATHER_ARGS
    second = sdk.chat.completions.create(
        model="command", tools=[WEATHER_TOOL],
        messages=[user("Weather in Zürich?"), msg.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"}])
    assert second.choices[0].message.content == "The tool returned: 18 degrees"
    assert second.choices[0].finish_reason == "stop"
    r1, r2 = co.requests()
    b1 = assert_native_request(r1)
    assert b1["tool_choice"] == "REQUIRED"
    assert b1["tools"] == [WEATHER_TOOL]
    b2 = assert_native_request(r2)
    assert b2["messages"][1] == {"role": "assistant", "tool_plan": "I will use the get_weather tool.",
                                 "tool_calls": [{"id": call.id, "type": "function", "function": {
                                     "name": "get_weather", "arguments": call.function.arguments}}]}
    assert b2["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"}


def test_streamed_tool_call_with_the_openai_sdk(co, sdk):
    stream = sdk.chat.completions.create(model="command", messages=[user("Weather?")], tools=[WEATHER_TOOL],
                                         stream=True)
    chunks = [c.model_dump() for c in stream]
    (call,) = collect_tool_calls(chunks)
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == WEATHER_ARGS
    assert call["id"].startswith("get_weather_")
    assert finish_reasons(chunks) == ["tool_calls"]
    assert assert_native_request(co.only_request())["stream"] is True


def test_embeddings_with_the_openai_sdk(co, sdk):
    out = sdk.embeddings.create(model="cohere-embed", input=["hello world", "good bye"], dimensions=8)
    assert [d.index for d in out.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in out.data)
    assert out.usage.prompt_tokens == 4 and out.usage.total_tokens == 4
    req = co.only_request()
    assert req["path"] == "/v2/embed" and req["headers"]["authorization"] == f"Bearer {KEY}"
    assert req["body"] == {"model": "embed-v4.0", "texts": ["hello world", "good bye"],
                           "input_type": "search_document", "embedding_types": ["float"], "output_dimension": 8}


@pytest.mark.parametrize("status,etype", [(429, "rate_limit_error"), (400, "invalid_request_error"),
                                          (500, "api_error")])
def test_errors_are_mapped(co, status, etype):
    co.script({"status": status, "body": {"id": "x", "message": f"cohere says {status}"}})
    r = co.gw.chat(chat_body("command", user("Hi")))
    assert_openai_error(r, status, etype, message_contains=f"cohere says {status}")
    assert len(co.requests()) == 1


def test_unsupported_parameter_is_refused_before_cohere(co):
    r = co.gw.chat(chat_body("command", user("Hi"), n=2))
    assert_openai_error(r, 400, "invalid_request_error", param="n", code="unsupported_parameter",
                        message_contains="cohere")
    assert co.requests() == []


def test_stream_cut_short_ends_with_an_error_event(co):
    co.script({"truncate_after_events": 4})
    res = co.gw.stream(chat_body("command", user("Hi there"), stream=True))
    assert res.status == 200
    assert res.ends_with_done()
    assert [e["code"] for e in res.errors()] == ["upstream_stream_truncated"]


def test_bare_json_line_stream_with_the_openai_sdk(co, sdk):
    """Cohere has also streamed one bare JSON object per line (no `data:` framing): read like SSE."""
    co.script({"framing": "json_lines"})
    stream = sdk.chat.completions.create(model="command", messages=[user(MULTIBYTE)], stream=True,
                                         stream_options={"include_usage": True})
    chunks = [c.model_dump() for c in stream]
    assert "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks if c["choices"]) == HELLO + MULTIBYTE
    assert finish_reasons(chunks) == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    req = co.only_request()
    assert assert_native_request(req)["stream"] is True
    assert req["script"] == {"framing": "json_lines"} and req["response"]["outcome"] == "complete"


def test_bare_json_line_stream_tool_call(co):
    co.script({"framing": "json_lines"})
    res = co.gw.stream(chat_body("command", user("Weather?"), tools=[WEATHER_TOOL], stream=True))
    assert res.status == 200 and res.error is None and res.errors() == [], res.raw[:300]
    assert res.ends_with_done()
    (call,) = collect_tool_calls(res.chunks())
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == WEATHER_ARGS
    assert finish_reasons(res.chunks()) == ["tool_calls"]


@pytest.mark.parametrize("script", [
    {"finish_reason": "ERROR_TOXIC", "text": "I can"},
    {"finish_reason": "ERROR_TOXIC", "error": "blocked by the safety system", "omit_message": True},
    {"finish_reason": "SAFETY", "text": "I can"},
])
def test_safety_stop_is_content_filter(co, script):
    co.script(script)
    r = co.gw.chat(chat_body("command", user("something unsafe")))
    assert r.status == 200, r.body
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] == (None if script.get("omit_message") else "I can")
    assert co.only_request()["response"]["finish_reason"] == script["finish_reason"]


@pytest.mark.parametrize("framing", ["sse", "json_lines"])
def test_streamed_safety_stop_is_content_filter(co, framing):
    co.script({"framing": framing, "finish_reason": "ERROR_TOXIC", "text": "I can",
               "error": "blocked by the safety system"})
    res = co.gw.stream(chat_body("command", user("something unsafe"), stream=True))
    assert res.status == 200 and res.errors() == [], res.raw[:400]
    assert res.ends_with_done()
    assert res.content() == "I can"
    assert finish_reasons(res.chunks()) == ["content_filter"]
    assert co.only_request()["response"]["finish_reason"] == "ERROR_TOXIC"


def test_fault_rows(co):
    run_fault_rows(co.gw, co.script, "command")
