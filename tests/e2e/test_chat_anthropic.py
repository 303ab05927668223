"""Alias `claude` -> anthropic/claude-sonnet-4-5 on the Anthropic mock: raw HTTP through Envoy + the filter.

Each test checks both sides: the OpenAI-shaped answer the client got, and the native
Messages API request the provider received (via the mock's /__mock/requests).
"""

from __future__ import annotations

import json

import pytest

from conftest import (ANTHROPIC_HELLO, ANTHROPIC_KEY, ANTHROPIC_MODEL, MULTIBYTE, PNG_B64, TIME_TOOL,
                      WEATHER_ARGS, WEATHER_PARAMS, WEATHER_TOOL, anthropic_blocks, anthropic_text,
                      assert_no_client_secret, chat_body, finish_reasons, system_text, user)


def check_upstream(gw, req: dict) -> dict:
    """What every request forwarded to the Anthropic mock must look like. Returns its body."""
    assert req["method"] == "POST"
    assert req["path"] == "/v1/messages"
    h = req["headers"]
    assert h["host"] == f"127.0.0.1:{gw.mocks.anthropic_port}"
    assert h["x-api-key"] == ANTHROPIC_KEY
    assert h["anthropic-version"] == "2023-06-01"
    assert h.get("content-type", "").startswith("application/json")
    assert "authorization" not in h, f"client Authorization forwarded: {h.get('authorization')}"
    assert_no_client_secret(req)
    body = req["body"]
    assert isinstance(body, dict), req.get("raw_body")
    assert body["model"] == ANTHROPIC_MODEL
    assert isinstance(body["max_tokens"], int) and body["max_tokens"] >= 1
    # the mock would have answered 400 otherwise; make the reason visible if it did
    assert req["response"]["status"] == 200, f"mock rejected the translated request: {req['response']}"
    return body


def check_completion(body: dict, content: str | None, finish: str, req: dict) -> dict:
    assert body["object"] == "chat.completion"
    assert isinstance(body["id"], str) and body["id"]
    assert isinstance(body["created"], int)
    assert body["model"] == ANTHROPIC_MODEL
    assert len(body["choices"]) == 1
    ch = body["choices"][0]
    assert ch["index"] == 0
    assert ch["message"]["role"] == "assistant"
    assert ch["message"]["content"] == content
    assert ch["finish_reason"] == finish
    u = req["response"]["usage"]
    assert body["usage"]["prompt_tokens"] == u["input_tokens"]
    assert body["usage"]["completion_tokens"] == u["output_tokens"]
    assert body["usage"]["total_tokens"] == u["input_tokens"] + u["output_tokens"]
    return ch["message"]


def test_plain_completion(gw):
    r = gw.chat(chat_body("claude", user("Hi there")))
    assert r.status == 200, r.body
    assert r.headers["content-type"].startswith("application/json")
    req = gw.only_request("anthropic")
    sent = check_upstream(gw, req)
    assert [(m["role"], anthropic_text(m["content"])) for m in sent["messages"]] == [("user", "Hi there")]
    assert sent.get("stream") in (None, False)
    assert "system" not in sent or not sent["system"]
    check_completion(r.json(), ANTHROPIC_HELLO + "Hi there", "stop", req)


def test_multibyte_round_trip(gw):
    r = gw.chat(chat_body("claude", user(MULTIBYTE)))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    assert anthropic_text(check_upstream(gw, req)["messages"][0]["content"]) == MULTIBYTE
    check_completion(r.json(), ANTHROPIC_HELLO + MULTIBYTE, "stop", req)


def test_sampling_params_and_max_tokens(gw):
    r = gw.chat(chat_body("claude", user("Hi"), max_tokens=50, temperature=0.5, top_p=0.9))
    assert r.status == 200, r.body
    sent = check_upstream(gw, gw.only_request("anthropic"))
    assert sent["max_tokens"] == 50
    assert sent["temperature"] == 0.5
    assert sent["top_p"] == 0.9


