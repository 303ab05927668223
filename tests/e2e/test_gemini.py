"""Gemini API (`gemini/...`) and Vertex AI (`vertex_ai/...`) through real Envoy, against the Google mock
(tests/mocks/mock_gemini.py): the official OpenAI SDK as the client (plain, stream, tools, embeddings),
raw HTTP for the wire details, and what the provider received.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import (run_fault_rows, CLIENT_KEY, HTTP_TIMEOUT, MULTIBYTE, PNG_B64, WEATHER_ARGS, WEATHER_TOOL, TIME_TOOL,
                      assert_no_client_secret, assert_openai_error, attach_gateway, collect_tool_calls,
                      finish_reasons, user)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mocks"))
from mock_gemini import MockGemini  # noqa: E402

GEMINI_KEY = "AIza-mock-gemini-key"
VERTEX_TOKEN = "ya29.mock-vertex-token"
HELLO = "Hello from the mock Gemini provider! You said: "


@pytest.fixture(scope="module")
def google():
    m = MockGemini(chunk_delay_ms=5).start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def gemini_gateway(start_gateway, google):
    base = f"http://127.0.0.1:{google.port}"
    vertex = {"api_base": base, "vertex_project": "proj-1", "vertex_location": "us-central1",
              "api_key": "os.environ/VERTEX_TOKEN"}
    cfg = {
        "model_list": [
            {"model_name": "gem", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_base": base,
                                                     "api_key": "os.environ/GEMINI_KEY"}},
            {"model_name": "gem3", "litellm_params": {"model": "gemini/gemini-3-flash-preview", "api_base": base,
                                                      "api_key": "os.environ/GEMINI_KEY"}},
            {"model_name": "gem-nokey", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_base": base}},
            {"model_name": "gem-embed", "litellm_params": {"model": "gemini/gemini-embedding-001", "api_base": base,
                                                           "api_key": "os.environ/GEMINI_KEY"}},
            {"model_name": "vtx", "litellm_params": {"model": "vertex_ai/gemini-2.5-pro", **vertex}},
            {"model_name": "vtx-embed", "litellm_params": {"model": "vertex_ai/text-embedding-005", **vertex}},
        ],
        "router_settings": {"disable_cooldowns": True, "num_retries": 0},
        "gateway": {"clusters": {f"127.0.0.1:{google.port}": "mock_gemini"}},
    }
    with start_gateway(cfg, extra_clusters={"mock_gemini": google.port}, name="gemini",
                       env={"GEMINI_KEY": GEMINI_KEY, "VERTEX_TOKEN": VERTEX_TOKEN}) as g:
        yield g


@pytest.fixture
def gg(gemini_gateway, google, request):
    google.reset()
    return attach_gateway(gemini_gateway, request)


@pytest.fixture
def sdk(gg):
    from openai import OpenAI

    c = OpenAI(base_url=f"{gg.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=HTTP_TIMEOUT)
    yield c
    c.close()


def only(google) -> dict:
    reqs = google.state.snapshot()
    assert len(reqs) == 1, [(r["method"], r["path"]) for r in reqs]
    return reqs[0]


def script(google, *behaviours: dict) -> None:
    google.state.add_script(list(behaviours))


# ---------------------------------------------------------------- Gemini API, OpenAI SDK


def test_sdk_plain_chat(sdk, google):
    r = sdk.chat.completions.create(
        model="gem", messages=[{"role": "system", "content": "Be brief."}, user("Hi there")],
        temperature=0.2, max_tokens=50, stop=["zzz"])
    assert r.choices[0].message.content == HELLO + "Hi there"
    assert r.choices[0].finish_reason == "stop"
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == "gemini-2.5-flash"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens == len((HELLO + "Hi there").split())
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    req = only(google)
    assert req["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req["headers"]["x-goog-api-key"] == GEMINI_KEY
    assert "key=" not in req["path"]
    assert "authorization" not in req["headers"]
    assert_no_client_secret(req)
    body = req["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi there"}]}]
    assert body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 50, "stopSequences": ["zzz"]}


def test_sdk_stream(sdk, google):
    stream = sdk.chat.completions.create(model="gem", messages=[user(MULTIBYTE)], stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == HELLO + MULTIBYTE
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len((HELLO + MULTIBYTE).split())
    assert len({c.id for c in chunks}) == 1
    req = only(google)
    assert req["path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert "stream" not in req["body"] and "stream_options" not in req["body"]


def test_stream_without_usage_ends_with_done(gg, google):
    s = gg.stream({"model": "gem", "stream": True, "messages": [user("Hi")]})
    assert s.status == 200 and s.error is None, s.raw[-300:]
    assert s.headers["content-type"].startswith("text/event-stream")
    assert s.ends_with_done() and not s.errors()
    assert s.content() == HELLO + "Hi"
    assert all("usage" not in c for c in s.chunks())


def test_tool_schemas_go_as_parameters_or_json_schema(sdk, google):
    # The mock refuses JSON Schema keywords in `parameters` as Google does ("Unknown name"):
    # a strict tool (additionalProperties) must go as parametersJsonSchema, a plain one as parameters.
    strict = {"type": "function", "function": {"name": "lookup", "strict": True, "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"],
        "additionalProperties": False}}}
    r = sdk.chat.completions.create(model="gem", messages=[user("Weather in Zürich?")],
                                    tools=[WEATHER_TOOL, strict], tool_choice="required")
    assert r.choices[0].finish_reason == "tool_calls"
    decls = only(google)["body"]["tools"][0]["functionDeclarations"]
    assert decls[0]["parameters"] == WEATHER_TOOL["function"]["parameters"] and "parametersJsonSchema" not in decls[0]
    assert decls[1]["parametersJsonSchema"] == {k: v for k, v in strict["function"]["parameters"].items()}
    assert "parameters" not in decls[1]


def test_sdk_tools_round_trip_with_thought_signature(sdk, google):
    # Thinking on: the mock signs its function call, the signature rides in the tool call id.
    r = sdk.chat.completions.create(model="gem", messages=[user("Weather in Zürich?")], tools=[WEATHER_TOOL],
                                    tool_choice="required", reasoning_effort="low")
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == WEATHER_ARGS
    assert "__thought__" in call.id and msg.reasoning_content.startswith("Thinking about")
    first_req = only(google)
    first = first_req["body"]
    issued = next(p["thoughtSignature"] for p in first_req["response"]["candidates"][0]["parts"]
                  if "thoughtSignature" in p)
    assert first["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": WEATHER_TOOL["function"]["description"],
        "parameters": WEATHER_TOOL["function"]["parameters"]}]}]
    assert first["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert first["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}
    google.reset()
    r2 = sdk.chat.completions.create(model="gem", tools=[WEATHER_TOOL], messages=[
        user("Weather in Zürich?"), msg.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18°C, cloudy"}])
    assert r2.choices[0].message.content == "The tool returned: 18°C, cloudy"
    assert r2.choices[0].finish_reason == "stop"
    contents = only(google)["body"]["contents"]
    model_turn = contents[1]
    assert model_turn["role"] == "model"
    fc = next(p for p in model_turn["parts"] if "functionCall" in p)
    assert fc["functionCall"] == {"name": "get_weather", "args": WEATHER_ARGS}
    # the signature went back to Gemini as it came (the id carries it URL-safe)
    assert fc["thoughtSignature"] == issued
    assert all(c.isalnum() or c in "_-" for c in call.id), call.id
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"content": "18°C, cloudy"}}}]}


def test_sdk_stream_tools(sdk, google):
    stream = sdk.chat.completions.create(model="gem", messages=[user("What time is it in Tokyo?")],
                                         tools=[WEATHER_TOOL, TIME_TOOL],
                                         tool_choice={"type": "function", "function": {"name": "get_time"}},
                                         stream=True)
    chunks = [c.model_dump() for c in stream]
    calls = collect_tool_calls(chunks)
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [("get_time", {"timezone": "sample timezone"})]
    assert calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"
    assert finish_reasons(chunks) == ["tool_calls"]
    assert only(google)["body"]["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}


def test_tool_history_from_another_provider_on_gemini_3(sdk, google):
    """A tool call made elsewhere (no signature) continues on a Gemini 3 model with Google's skip signature."""
    r = sdk.chat.completions.create(model="gem3", tools=[TIME_TOOL], messages=[
        user("time?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_01", "type": "function", "function": {"name": "get_time", "arguments": '{"timezone": "UTC"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "12:00"}])
    assert r.choices[0].message.content == "The tool returned: 12:00"
    part = only(google)["body"]["contents"][1]["parts"][0]
    assert part["thoughtSignature"] == "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I="


def test_sdk_json_schema_and_candidates(sdk, google):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    r = sdk.chat.completions.create(model="gem", messages=[user("Where?")], n=2, response_format={
        "type": "json_schema", "json_schema": {"name": "place", "strict": True, "schema": schema}})
    assert [c.index for c in r.choices] == [0, 1]
    assert json.loads(r.choices[0].message.content) == {"city": "Zürich"}
    gc = only(google)["body"]["generationConfig"]
    assert gc == {"candidateCount": 2, "responseMimeType": "application/json", "responseJsonSchema": schema}


def test_images_inline_and_by_url(gg, google):
    r = gg.chat({"model": "gem", "messages": [user([
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}])]})
    assert r.status == 200, r.body
    assert r.json()["choices"][0]["message"]["content"] == HELLO + "Compare (with 2 images)"
    parts = only(google)["body"]["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}
    assert parts[2] == {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}}


# ---------------------------------------------------------------- embeddings


def test_sdk_embeddings_one_and_many(sdk, google):
    # The SDK asks for base64 by default and decodes it; floats come back and it keeps them.
    one = sdk.embeddings.create(model="gem-embed", input="hello world", dimensions=16)
    assert len(one.data) == 1 and len(one.data[0].embedding) == 16
    assert all(isinstance(x, float) for x in one.data[0].embedding)
    assert one.model == "gemini-embedding-001"
    assert one.usage.prompt_tokens == 0  # the Gemini embedding API reports no tokens
    req = only(google)
    assert req["path"] == "/v1beta/models/gemini-embedding-001:embedContent"
    assert req["body"] == {"content": {"parts": [{"text": "hello world"}]}, "outputDimensionality": 16}
    assert req["headers"]["x-goog-api-key"] == GEMINI_KEY
    google.reset()
    many = sdk.embeddings.create(model="gem-embed", input=["a", "b", "a"], encoding_format="float")
    assert [d.index for d in many.data] == [0, 1, 2]
    assert many.data[0].embedding == many.data[2].embedding != many.data[1].embedding
    req = only(google)
    assert req["path"] == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert [q["model"] for q in req["body"]["requests"]] == ["models/gemini-embedding-001"] * 3


# ---------------------------------------------------------------- Vertex AI


def test_vertex_chat_stream_and_embeddings(sdk, google):
    r = sdk.chat.completions.create(model="vtx", messages=[user("Bonjour")])
    assert r.choices[0].message.content == HELLO + "Bonjour"
    req = only(google)
    assert req["path"] == "/v1/projects/proj-1/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent"
    assert req["headers"]["authorization"] == f"Bearer {VERTEX_TOKEN}"
    assert "x-goog-api-key" not in req["headers"]
    assert_no_client_secret(req)
    google.reset()
    chunks = list(sdk.chat.completions.create(model="vtx", messages=[user("Salut")], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == HELLO + "Salut"
    assert only(google)["path"].endswith("/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
    google.reset()
    e = sdk.embeddings.create(model="vtx-embed", input=["one two", "three"], dimensions=4)
    assert [len(d.embedding) for d in e.data] == [4, 4]
    assert e.usage.prompt_tokens == 3  # Vertex's statistics.token_count, summed
    req = only(google)
    assert req["path"] == "/v1/projects/proj-1/locations/us-central1/publishers/google/models/text-embedding-005:predict"
    assert req["body"] == {"instances": [{"content": "one two"}, {"content": "three"}],
                           "parameters": {"outputDimensionality": 4}}


# ---------------------------------------------------------------- errors


def test_provider_errors_are_openai_shaped(gg, google):
    script(google, {"status": 429})
    r = gg.chat({"model": "gem", "messages": [user("Hi")]})
    assert_openai_error(r, 429, "rate_limit_error", code="RESOURCE_EXHAUSTED")
    script(google, {"status": 400, "body": {"error": {
        "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}})
    r = gg.chat({"model": "gem", "messages": [user("Hi")]})
    assert_openai_error(r, 400, "invalid_request_error", code="API_KEY_INVALID", message_contains="API key not valid")
    # A deployment without a key: Google refuses unregistered callers.
    r = gg.chat({"model": "gem-nokey", "messages": [user("Hi")]})
    assert_openai_error(r, 403, "permission_error", code="PERMISSION_DENIED")


def test_mock_validation_reaches_the_client(gg, google):
    """Gemini's own 400 (here: a function response without its call turn) comes back as the client's 400."""
    r = gg.chat({"model": "gem", "messages": [
        user("Hi"), {"role": "assistant", "content": "no call here"},
        {"role": "tool", "tool_call_id": "x", "name": "get_time", "content": "12:00"}]})
    assert_openai_error(r, 400, "invalid_request_error", code="INVALID_ARGUMENT",
                        message_contains="number of function response parts")


def test_unsupported_parameter_never_reaches_google(gg, google):
    r = gg.chat({"model": "gem", "messages": [user("Hi")], "logprobs": True})
    assert_openai_error(r, 400, "invalid_request_error", param="logprobs", code="unsupported_parameter")
    assert google.state.snapshot() == []


def test_stream_error_event_and_truncation(gg, google):
    script(google, {"error_after_events": 3})
    s = gg.stream({"model": "gem", "stream": True, "messages": [user("one two three four five")]})
    assert s.status == 200 and s.ends_with_done()
    errs = s.errors()
    assert len(errs) == 1 and errs[0]["code"] == "UNAVAILABLE", errs
    assert s.data_items().count("[DONE]") == 1
    script(google, {"truncate_after_events": 2})
    s = gg.stream({"model": "gem", "stream": True, "messages": [user("one two three four five")]})
    assert s.ends_with_done()
    assert [e["code"] for e in s.errors()] == ["upstream_stream_truncated"]


def test_blocked_prompt_is_content_filter(sdk, google):
    script(google, {"response": {"promptFeedback": {"blockReason": "SAFETY"},
                                 "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}})
    r = sdk.chat.completions.create(model="gem", messages=[user("bad")])
    assert r.choices[0].finish_reason == "content_filter" and r.choices[0].message.content is None
    assert r.usage.prompt_tokens == 3


# ---------------------------------------------------------------- LiteLLM's message shaping


@pytest.mark.parametrize("alias", ["gem", "vtx"])
def test_json_object_tool_result_is_the_function_response(sdk, google, alias):
    first = sdk.chat.completions.create(model=alias, messages=[user("Weather in Zürich?")], tools=[WEATHER_TOOL],
                                        tool_choice="required")
    msg = first.choices[0].message
    (call,) = msg.tool_calls
    google.reset()
    history = [user("Weather in Zürich?"), msg.model_dump(exclude_none=True)]
    r = sdk.chat.completions.create(model=alias, tools=[WEATHER_TOOL], messages=history + [
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18, "sky": "cloudy"}'}])
    said = r.choices[0].message.content
    assert said.startswith("The tool returned: ")
    assert json.loads(said.removeprefix("The tool returned: ")) == {"temp_c": 18, "sky": "cloudy"}
    assert only(google)["body"]["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18, "sky": "cloudy"}}}]}
    google.reset()
    r = sdk.chat.completions.create(model=alias, tools=[WEATHER_TOOL], messages=history + [
        {"role": "tool", "tool_call_id": call.id, "content": "[18, 19]"}])
    assert r.choices[0].message.content == "The tool returned: [18, 19]"
    assert only(google)["body"]["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"content": "[18, 19]"}}}]


@pytest.mark.parametrize("alias", ["gem", "vtx"])
def test_system_messages_anywhere_become_one_part_each(sdk, google, alias):
    r = sdk.chat.completions.create(model=alias, messages=[
        {"role": "system", "content": "S1"},
        {"role": "system", "content": [{"type": "text", "text": "S2a "}, {"type": "text", "text": "S2b"}]},
        user("U1"), {"role": "system", "content": "S3"}, {"role": "developer", "content": "D4"},
        {"role": "assistant", "content": "A1"}, {"role": "system", "content": ""}, user("U2")])
    assert r.choices[0].message.content == HELLO + "U2"
    body = only(google)["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "S1"}, {"text": "S2a S2b"}, {"text": "S3"},
                                                   {"text": "D4"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "U1"}]},
                                {"role": "model", "parts": [{"text": "A1"}]},
                                {"role": "user", "parts": [{"text": "U2"}]}]


@pytest.mark.parametrize("alias,messages,sent", [
    ("gem", [user("")], [{"role": "user", "parts": [{"text": " "}]}]),
    ("vtx", [user([])], [{"role": "user", "parts": [{"text": " "}]}]),
    ("gem", [user("Hi"), {"role": "assistant", "content": "Hello"}, user("")],
     [{"role": "user", "parts": [{"text": "Hi"}]}, {"role": "model", "parts": [{"text": "Hello"}]},
      {"role": "user", "parts": [{"text": " "}]}]),
    ("vtx", [{"role": "system", "content": "Be brief."}], [{"role": "user", "parts": [{"text": "."}]}]),
])
def test_empty_user_content_is_sent_as_litellm_sanitises_it(gg, google, alias, messages, sent):
    r = gg.chat({"model": alias, "messages": messages})
    assert r.status == 200, r.body
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    assert only(google)["body"]["contents"] == sent


@pytest.mark.parametrize("alias", ["gem", "vtx"])
def test_fault_rows(gg, google, alias):
    run_fault_rows(gg, lambda b: script(google, b), alias)
