"""The mock providers on their own (no Envoy, no filter): wire format, validation, fault switches.

These pin down what the gateway tests rely on, so a gateway failure is never a mock bug.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from conftest import (MULTIBYTE, PNG_B64, WEATHER_ARGS, WEATHER_PARAMS, WEATHER_TOOL, ANTHROPIC_HELLO,
                      OPENAI_HELLO)

AHDRS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01", "content-type": "application/json"}
OHDRS = {"authorization": "Bearer sk-oai-test", "content-type": "application/json"}
ATOOL = {"name": "get_weather", "description": "weather", "input_schema": WEATHER_PARAMS}


def post(port, path, body, headers, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        conn.request("POST", path, body=data, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def control(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None)
        r = conn.getresponse()
        assert r.status == 200
        return json.loads(r.read())
    finally:
        conn.close()


def raw_chunks(port, path, body, headers, timeout=10):
    """Send a request on a raw socket; return (head, [chunk payloads], error)."""
    data = json.dumps(body, ensure_ascii=False).encode()
    req = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(data)}\r\n"
    req += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    err = None
    try:
        s.sendall(req.encode() + data)
        while True:
            try:
                piece = s.recv(65536)
            except OSError as e:
                err = e
                break
            if not piece:
                break
            buf += piece
            if buf.endswith(b"\r\n0\r\n\r\n"):
                break
    finally:
        s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    chunks = []
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        if not line:
            break
        n = int(line, 16)
        if n == 0:
            chunks.append(b"")
            break
        chunks.append(rest[:n])
        rest = rest[n + 2:]
    return head.decode(), chunks, err


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        ev, data = None, []
        for ln in block.split("\n"):
            if ln.startswith("event: "):
                ev = ln[7:]
            elif ln.startswith("data: "):
                data.append(ln[6:])
        out.append((ev, "\n".join(data)))
    return out


# ---------------------------------------------------------------- Anthropic


def test_anthropic_default_answer_and_headers(mock):
    st, h, body = post(mock.anthropic_port, "/v1/messages",
                       {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [
                           {"role": "user", "content": MULTIBYTE}]}, AHDRS)
    assert st == 200
    assert h["content-type"] == "application/json"
    assert h["request-id"].startswith("req_")
    msg = json.loads(body)
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["id"].startswith("msg_")
    assert msg["model"] == "claude-sonnet-4-5"
    assert msg["content"] == [{"type": "text", "text": ANTHROPIC_HELLO + MULTIBYTE}]
    assert msg["stop_reason"] == "end_turn" and msg["stop_sequence"] is None
    assert msg["usage"]["input_tokens"] == 2 and msg["usage"]["output_tokens"] == 10
    assert "é".encode() in body, "JSON must carry raw UTF-8, not \\u escapes"


def test_anthropic_stream_events_and_mid_character_split(mock):
    head, chunks, err = raw_chunks(mock.anthropic_port, "/v1/messages", {
        "model": "m", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": MULTIBYTE}]},
        AHDRS)
    assert err is None
    assert "transfer-encoding: chunked" in head.lower() and "text/event-stream" in head
    assert chunks[-1] == b"", "chunked body must end with the terminating chunk"
    # at least one chunk ends inside a multi-byte character
    split = [c for c in chunks[:-1] if c and not _decodes(c)]
    assert split, "expected one write split in the middle of a UTF-8 character"
    raw = b"".join(chunks)
    events = sse_events(raw)
    names = [e for e, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    for name, data in events:
        assert json.loads(data)["type"] == name
    text = "".join(json.loads(d)["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == ANTHROPIC_HELLO + MULTIBYTE
    delta = json.loads(events[-2][1])
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"] == {"output_tokens": 10}
    assert len(chunks) > 10, "each event must be its own write"


def _decodes(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_anthropic_tool_use_default_and_streamed_input(mock):
    body = {"model": "m", "max_tokens": 100, "tools": [ATOOL],
            "messages": [{"role": "user", "content": "Weather in Zürich?"}]}
    st, _, raw = post(mock.anthropic_port, "/v1/messages", body, AHDRS)
    msg = json.loads(raw)
    assert st == 200 and msg["stop_reason"] == "tool_use"
    assert msg["content"][0] == {"type": "text", "text": "I'll use the get_weather tool."}
    tu = msg["content"][1]
    assert tu["type"] == "tool_use" and tu["name"] == "get_weather" and tu["input"] == WEATHER_ARGS
    assert tu["id"].startswith("toolu_")
    st, _, raw = post(mock.anthropic_port, "/v1/messages", {**body, "stream": True}, AHDRS)
    events = [json.loads(d) for _, d in sse_events(raw)]
    pieces = [e["delta"]["partial_json"] for e in events
              if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"]
    assert pieces[0] == "" and len(pieces) == 5
    assert json.loads("".join(pieces)) == WEATHER_ARGS
    assert [e for e in events if e["type"] == "message_delta"][0]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_tool_result_answer(mock):
    body = {"model": "m", "max_tokens": 100, "tools": [ATOOL], "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Zürich"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C"}]}]}
    st, _, raw = post(mock.anthropic_port, "/v1/messages", body, AHDRS)
    assert st == 200, raw
    assert json.loads(raw)["content"] == [{"type": "text", "text": "The tool returned: 18°C"}]


def test_anthropic_stop_sequences_and_max_tokens(mock):
    base = {"model": "m", "messages": [{"role": "user", "content": "alpha STOP beta"}]}
    _, _, raw = post(mock.anthropic_port, "/v1/messages", {**base, "max_tokens": 100, "stop_sequences": ["STOP"]},
                     AHDRS)
    msg = json.loads(raw)
    assert msg["content"][0]["text"] == ANTHROPIC_HELLO + "alpha "
    assert (msg["stop_reason"], msg["stop_sequence"]) == ("stop_sequence", "STOP")
    _, _, raw = post(mock.anthropic_port, "/v1/messages", {**base, "max_tokens": 3}, AHDRS)
    msg = json.loads(raw)
    assert msg["content"][0]["text"] == "Hello from the " and msg["stop_reason"] == "max_tokens"
    assert msg["usage"]["output_tokens"] == 3


GOOD = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("headers,body,status,etype,needle", [
    ({"anthropic-version": "2023-06-01"}, GOOD, 401, "authentication_error", "x-api-key"),
    ({"x-api-key": "k"}, GOOD, 400, "invalid_request_error", "anthropic-version"),
    (AHDRS, {"model": "m", "messages": GOOD["messages"]}, 400, "invalid_request_error", "max_tokens: Field required"),
    (AHDRS, {**GOOD, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     400, "invalid_request_error", "roles must alternate"),
    (AHDRS, {**GOOD, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "b"}]},
     400, "invalid_request_error", "messages.0.role"),
    (AHDRS, {**GOOD, "stream_options": {"include_usage": True}}, 400, "invalid_request_error",
     "stream_options: Extra inputs are not permitted"),
    (AHDRS, {**GOOD, "tools": [{"name": "f", "parameters": {"type": "object"}}]}, 400, "invalid_request_error",
     "input_schema: Field required"),
    (AHDRS, {**GOOD, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}], "tools": [ATOOL]},
     400, "invalid_request_error", "unexpected `tool_use_id`"),
    (AHDRS, {**GOOD, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": PNG_B64}}]}]},
     400, "invalid_request_error", "media_type"),
    (AHDRS, {**GOOD, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
     400, "invalid_request_error", "image_url"),
    (AHDRS, {**GOOD, "temperature": 1.5}, 400, "invalid_request_error", "temperature"),
])
def test_anthropic_validation(mock, headers, body, status, etype, needle):
    st, h, raw = post(mock.anthropic_port, "/v1/messages", body, headers)
    assert st == status, raw
    err = json.loads(raw)
    assert err["type"] == "error" and err["error"]["type"] == etype
    assert needle in err["error"]["message"], err
    assert h["content-type"] == "application/json"


def test_anthropic_accepts_valid_images(mock):
    body = {**GOOD, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]}], "max_tokens": 100}
    st, _, raw = post(mock.anthropic_port, "/v1/messages", body, AHDRS)
    assert st == 200, raw
    assert json.loads(raw)["content"][0]["text"] == ANTHROPIC_HELLO + "look (with 2 images)"


@pytest.mark.parametrize("status,etype,message", [
    (529, "overloaded_error", "Overloaded"), (500, "api_error", "Internal server error"),
    (429, "rate_limit_error", None), (401, "authentication_error", None), (400, "invalid_request_error", None)])
def test_anthropic_scripted_errors(mock, status, etype, message):
    control(mock.anthropic_port, "POST", "/__mock/script", [{"status": status}])
    st, h, raw = post(mock.anthropic_port, "/v1/messages", GOOD, AHDRS)
    assert st == status
    err = json.loads(raw)
    assert err["type"] == "error" and err["error"]["type"] == etype
    if message:
        assert err["error"]["message"] == message
    if status == 429:
        assert h["retry-after"] == "1"


def test_script_consumed_in_order_and_requests_recorded(mock):
    control(mock.anthropic_port, "POST", "/__mock/script", [{"status": 500}, {"text": "scripted ✓"}])
    assert len(control(mock.anthropic_port, "GET", "/__mock/script")) == 2
    assert post(mock.anthropic_port, "/v1/messages", GOOD, AHDRS)[0] == 500
    st, _, raw = post(mock.anthropic_port, "/v1/messages", GOOD, AHDRS)
    assert json.loads(raw)["content"][0]["text"] == "scripted ✓"
    assert json.loads(post(mock.anthropic_port, "/v1/messages", GOOD, AHDRS)[2])["content"][0]["text"] \
        == ANTHROPIC_HELLO + "hi"
    reqs = control(mock.anthropic_port, "GET", "/__mock/requests")
    assert [r["response"]["status"] for r in reqs] == [500, 200, 200]
    assert [r["script"] for r in reqs] == [{"status": 500}, {"text": "scripted ✓"}, None]
    assert reqs[0]["headers"]["x-api-key"] == "sk-ant-test" and reqs[0]["body"] == GOOD
    assert ["x-api-key", "sk-ant-test"] in [[k.lower(), v] for k, v in reqs[0]["header_list"]]
    control(mock.anthropic_port, "POST", "/__mock/reset")
    assert control(mock.anthropic_port, "GET", "/__mock/requests") == []


def test_chunked_request_body_is_read(mock):
    data = json.dumps(GOOD).encode()
    s = socket.create_connection(("127.0.0.1", mock.anthropic_port), timeout=10)
    try:
        head = "POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in AHDRS.items()) + "Connection: close\r\n\r\n"
        s.sendall(head.encode() + b"%x\r\n%s\r\n" % (10, data[:10]) + b"%x\r\n%s\r\n0\r\n\r\n" % (
            len(data) - 10, data[10:]))
        buf = b""
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            buf += piece
    finally:
        s.close()
    assert buf.startswith(b"HTTP/1.1 200"), buf[:200]
    assert control(mock.anthropic_port, "GET", "/__mock/requests")[0]["body"] == GOOD


def test_reset_after_events_aborts_connection(mock):
    control(mock.anthropic_port, "POST", "/__mock/script", [{"reset_after_events": 3}])
    head, chunks, err = raw_chunks(mock.anthropic_port, "/v1/messages", {**GOOD, "stream": True}, AHDRS)
    assert isinstance(err, ConnectionResetError), err
    assert b"" not in chunks, "no terminating chunk after a reset"
    assert [e for e, _ in sse_events(b"".join(chunks))] == ["message_start", "content_block_start", "ping"]


def test_truncate_after_events_ends_cleanly(mock):
    control(mock.anthropic_port, "POST", "/__mock/script", [{"truncate_after_events": 5}])
    head, chunks, err = raw_chunks(mock.anthropic_port, "/v1/messages", {**GOOD, "stream": True}, AHDRS)
    assert err is None and chunks[-1] == b""
    names = [e for e, _ in sse_events(b"".join(chunks))]
    assert len(names) == 5 and "message_stop" not in names


def test_error_after_events_sends_error_event(mock):
    control(mock.anthropic_port, "POST", "/__mock/script", [{"error_after_events": 4}])
    _, chunks, err = raw_chunks(mock.anthropic_port, "/v1/messages", {**GOOD, "stream": True}, AHDRS)
    events = sse_events(b"".join(chunks))
    assert events[-1][0] == "error"
    assert json.loads(events[-1][1]) == {"type": "error", "error": {"type": "overloaded_error",
                                                                    "message": "Overloaded"}}


# ---------------------------------------------------------------- OpenAI

OGOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_openai_default_answer(mock):
    st, h, raw = post(mock.openai_port, "/v1/chat/completions", OGOOD, OHDRS)
    assert st == 200 and h["content-type"] == "application/json" and h["x-request-id"].startswith("req_")
    b = json.loads(raw)
    assert b["object"] == "chat.completion" and b["id"].startswith("chatcmpl-")
    assert b["choices"][0]["message"]["content"] == OPENAI_HELLO + "hi"
    assert b["choices"][0]["finish_reason"] == "stop"
    assert b["usage"]["prompt_tokens"] == 1 and b["usage"]["total_tokens"] == 10


def test_openai_any_prefix_path(mock):
    st, _, _ = post(mock.openai_port, "/openai/deployments/x/chat/completions?api-version=1", OGOOD, OHDRS)
    assert st == 200
    st, _, raw = post(mock.openai_port, "/v1/edits", OGOOD, OHDRS)
    assert st == 404 and json.loads(raw)["error"]["type"] == "invalid_request_error"


def test_openai_legacy_completions(mock):
    st, _, raw = post(mock.openai_port, "/v1/completions", {"model": "m", "prompt": ["a", "b"], "echo": True},
                      OHDRS)
    assert st == 200, raw
    body = json.loads(raw)
    assert body["object"] == "text_completion"
    assert [c["text"][:1] for c in body["choices"]] == ["a", "b"]
    st, _, raw = post(mock.openai_port, "/v1/completions", OGOOD, OHDRS)
    assert st == 400, "a chat body is not a completions request"


def test_openai_stream_with_usage(mock):
    _, chunks, err = raw_chunks(mock.openai_port, "/v1/chat/completions",
                                {**OGOOD, "stream": True, "stream_options": {"include_usage": True},
                                 "messages": [{"role": "user", "content": MULTIBYTE}]}, OHDRS)
    assert err is None
    assert [c for c in chunks[:-1] if not _decodes(c)], "expected a mid-character split"
    data = [d for _, d in sse_events(b"".join(chunks))]
    assert data[-1] == "[DONE]"
    objs = [json.loads(d) for d in data[:-1]]
    assert all(o["object"] == "chat.completion.chunk" for o in objs)
    assert all("usage" in o for o in objs)
    assert objs[-1]["choices"] == [] and objs[-1]["usage"]["completion_tokens"] == 10
    text = "".join(o["choices"][0]["delta"].get("content") or "" for o in objs if o["choices"])
    assert text == OPENAI_HELLO + MULTIBYTE
    # without include_usage: no usage field at all
    _, chunks, _ = raw_chunks(mock.openai_port, "/v1/chat/completions", {**OGOOD, "stream": True}, OHDRS)
    objs = [json.loads(d) for _, d in sse_events(b"".join(chunks)) if d != "[DONE]"]
    assert not any("usage" in o for o in objs)


def test_openai_tool_calls(mock):
    body = {**OGOOD, "tools": [WEATHER_TOOL]}
    _, _, raw = post(mock.openai_port, "/v1/chat/completions", body, OHDRS)
    b = json.loads(raw)
    msg = b["choices"][0]["message"]
    assert msg["content"] is None and b["choices"][0]["finish_reason"] == "tool_calls"
    assert msg["tool_calls"][0]["function"]["name"] == "get_weather"
    assert json.loads(msg["tool_calls"][0]["function"]["arguments"]) == WEATHER_ARGS
    control(mock.openai_port, "POST", "/__mock/script",
            [{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}])
    _, chunks, _ = raw_chunks(mock.openai_port, "/v1/chat/completions", {**body, "stream": True}, OHDRS)
    objs = [json.loads(d) for _, d in sse_events(b"".join(chunks)) if d != "[DONE]"]
    args = "".join(tc["function"].get("arguments", "") for o in objs for c in o["choices"]
                   for tc in c["delta"].get("tool_calls") or [])
    assert json.loads(args) == {"city": "Oslo"}


@pytest.mark.parametrize("headers,body,status,param", [
    ({"content-type": "application/json"}, OGOOD, 401, None),
    (OHDRS, {"model": "x"}, 400, "messages"),
    (OHDRS, {**OGOOD, "stream_options": {"include_usage": True}}, 400, "stream_options"),
    (OHDRS, {**OGOOD, "messages": [{"role": "tool", "tool_call_id": "c1", "content": "x"}]}, 400,
     "messages.[0].role"),
])
def test_openai_validation(mock, headers, body, status, param):
    st, _, raw = post(mock.openai_port, "/v1/chat/completions", body, headers)
    assert st == status, raw
    err = json.loads(raw)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param


def test_openai_scripted_error_body_and_delay(mock):
    control(mock.openai_port, "POST", "/__mock/script",
            [{"status": 400, "body": {"error": {"message": "bad thing", "type": "invalid_request_error",
                                                "param": "temperature", "code": "invalid_value"}}},
             {"delay_ms": 300}])
    st, _, raw = post(mock.openai_port, "/v1/chat/completions", OGOOD, OHDRS)
    assert st == 400 and json.loads(raw)["error"]["param"] == "temperature"
    t0 = time.monotonic()
    st, _, _ = post(mock.openai_port, "/v1/chat/completions", OGOOD, OHDRS)
    assert st == 200 and time.monotonic() - t0 >= 0.3


# ---------------------------------------------------------------- per-model scripts (routing tests)


def test_script_matched_by_model_and_repeated(mock):
    control(mock.openai_port, "POST", "/__mock/script",
            [{"match_model": "model-a", "status": 500, "repeat": 2}, {"match_model": "model-b", "text": "b!"}])
    a, b = {**OGOOD, "model": "model-a"}, {**OGOOD, "model": "model-b"}
    assert post(mock.openai_port, "/v1/chat/completions", OGOOD, OHDRS)[0] == 200  # other model: untouched
    assert post(mock.openai_port, "/v1/chat/completions", a, OHDRS)[0] == 500
    assert control(mock.openai_port, "GET", "/__mock/script")[0]["repeat"] == 1
    st, _, raw = post(mock.openai_port, "/v1/chat/completions", b, OHDRS)
    assert st == 200 and json.loads(raw)["choices"][0]["message"]["content"] == "b!"
    assert post(mock.openai_port, "/v1/chat/completions", a, OHDRS)[0] == 500
    assert post(mock.openai_port, "/v1/chat/completions", a, OHDRS)[0] == 200  # used up
    assert control(mock.openai_port, "GET", "/__mock/script") == []
    reqs = control(mock.openai_port, "GET", "/__mock/requests")
    assert [r["body"]["model"] for r in reqs] == ["gpt-4o-mini", "model-a", "model-b", "model-a", "model-a"]
    assert [r["response"]["status"] for r in reqs] == [200, 500, 200, 500, 200]


def test_script_matched_by_stream_flag(mock):
    control(mock.openai_port, "POST", "/__mock/script", [{"match_stream": True, "status": 503}])
    assert post(mock.openai_port, "/v1/chat/completions", OGOOD, OHDRS)[0] == 200
    assert post(mock.openai_port, "/v1/chat/completions", {**OGOOD, "stream": True}, OHDRS)[0] == 503


def test_reset_before_headers_on_a_stream(mock):
    control(mock.anthropic_port, "POST", "/__mock/script", [{"reset_before_headers": True}])
    head, chunks, err = raw_chunks(mock.anthropic_port, "/v1/messages", {**GOOD, "stream": True}, AHDRS)
    assert head == "" and chunks == []
    assert isinstance(err, ConnectionResetError) or err is None, err
    [rec] = control(mock.anthropic_port, "GET", "/__mock/requests")
    assert rec["response"]["outcome"] == "reset"


def test_delete_script_keeps_requests(mock):
    control(mock.openai_port, "POST", "/__mock/script", [{"status": 500}, {"status": 500}])
    assert post(mock.openai_port, "/v1/chat/completions", OGOOD, OHDRS)[0] == 500
    control(mock.openai_port, "DELETE", "/__mock/script")
    assert control(mock.openai_port, "GET", "/__mock/script") == []
    assert len(control(mock.openai_port, "GET", "/__mock/requests")) == 1
    assert post(mock.openai_port, "/v1/chat/completions", OGOOD, OHDRS)[0] == 200


def test_reset_cuts_a_hang_short(mock):
    control(mock.openai_port, "POST", "/__mock/script", [{"delay_ms": 30000}])
    out = {}

    def call():
        out["status"] = post(mock.openai_port, "/v1/chat/completions", OGOOD, OHDRS, timeout=20)[0]

    t0 = time.monotonic()
    th = threading.Thread(target=call, daemon=True)
    th.start()
    deadline = time.monotonic() + 5
    while not control(mock.openai_port, "GET", "/__mock/requests") and time.monotonic() < deadline:
        time.sleep(0.02)
    control(mock.openai_port, "POST", "/__mock/reset")
    th.join(timeout=10)
    assert out.get("status") == 200 and time.monotonic() - t0 < 5


def test_stall_after_events_goes_silent_then_finishes(mock):
    control(mock.openai_port, "POST", "/__mock/script", [{"stall_after_events": 2, "stall_ms": 400}])
    t0 = time.monotonic()
    _, chunks, err = raw_chunks(mock.openai_port, "/v1/chat/completions", {**OGOOD, "stream": True}, OHDRS)
    assert err is None and chunks[-1] == b"" and time.monotonic() - t0 >= 0.4
    assert sse_events(b"".join(chunks))[-1] == (None, "[DONE]")