def test_default_max_tokens_is_the_models_maximum(gw):
    # As LiteLLM sends it; the mock refuses more than the model's maximum, as Anthropic does.
    r = gw.chat(chat_body("claude", user("Hi")))
    assert r.status == 200, r.body
    assert check_upstream(gw, gw.only_request("anthropic"))["max_tokens"] == 64000


def test_max_completion_tokens_becomes_max_tokens(gw):
    r = gw.chat(chat_body("claude", user("Hi"), max_completion_tokens=77))
    assert r.status == 200, r.body
    assert check_upstream(gw, gw.only_request("anthropic"))["max_tokens"] == 77


def test_length_finish_reason(gw):
    r = gw.chat(chat_body("claude", user("Hi"), max_tokens=3))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    assert req["response"]["stop_reason"] == "max_tokens"
    check_completion(r.json(), "Hello from the ", "length", req)


@pytest.mark.parametrize("role", ["system", "developer"])
def test_system_prompt_becomes_system(gw, role):
    r = gw.chat(chat_body("claude", {"role": role, "content": "You are terse."}, user("Hi")))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    sent = check_upstream(gw, req)
    assert system_text(sent["system"]) == "You are terse."
    assert [m["role"] for m in sent["messages"]] == ["user"]
    check_completion(r.json(), ANTHROPIC_HELLO + "Hi", "stop", req)


def test_system_as_content_parts(gw):
    sysmsg = {"role": "system", "content": [{"type": "text", "text": "Rule one."}]}
    r = gw.chat(chat_body("claude", sysmsg, user("Hi")))
    assert r.status == 200, r.body
    assert system_text(check_upstream(gw, gw.only_request("anthropic"))["system"]) == "Rule one."


@pytest.mark.parametrize("stop", ["STOP", ["STOP", "NEVER"]])
def test_stop_becomes_stop_sequences(gw, stop):
    r = gw.chat(chat_body("claude", user("alpha STOP beta"), stop=stop))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    sent = check_upstream(gw, req)
    assert sent["stop_sequences"] == (stop if isinstance(stop, list) else [stop])
    assert req["response"]["stop_reason"] == "stop_sequence"
    check_completion(r.json(), ANTHROPIC_HELLO + "alpha ", "stop", req)


def test_multi_turn_conversation(gw):
    msgs = [user("One"), {"role": "assistant", "content": "Two"}, user("Three")]
    r = gw.chat(chat_body("claude", *msgs))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    sent = check_upstream(gw, req)
    assert [(m["role"], anthropic_text(m["content"])) for m in sent["messages"]] == [
        ("user", "One"), ("assistant", "Two"), ("user", "Three")]
    check_completion(r.json(), ANTHROPIC_HELLO + "Three", "stop", req)


def test_text_content_parts(gw):
    r = gw.chat(chat_body("claude", user([{"type": "text", "text": "part one"}])))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    assert anthropic_text(check_upstream(gw, req)["messages"][0]["content"]) == "part one"
    check_completion(r.json(), ANTHROPIC_HELLO + "part one", "stop", req)


def test_image_url_becomes_url_image_block(gw):
    url = "https://example.com/cat.png"
    r = gw.chat(chat_body("claude", user([{"type": "text", "text": "What is this?"},
                                          {"type": "image_url", "image_url": {"url": url}}])))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    blocks = anthropic_blocks(check_upstream(gw, req)["messages"][0]["content"])
    assert {"type": "text", "text": "What is this?"} in blocks
    images = [b for b in blocks if b["type"] == "image"]
    assert images == [{"type": "image", "source": {"type": "url", "url": url}}]
    check_completion(r.json(), ANTHROPIC_HELLO + "What is this? (with 1 image)", "stop", req)


def test_image_data_url_becomes_base64_image_block(gw):
    r = gw.chat(chat_body("claude", user([
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "high"}}])))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    blocks = anthropic_blocks(check_upstream(gw, req)["messages"][0]["content"])
    images = [b for b in blocks if b["type"] == "image"]
    assert images == [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}]
    check_completion(r.json(), ANTHROPIC_HELLO + "Describe (with 1 image)", "stop", req)


