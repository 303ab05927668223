"""Ollama end to end: OpenAI clients (raw HTTP and the official SDK) -> Envoy + llm-gateway -> the
Ollama mock (tests/mocks/ollama_mock.py, native `/api/chat` with NDJSON streams), asserting what
the client got and what Ollama received."""

from __future__ import annotations

import json

import pytest

from conftest import (run_fault_rows, 
    MockControl,
    CLIENT_KEY, HTTP_TIMEOUT, MULTIBYTE, PNG_B64, WEATHER_ARGS, WEATHER_TOOL, assert_no_client_secret,
    assert_openai_error, attach_gateway, chat_body, collect_tool_calls, finish_reasons, user,
)
from ollama_mock import OllamaMock

MODEL = "llama3.2"
HELLO = "Hello from the mock Ollama provider! You said: "


@pytest.fixture(scope="module")
def ollama_mock():
    m = OllamaMock().start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def ollama_gateway(start_gateway, ollama_mock):
    base = f"http://127.0.0.1:{ollama_mock.port}"
    cfg = {
        "model_list": [
            {"model_name": "llama", "litellm_params": {"model": f"ollama_chat/{MODEL}", "api_base": base}},
            {"model_name": "llama-plain", "litellm_params": {"model": f"ollama/{MODEL}", "api_base": base}},
            {"model_name": "missing", "litellm_params": {"model": "ollama/not-pulled", "api_base": base}},
            {"model_name": "minilm", "litellm_params": {"model": "ollama/all-minilm", "api_base": base}},
        ],
        "router_settings": {"disable_cooldowns": True, "num_retries": 0},
        "gateway": {"clusters": {f"127.0.0.1:{ollama_mock.port}": "mock_ollama"}},
    }
    with start_gateway(cfg, extra_clusters={"mock_ollama": ollama_mock.port}, name="ollama") as g:
        yield g


class Ollama(MockControl):
    """The gateway plus this mock's control API."""


@pytest.fixture
def ol(ollama_gateway, ollama_mock, request):
    attach_gateway(ollama_gateway, request)
    ollama_mock.reset()
    return Ollama(ollama_gateway, ollama_mock)


@pytest.fixture
def sdk(ollama_gateway):
    from openai import OpenAI

    c = OpenAI(base_url=f"{ollama_gateway.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=HTTP_TIMEOUT)
    yield c
    c.close()


def assert_native(req: dict, path: str = "/api/chat") -> dict:
    assert req["method"] == "POST" and req["path"] == path
    assert req["headers"]["content-type"] == "application/json"
    assert "authorization" not in req["headers"]
    assert_no_client_secret(req)
    return req["body"]


def test_plain_chat(ol):
    r = ol.gw.chat(chat_body("llama", {"role": "system", "content": "Be brief."}, user("Hi there"),
                             temperature=0.5, top_p=0.9, max_tokens=64, stop="zzz", seed=1))
    assert r.status == 200, r.body
    body = r.json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": HELLO + "Hi there"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["model"] == MODEL
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    sent = assert_native(ol.only_request())
    assert sent == {"model": MODEL, "stream": False,
                    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
                    "options": {"temperature": 0.5, "top_p": 0.9, "seed": 1, "num_predict": 64, "stop": ["zzz"]}}


def test_max_tokens_gives_length(ol):
    r = ol.gw.chat(chat_body("llama-plain", user("Hi"), max_tokens=2))
    assert r.status == 200, r.body
    choice = r.json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("Hello from ", "length")


def test_streaming_ndjson_becomes_sse(ol):
    res = ol.gw.stream(chat_body("llama", user(MULTIBYTE), stream=True, stream_options={"include_usage": True}))
    assert res.status == 200 and res.error is None, (res.status, res.error, res.raw[:300])
    assert res.headers["content-type"].startswith("text/event-stream")
    assert res.ends_with_done()
    assert res.content() == HELLO + MULTIBYTE
    chunks = res.chunks()
    assert finish_reasons(chunks) == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert assert_native(ol.only_request())["stream"] is True


def test_tool_round_trip_with_the_openai_sdk(ol, sdk):
    first = sdk.chat.completions.create(model="llama", messages=[user("Weather?")], tools=[WEATHER_TOOL])
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    (call,) = msg.tool_calls
    assert call.id == f"call_{first.id.removeprefix('chatcmpl-')}_0"
    assert json.loads(call.function.arguments) == WEATHER_ARGS
    second = sdk.chat.completions.create(
        model="llama", tools=[WEATHER_TOOL],
        messages=[user("Weather?"), msg.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": "18C"}])
    assert second.choices[0].message.content == "The tool returned: 18C"
    r1, r2 = ol.requests()
    assert assert_native(r1)["tools"] == [WEATHER_TOOL]
    b2 = assert_native(r2)
    assert b2["messages"][1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": WEATHER_ARGS}}]
    assert b2["messages"][2] == {"role": "tool", "content": "18C", "tool_name": "get_weather"}


def test_streamed_tool_call_with_the_openai_sdk(ol, sdk):
    stream = sdk.chat.completions.create(model="llama", messages=[user("Weather?")], tools=[WEATHER_TOOL],
                                         stream=True)
    chunks = [c.model_dump() for c in stream]
    (call,) = collect_tool_calls(chunks)
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == WEATHER_ARGS
    assert finish_reasons(chunks) == ["tool_calls"]


def test_base64_image_goes_in_images(ol):
    r = ol.gw.chat(chat_body("llama", user([{"type": "text", "text": "What is this?"},
                                            {"type": "image_url",
                                             "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}])))
    assert r.status == 200, r.body
    assert r.json()["choices"][0]["message"]["content"] == HELLO + "What is this? (with 1 image)"
    msg = assert_native(ol.only_request())["messages"][0]
    assert msg == {"role": "user", "content": "What is this?", "images": [PNG_B64]}


def test_image_url_is_refused(ol):
    r = ol.gw.chat(chat_body("llama", user([{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])))
    assert_openai_error(r, 400, "invalid_request_error", code="unsupported_image_url", message_contains="base64")
    assert ol.requests() == []


def test_json_mode(ol):
    r = ol.gw.chat(chat_body("llama", user("JSON"), response_format={"type": "json_object"}))
    assert r.status == 200, r.body
    assert assert_native(ol.only_request())["format"] == "json"


def test_embeddings_with_the_openai_sdk(ol, sdk):
    out = sdk.embeddings.create(model="minilm", input=["why is the sky blue?", "x"])
    assert len(out.data) == 2 and len(out.data[1].embedding) == 4
    assert out.usage.prompt_tokens == 6
    assert assert_native(ol.only_request(), "/api/embed") == {"model": "all-minilm",
                                                              "input": ["why is the sky blue?", "x"]}


def test_model_not_found_is_404(ol):
    r = ol.gw.chat(chat_body("missing", user("Hi")))
    assert_openai_error(r, 404, "invalid_request_error", message_contains='model "not-pulled" not found')


def test_error_line_mid_stream(ol):
    ol.script({"error_after_events": 3})
    res = ol.gw.stream(chat_body("llama", user("Hi there"), stream=True))
    assert res.status == 200 and res.ends_with_done()
    (err,) = res.errors()
    assert err["code"] == "upstream_stream_error" and "unexpected EOF" in err["message"]


def test_fault_rows(ol):
    run_fault_rows(ol.gw, ol.script, "llama")
