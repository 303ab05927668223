"""AWS Bedrock through Envoy + the filter, against the mock Bedrock runtime (tests/mocks/bedrock_mock.py).

The mock recomputes every SigV4 signature with the same secret and answers 403 like
Bedrock when it differs, so every passing request here proves the filter signed the
exact path, host and body it sent. Each test checks both sides: what the client got and
what the mock received (path, signing headers, native body).
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from conftest import (CLIENT_KEY, HTTP_TIMEOUT, MULTIBYTE, PNG_B64, WEATHER_ARGS, WEATHER_TOOL, attach_gateway,
                      assert_no_client_secret, assert_openai_error, chat_body, collect_tool_calls, finish_reasons,
                      user, assert_envoy_log_clean)
from bedrock_mock import ERROR_TYPES, HELLO, SIGNATURE_MISMATCH, BedrockMock

ACCESS_KEY = "AKIDMOCKGATEWAY01"
SECRET = "mock/Secret+Key0123456789abcdefEXAMPLE"
REGION = "us-east-1"
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
MODEL_PATH = "anthropic.claude-3-5-sonnet-20240620-v1%3A0"
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
INVOKE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
INVOKE_PATH = "us.anthropic.claude-sonnet-4-5-20250929-v1%3A0"


@pytest.fixture(scope="module")
def bedrock_mock():
    m = BedrockMock({ACCESS_KEY: SECRET}, region=REGION).start()
    yield m
    m.stop()


def deployment(alias: str, model: str, port: int, secret: str = "os.environ/MOCK_AWS_SECRET") -> dict:
    return {"model_name": alias, "litellm_params": {
        "model": f"bedrock/{model}", "api_base": f"http://127.0.0.1:{port}",
        "aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": secret, "aws_region_name": REGION}}


@pytest.fixture(scope="module")
def bedrock_gateway(start_gateway, bedrock_mock):
    port = bedrock_mock.port
    cfg = {
        "model_list": [
            deployment("br-claude", MODEL, port),
            deployment("br-wrong-secret", MODEL, port, secret="not-the-secret"),
            deployment("br-titan", TITAN, port),
            deployment("br-cohere", COHERE, port),
            deployment("br-invoke", f"invoke/{INVOKE}", port),
        ],
        "router_settings": {"disable_cooldowns": True},
        "gateway": {"clusters": {f"127.0.0.1:{port}": "mock_bedrock"}},
    }
    with start_gateway(cfg, extra_clusters={"mock_bedrock": port}, name="bedrock",
                       env={"MOCK_AWS_SECRET": SECRET}) as g:
        yield g


@pytest.fixture
def br(bedrock_gateway, bedrock_mock, request):
    bedrock_mock.reset()
    return attach_gateway(bedrock_gateway, request)


def only_request(mock: BedrockMock) -> dict:
    reqs = mock.requests()
    assert len(reqs) == 1, [(r["path"], r["response"]) for r in reqs]
    return reqs[0]


def check_signed(req: dict, path: str, port: int) -> dict:
    """The request reached the mock signed correctly; returns its body."""
    assert req["method"] == "POST"
    assert req["path"] == path
    h = req["headers"]
    assert h["host"] == f"127.0.0.1:{port}"
    assert req["signature"]["ok"], req["signature"]
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    assert re.fullmatch(
        rf"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/\d{{8}}/{REGION}/bedrock/aws4_request, "
        r"SignedHeaders=(accept;)?content-type;host;x-amz-date(;x-amz-security-token)?, Signature=[0-9a-f]{64}",
        h["authorization"]), h["authorization"]
    assert h["x-amz-date"][:8] in (today, (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).strftime("%Y%m%d"))
    assert h["content-type"] == "application/json"
    assert_no_client_secret(req)
    assert SECRET not in json.dumps(req["header_list"])
    assert isinstance(req["body"], dict), req.get("raw_body")
    return req["body"]


def text_of(blocks: list) -> str:
    return "".join(b.get("text", "") for b in blocks)


# ---------------------------------------------------------------- chat


def test_plain_completion_signed_and_translated(br, bedrock_mock):
    r = br.chat(chat_body("br-claude", {"role": "system", "content": "Be brief."}, user(MULTIBYTE),
                          max_tokens=64, temperature=0.3, stop=["\n\nHuman:"]))
    assert r.status == 200, r.body
    assert r.headers["content-type"].startswith("application/json")
    req = only_request(bedrock_mock)
    sent = check_signed(req, f"/model/{MODEL_PATH}/converse", bedrock_mock.port)
    assert sent["system"] == [{"text": "Be brief."}]
    assert sent["messages"] == [{"role": "user", "content": [{"text": MULTIBYTE}]}]
    assert sent["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.3, "stopSequences": ["\n\nHuman:"]}
    assert req["response"]["status"] == 200, req["response"]
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL
    msg = body["choices"][0]["message"]
    assert msg == {"role": "assistant", "content": HELLO + MULTIBYTE}
    assert body["choices"][0]["finish_reason"] == "stop"
    u = req["response"]["body"]["usage"]
    assert body["usage"] == {"prompt_tokens": u["inputTokens"], "completion_tokens": u["outputTokens"],
                             "total_tokens": u["inputTokens"] + u["outputTokens"]}


def test_invoke_claude_messages_body_signed(br, bedrock_mock):
    # bedrock/invoke/<Claude>: Anthropic's Messages body at /invoke; the mock checks SigV4 and
    # refuses a body with model/stream or without anthropic_version bedrock-2023-05-31.
    r = br.chat(chat_body("br-invoke", {"role": "system", "content": "Be brief."}, user(MULTIBYTE), max_tokens=64))
    assert r.status == 200, r.body
    req = only_request(bedrock_mock)
    sent = check_signed(req, f"/model/{INVOKE_PATH}/invoke", bedrock_mock.port)
    assert sent == {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                    "system": [{"type": "text", "text": "Be brief."}],
                    "messages": [{"role": "user", "content": [{"type": "text", "text": MULTIBYTE}]}]}
    body = r.json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": HELLO + MULTIBYTE}
    assert body["choices"][0]["finish_reason"] == "stop"
    u = req["response"]["body"]["usage"]
    assert body["usage"]["prompt_tokens"] == u["input_tokens"]
    assert body["usage"]["completion_tokens"] == u["output_tokens"]


def test_invoke_claude_stream_and_tools(br, bedrock_mock):
    s = br.stream(chat_body("br-invoke", user("Stream " + MULTIBYTE), stream=True,
                            stream_options={"include_usage": True}))
    assert s.status == 200 and s.error is None, s.raw[-300:]
    assert s.headers["content-type"].startswith("text/event-stream")
    assert s.ends_with_done() and not s.errors(), s.errors()
    assert s.content() == HELLO + "Stream " + MULTIBYTE
    req = only_request(bedrock_mock)
    sent = check_signed(req, f"/model/{INVOKE_PATH}/invoke-with-response-stream", bedrock_mock.port)
    assert "stream" not in sent and sent["max_tokens"] == 64000
    u = req["response"]["body"]["usage"]
    assert s.chunks()[-1]["usage"]["completion_tokens"] == u["output_tokens"]
    # a streamed tool call, then an exception mid-stream
    bedrock_mock.reset()
    s = br.stream(chat_body("br-invoke", user("Weather?"), stream=True, tools=[WEATHER_TOOL], tool_choice="required"))
    assert s.ends_with_done() and not s.errors(), s.errors()
    calls = collect_tool_calls(s.chunks())
    assert [c["name"] for c in calls] == ["get_weather"]
    assert json.loads(calls[0]["arguments"]) == WEATHER_ARGS
    assert finish_reasons(s.chunks()) == ["tool_calls"]
    bedrock_mock.reset()
    bedrock_mock.script({"exception": "throttlingException", "exception_after": 3})
    s = br.stream(chat_body("br-invoke", user("Hi"), stream=True))
    assert s.ends_with_done()
    (err,) = s.errors()
    assert err["type"] == "rate_limit_error" and err["code"] == "throttlingException", err


def test_wrong_secret_is_rejected_by_bedrock_and_mapped(br, bedrock_mock):
    r = br.chat(chat_body("br-wrong-secret", user("Hi")))
    err = assert_openai_error(r, 403, "permission_error")
    assert err["message"] == SIGNATURE_MISMATCH
    req = only_request(bedrock_mock)
    assert req["signature"]["ok"] is False
    assert req["signature"]["reason"] == SIGNATURE_MISMATCH


def test_stream_with_usage(br, bedrock_mock):
    s = br.stream(chat_body("br-claude", user("Stream " + MULTIBYTE), stream=True,
                            stream_options={"include_usage": True}))
    assert s.error is None, s.error
    assert s.status == 200
    assert s.headers["content-type"].startswith("text/event-stream")
    assert s.ends_with_done()
    assert not s.errors(), s.errors()
    assert s.content() == HELLO + "Stream " + MULTIBYTE
    chunks = s.chunks()
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert finish_reasons(chunks) == ["stop"]
    req = only_request(bedrock_mock)
    check_signed(req, f"/model/{MODEL_PATH}/converse-stream", bedrock_mock.port)
    u = req["response"]["body"]["usage"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": u["inputTokens"], "completion_tokens": u["outputTokens"],
                                   "total_tokens": u["inputTokens"] + u["outputTokens"]}


def test_tool_call_round_trip(br, bedrock_mock):
    first = br.chat(chat_body("br-claude", user("Weather in Zürich?"), tools=[WEATHER_TOOL], tool_choice="auto"))
    assert first.status == 200, first.body
    msg = first.json()["choices"][0]["message"]
    assert first.json()["choices"][0]["finish_reason"] == "tool_calls"
    (call,) = msg["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == WEATHER_ARGS
    sent = check_signed(only_request(bedrock_mock), f"/model/{MODEL_PATH}/converse", bedrock_mock.port)
    spec = sent["toolConfig"]["tools"][0]["toolSpec"]
    assert spec["name"] == "get_weather" and spec["inputSchema"]["json"] == WEATHER_TOOL["function"]["parameters"]
    assert sent["toolConfig"]["toolChoice"] == {"auto": {}}

    bedrock_mock.reset()
    second = br.chat(chat_body("br-claude", user("Weather in Zürich?"), msg,
                               {"role": "tool", "tool_call_id": call["id"], "content": "18°C, sunny"},
                               tools=[WEATHER_TOOL]))
    assert second.status == 200, second.body
    assert second.json()["choices"][0]["message"]["content"] == "The tool returned: 18°C, sunny"
    sent = check_signed(only_request(bedrock_mock), f"/model/{MODEL_PATH}/converse", bedrock_mock.port)
    assert sent["messages"][1]["role"] == "assistant"
    tool_use = next(b["toolUse"] for b in sent["messages"][1]["content"] if "toolUse" in b)
    assert tool_use == {"toolUseId": call["id"], "name": "get_weather", "input": WEATHER_ARGS}
    assert sent["messages"][2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": call["id"], "content": [{"text": "18°C, sunny"}]}}]}


def test_tool_choice_none_under_drop_params_leaves_the_tools_out(br, bedrock_mock):
    """Converse has no `none` choice: without drop_params a 400; with it (here per request) the
    tools are left out, so the model answers in text (LiteLLM would keep them and drop the
    choice, letting the model call a tool the client refused)."""
    refused = br.chat(chat_body("br-claude", user("Weather in Zürich?"), tools=[WEATHER_TOOL], tool_choice="none"))
    assert refused.status == 400 and refused.json()["error"]["param"] == "tool_choice", refused.body
    assert bedrock_mock.requests() == []
    r = br.chat(chat_body("br-claude", user("Weather in Zürich?"), tools=[WEATHER_TOOL], tool_choice="none",
                          drop_params=True))
    assert r.status == 200, r.body
    msg = r.json()["choices"][0]["message"]
    assert "tool_calls" not in msg and msg["content"] == HELLO + "Weather in Zürich?"
    sent = check_signed(only_request(bedrock_mock), f"/model/{MODEL_PATH}/converse", bedrock_mock.port)
    assert "toolConfig" not in sent and "drop_params" not in sent


def test_streamed_parallel_tool_calls(br, bedrock_mock):
    bedrock_mock.script({"tool_calls": [{"name": "get_weather", "arguments": WEATHER_ARGS},
                                        {"name": "get_weather", "arguments": {"city": "Bern"}}]})
    s = br.stream(chat_body("br-claude", user("Two cities"), stream=True, tools=[WEATHER_TOOL]))
    assert s.error is None and s.ends_with_done() and not s.errors(), s.text
    calls = collect_tool_calls(s.chunks())
    assert [json.loads(c["arguments"]) for c in calls] == [WEATHER_ARGS, {"city": "Bern"}]
    assert all(c["type"] == "function" and c["name"] == "get_weather" and c["id"] for c in calls)
    assert finish_reasons(s.chunks()) == ["tool_calls"]


def test_image_base64_and_url(br, bedrock_mock):
    r = br.chat(chat_body("br-claude", user([{"type": "text", "text": "What is it?"},
                                             {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}])))
    assert r.status == 200, r.body
    sent = check_signed(only_request(bedrock_mock), f"/model/{MODEL_PATH}/converse", bedrock_mock.port)
    assert sent["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PNG_B64}}}
    assert r.json()["choices"][0]["message"]["content"].endswith("(with 1 image(s))")

    bedrock_mock.reset()
    r = br.chat(chat_body("br-claude", user([{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])))
    assert_openai_error(r, 400, "invalid_request_error", code="image_url_not_supported")
    assert bedrock_mock.requests() == []


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("status,etype,mapped", [(429, "rate_limit_error", 429), (400, "invalid_request_error", 400),
                                                 (424, "invalid_request_error", 424), (503, "api_error", 503)])
def test_error_mapping(br, bedrock_mock, status, etype, mapped):
    bedrock_mock.script({"status": status})
    r = br.chat(chat_body("br-claude", user("Hi")))
    err = assert_openai_error(r, mapped, etype)
    assert err["message"] == ERROR_TYPES[status][1]


def test_exception_mid_stream_is_an_error_event(br, bedrock_mock):
    bedrock_mock.script({"exception": "throttlingException", "exception_after": 3})
    s = br.stream(chat_body("br-claude", user("one two three four"), stream=True))
    assert s.status == 200 and s.error is None
    assert s.ends_with_done()
    (err,) = s.errors()
    assert err["type"] == "rate_limit_error" and err["code"] == "throttlingException", err


def envoy_log_tail(g) -> str:
    return g.log_path.read_text(errors="replace") if g.log_path.exists() else ""


def test_corrupted_crc_ends_the_stream_cleanly(br, bedrock_mock):
    before = len(envoy_log_tail(br))
    bedrock_mock.script({"corrupt_crc_at": 3})
    s = br.stream(chat_body("br-claude", user("alpha beta gamma delta epsilon"), stream=True,
                            stream_options={"include_usage": True}))
    assert s.status == 200 and s.error is None, s.error
    assert s.ends_with_done()
    assert s.data_items().count("[DONE]") == 1
    (err,) = s.errors()
    assert err["code"] == "upstream_invalid_response" and "CRC" in err["message"], err
    # Only what came before the corrupted message reached the client.
    assert s.content() == HELLO[: len(s.content())]
    assert not [c for c in s.chunks() if c.get("usage")]
    # No wasm panic, and the VM still serves requests.
    log = envoy_log_tail(br)[before:]
    assert not re.search(r"panicked|Wasm VM failed|wasm.*(abort|unreachable)", log, re.IGNORECASE), log[-2000:]
    bedrock_mock.reset()
    r = br.chat(chat_body("br-claude", user("still alive?")))
    assert r.status == 200, r.body


# ---------------------------------------------------------------- embeddings


def test_embeddings_titan(br, bedrock_mock):
    r = br.request("POST", "/v1/embeddings", {"model": "br-titan", "input": "hello bedrock world", "dimensions": 256})
    assert r.status == 200, r.body
    body = r.json()
    req = only_request(bedrock_mock)
    sent = check_signed(req, "/model/amazon.titan-embed-text-v2%3A0/invoke", bedrock_mock.port)
    assert sent == {"inputText": "hello bedrock world", "dimensions": 256}
    native = req["response"]["body"]
    assert body["object"] == "list" and body["model"] == TITAN
    assert body["data"] == [{"object": "embedding", "index": 0, "embedding": native["embedding"]}]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}

    bedrock_mock.reset()
    r = br.request("POST", "/v1/embeddings", {"model": "br-titan", "input": ["a", "b"]})
    assert_openai_error(r, 400, "invalid_request_error", param="input")
    assert bedrock_mock.requests() == []


def test_embeddings_cohere(br, bedrock_mock):
    r = br.request("POST", "/v1/embeddings", {"model": "br-cohere", "input": ["first text", "second"]})
    assert r.status == 200, r.body
    req = only_request(bedrock_mock)
    sent = check_signed(req, "/model/cohere.embed-english-v3/invoke", bedrock_mock.port)
    assert sent == {"texts": ["first text", "second"], "input_type": "search_document"}
    body = r.json()
    assert [d["embedding"] for d in body["data"]] == req["response"]["body"]["embeddings"]
    assert [d["index"] for d in body["data"]] == [0, 1]


# ---------------------------------------------------------------- the official SDK as client


def test_openai_sdk(br, bedrock_mock):
    from openai import OpenAI

    client = OpenAI(base_url=f"{br.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=HTTP_TIMEOUT)
    try:
        out = client.chat.completions.create(model="br-claude", messages=[{"role": "user", "content": "SDK hi"}],
                                             max_tokens=32)
        assert out.choices[0].message.content == HELLO + "SDK hi"
        assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens > 0

        stream = client.chat.completions.create(model="br-claude", messages=[{"role": "user", "content": "SDK stream"}],
                                                stream=True, stream_options={"include_usage": True})
        parts, usage = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage:
                usage = chunk.usage
        assert "".join(parts) == HELLO + "SDK stream"
        assert usage is not None and usage.completion_tokens > 0

        tools = client.chat.completions.create(model="br-claude", messages=[{"role": "user", "content": "weather?"}],
                                               tools=[WEATHER_TOOL], tool_choice="required")
        call = tools.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == WEATHER_ARGS

        emb = client.embeddings.create(model="br-titan", input="sdk embedding")
        assert len(emb.data) == 1 and len(emb.data[0].embedding) > 0

        import openai
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="br-wrong-secret", messages=[{"role": "user", "content": "x"}])
    finally:
        client.close()
    paths = [r["path"] for r in bedrock_mock.requests()]
    assert paths == [f"/model/{MODEL_PATH}/converse", f"/model/{MODEL_PATH}/converse-stream",
                     f"/model/{MODEL_PATH}/converse", "/model/amazon.titan-embed-text-v2%3A0/invoke",
                     f"/model/{MODEL_PATH}/converse"]
    assert [r["signature"]["ok"] for r in bedrock_mock.requests()] == [True, True, True, True, False]


def test_fault_rows(br, bedrock_mock):
    """Issue 17's fault matrix for Bedrock in real Envoy (docs/reliability.md): a 200 that is no
    answer, an HTML 500 / 503, an empty event stream, then a good answer; the client gets the
    OpenAI error for each and the Envoy log stays clean."""
    rows = [({"raw": "<html>not an answer</html>"}, 502),
            ({"raw": "", "content_type": "application/json"}, 502),
            ({"raw": "<html><h1>Internal Server Error</h1></html>", "status": 500}, 502),
            ({"raw": "<html><h1>Service Unavailable</h1></html>", "status": 503}, 503)]
    for behaviour, want in rows:
        bedrock_mock.script(behaviour)
        r = br.chat(chat_body("br-claude", user("x")))
        assert_openai_error(r, want)
    bedrock_mock.script({"truncate_after": 0})
    res = br.stream(chat_body("br-claude", user("x"), stream=True))
    assert res.status == 200 and res.error is None, (res.status, res.error)
    assert res.chunks() == [] and len(res.errors()) == 1, res.text
    assert res.ends_with_done(), res.text
    ok = br.chat(chat_body("br-claude", user("fine")))
    assert ok.status == 200, ok.body[:300]
    assert_envoy_log_clean(br)