def test_image_data_url_media_type_is_kept(gw):
    """The media type comes from the data: URL, not from sniffing or a default."""
    r = gw.chat(chat_body("claude", user([{"type": "text", "text": "See"},
                                          {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,"
                                                                                    + PNG_B64}}])))
    assert r.status == 200, r.body
    blocks = anthropic_blocks(check_upstream(gw, gw.only_request("anthropic"))["messages"][0]["content"])
    assert [b["source"]["media_type"] for b in blocks if b["type"] == "image"] == ["image/jpeg"]


def test_tools_definition_and_tool_call_answer(gw):
    r = gw.chat(chat_body("claude", user("Weather in Zürich?"), tools=[WEATHER_TOOL]))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    sent = check_upstream(gw, req)
    assert sent["tools"] == [{"name": "get_weather", "description": "Get the current weather for a city",
                              "input_schema": WEATHER_PARAMS}]
    assert sent.get("tool_choice") in (None, {"type": "auto"})
    blocks = req["response"]["content"]
    msg = check_completion(r.json(), "I'll use the get_weather tool.", "tool_calls", req)
    (tc,) = msg["tool_calls"]
    assert tc["id"] == blocks[1]["id"]
    assert tc["type"] == "function"
    assert tc["function"]["name"] == "get_weather"
    assert json.loads(tc["function"]["arguments"]) == WEATHER_ARGS


@pytest.mark.parametrize("choice,expected", [
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_time"}}, {"type": "tool", "name": "get_time"}),
])
def test_tool_choice_mapping(gw, choice, expected):
    r = gw.chat(chat_body("claude", user("Now?"), tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=choice))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    sent = check_upstream(gw, req)
    assert {k: v for k, v in sent["tool_choice"].items() if k != "disable_parallel_tool_use"} == expected
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "get_time"]
    (tc,) = r.json()["choices"][0]["message"]["tool_calls"]
    assert tc["function"]["name"] == ("get_time" if isinstance(choice, dict) else "get_weather")


def test_tool_choice_none(gw):
    r = gw.chat(chat_body("claude", user("No tools please"), tools=[WEATHER_TOOL], tool_choice="none"))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    sent = check_upstream(gw, req)
    assert sent.get("tool_choice") == {"type": "none"} or "tools" not in sent
    msg = check_completion(r.json(), ANTHROPIC_HELLO + "No tools please", "stop", req)
    assert not msg.get("tool_calls")


def test_tool_result_round_trip(gw):
    msgs = [user("Weather in Zürich?"),
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "toolu_01", "type": "function",
                 "function": {"name": "get_weather", "arguments": json.dumps({"city": "Zürich"})}}]},
            {"role": "tool", "tool_call_id": "toolu_01", "content": "18°C and sunny"}]
    r = gw.chat(chat_body("claude", *msgs, tools=[WEATHER_TOOL]))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    sent = check_upstream(gw, req)
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["user", "assistant", "user"]
    uses = [b for b in anthropic_blocks(sent["messages"][1]["content"]) if b["type"] == "tool_use"]
    assert uses == [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Zürich"}}]
    results = anthropic_blocks(sent["messages"][2]["content"])
    assert [b["type"] for b in results] == ["tool_result"]
    assert results[0]["tool_use_id"] == "toolu_01"
    assert anthropic_text(results[0]["content"]) == "18°C and sunny"
    check_completion(r.json(), "The tool returned: 18°C and sunny", "stop", req)


def test_parallel_tool_results_merge_into_one_user_turn(gw):
    msgs = [user("Weather and time?"),
            {"role": "assistant", "content": "Checking both.", "tool_calls": [
                {"id": "toolu_a", "type": "function", "function": {"name": "get_weather",
                                                                   "arguments": '{"city": "Oslo"}'}},
                {"id": "toolu_b", "type": "function", "function": {"name": "get_time",
                                                                   "arguments": '{"timezone": "CET"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_a", "content": "rainy"},
            {"role": "tool", "tool_call_id": "toolu_b", "content": "noon"}]
    r = gw.chat(chat_body("claude", *msgs, tools=[WEATHER_TOOL, TIME_TOOL]))
    assert r.status == 200, r.body
    req = gw.only_request("anthropic")
    sent = check_upstream(gw, req)
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assistant = anthropic_blocks(sent["messages"][1]["content"])
    assert anthropic_text(assistant) == "Checking both."
    assert [(b["id"], b["input"]) for b in assistant if b["type"] == "tool_use"] == [
        ("toolu_a", {"city": "Oslo"}), ("toolu_b", {"timezone": "CET"})]
    results = anthropic_blocks(sent["messages"][2]["content"])
    assert [(b["type"], b["tool_use_id"]) for b in results] == [("tool_result", "toolu_a"),
                                                                ("tool_result", "toolu_b")]
    check_completion(r.json(), "The tool returned: rainy noon", "stop", req)


def test_scripted_multiple_tool_calls(gw):
    gw.script("anthropic", {"text": "", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}},
                                                       {"name": "get_time", "arguments": {"timezone": "CET"}}]})
    r = gw.chat(chat_body("claude", user("both"), tools=[WEATHER_TOOL, TIME_TOOL]))
    assert r.status == 200, r.body
    msg = r.json()["choices"][0]["message"]
    assert [(t["function"]["name"], json.loads(t["function"]["arguments"])) for t in msg["tool_calls"]] == [
        ("get_weather", {"city": "Oslo"}), ("get_time", {"timezone": "CET"})]
    assert msg["content"] in (None, "")
    assert r.json()["choices"][0]["finish_reason"] == "tool_calls"


def test_provider_delay_is_waited_for(gw):
    gw.script("anthropic", {"delay_ms": 500})
    r = gw.chat(chat_body("claude", user("slow")))
    assert r.status == 200, r.body
    assert r.elapsed >= 0.5
    assert r.json()["choices"][0]["message"]["content"] == ANTHROPIC_HELLO + "slow"


def test_client_cannot_pick_the_cluster(gw):
    """A routing header sent by the client is overwritten by the filter's own choice."""
    r = gw.chat(chat_body("claude", user("route me")), headers={"x-llm-gateway-cluster": "mock_openai"})
    assert r.status == 200, r.body
    assert gw.requests("openai") == []
    req = gw.only_request("anthropic")
    check_completion(r.json(), ANTHROPIC_HELLO + "route me", "stop", req)


# ---------------------------------------------------------------- structured outputs (response_format)

EVENT_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "when": {
    "type": "object", "properties": {"date": {"type": "string"}}, "required": ["date"]}},
    "required": ["name", "when"]}
CLOSED_EVENT_SCHEMA = {**EVENT_SCHEMA, "additionalProperties": False, "properties": {
    "name": {"type": "string"}, "when": {**EVENT_SCHEMA["properties"]["when"], "additionalProperties": False}}}


def json_schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "event", "schema": schema}}


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_uses_native_output_format(gw, stream):
    """Claude 4.5+: Anthropic's output_format with the beta header; the answer is plain text content."""
    body = chat_body("claude", user("Extract the event."), response_format=json_schema_format(CLOSED_EVENT_SCHEMA))
    if stream:
        res = gw.stream({**body, "stream": True})
        assert res.status == 200 and res.errors() == [] and res.ends_with_done(), res.raw[:300]
        content, finishes = res.content(), finish_reasons(res.chunks())
    else:
        r = gw.chat(body)
        assert r.status == 200, r.body
        msg = r.json()["choices"][0]
        content, finishes = msg["message"]["content"], [msg["finish_reason"]]
        assert "tool_calls" not in msg["message"]
    assert json.loads(content) == {"name": "sample name", "when": {"date": "sample date"}}
    assert finishes == ["stop"]
    req = gw.only_request("anthropic")
    sent = check_upstream(gw, req)
    assert req["headers"]["anthropic-beta"] == "structured-outputs-2025-11-13"
    assert sent["output_format"] == {"type": "json_schema", "schema": CLOSED_EVENT_SCHEMA}
    assert "tools" not in sent and "tool_choice" not in sent


@pytest.fixture(scope="module")
def older_claude(start_gateway, mocks):
    cfg = {"model_list": [{"model_name": "opus41", "litellm_params": {
        "model": "anthropic/claude-opus-4-1", "api_base": f"http://127.0.0.1:{mocks.anthropic_port}",
        "api_key": "os.environ/MOCK_ANTHROPIC_KEY"}}],
        "router_settings": {"disable_cooldowns": True, "num_retries": 0},
        "gateway": {"clusters": {f"127.0.0.1:{mocks.anthropic_port}": "mock_anthropic"}}}
    with start_gateway(cfg, name="older-claude", env={"MOCK_ANTHROPIC_KEY": ANTHROPIC_KEY}) as g:
        yield g


def test_json_schema_on_an_older_model_uses_the_json_tool(older_claude, mocks):
    mocks.reset()
    r = older_claude.chat(chat_body("opus41", user("Extract the event."),
                                    response_format=json_schema_format(CLOSED_EVENT_SCHEMA)))
    assert r.status == 200, r.body
    msg = r.json()["choices"][0]
    assert json.loads(msg["message"]["content"]) == {"name": "sample name", "when": {"date": "sample date"}}
    assert msg["finish_reason"] == "stop" and not msg["message"].get("tool_calls")
    (req,) = older_claude.requests("anthropic")
    assert "anthropic-beta" not in req["headers"] and "output_format" not in req["body"]
    assert req["body"]["tools"] == [{"name": "json_tool_call", "input_schema": CLOSED_EVENT_SCHEMA}]
    assert req["body"]["tool_choice"] == {"type": "tool", "name": "json_tool_call"}


def test_json_schema_with_open_objects_uses_the_json_tool(gw):
    r = gw.chat(chat_body("claude", user("Extract the event."), response_format=json_schema_format(EVENT_SCHEMA)))
    assert r.status == 200, r.body
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"name": "sample name",
                                                                         "when": {"date": "sample date"}}
    req = gw.only_request("anthropic")
    sent = check_upstream(gw, req)
    assert "anthropic-beta" not in req["headers"] and "output_format" not in sent
    assert sent["tools"] == [{"name": "json_tool_call", "input_schema": EVENT_SCHEMA}]


# ---------------------------------------------------------------- LiteLLM's message shaping

PLACEHOLDER = "[System: Empty message content sanitised to satisfy protocol]"
NOTE = "Operator note (not from the user): the following was originally a mid-conversation system-role reminder."


def test_empty_user_content_is_litellms_placeholder(gw):
    r = gw.chat(chat_body("claude", user("Hi"), {"role": "assistant", "content": ""}, user(""), user([])))
    assert r.status == 200, r.body
    sent = check_upstream(gw, gw.only_request("anthropic"))
    assert sent["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Hi"}, {"type": "text", "text": PLACEHOLDER},
        {"type": "text", "text": PLACEHOLDER}]}]
    assert r.json()["choices"][0]["message"]["content"] == ANTHROPIC_HELLO + f"Hi {PLACEHOLDER} {PLACEHOLDER}"


def test_mid_conversation_system_message_stays_in_place(gw):
    r = gw.chat(chat_body("claude", {"role": "system", "content": "Be brief."}, user("Hi"),
                          {"role": "assistant", "content": "Hello."},
                          {"role": "system", "content": "Answer in French from now on."}, user("How are you?")))
    assert r.status == 200, r.body
    sent = check_upstream(gw, gw.only_request("anthropic"))
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["messages"][2] == {"role": "user", "content": [
        {"type": "text", "text": NOTE}, {"type": "text", "text": "Answer in French from now on."},
        {"type": "text", "text": "How are you?"}]}
