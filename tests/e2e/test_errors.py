"""Refusals by the gateway itself, provider errors mapped to OpenAI errors, and the non-chat endpoints."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from conftest import (ALIASES, ANTHROPIC_HELLO, CLIENT_KEY, HELLO, MAX_BODY_MB, OPENAI_HELLO,
                      assert_openai_error, chat_body, user)

LIMIT = MAX_BODY_MB * 1024 * 1024


def assert_no_upstream_request(gw):
    assert gw.requests("anthropic") == [], "request reached the Anthropic mock"
    assert gw.requests("openai") == [], "request reached the OpenAI mock"


# ---------------------------------------------------------------- gateway refusals


def test_malformed_json(gw):
    r = gw.chat('{"model": "gpt", "messages": [')
    assert_openai_error(r, 400, "invalid_request_error")
    assert_no_upstream_request(gw)


def test_body_not_an_object(gw):
    r = gw.chat([{"model": "gpt"}])
    assert_openai_error(r, 400, "invalid_request_error")
    assert_no_upstream_request(gw)


def raw_exchange(gw, request: bytes) -> bytes:
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("header", [b"X-Name: caf\xe9", b"Authorization: Bearer sk-\xff\xfe"])
def test_a_header_that_is_not_utf8_is_answered_and_harms_no_one(gw, header):
    # HTTP lets a header value carry bytes above 0x7f; read strictly as UTF-8, one such
    # header used to take the filter's VM down (every later request a bare 503).
    body = json.dumps(chat_body("gpt")).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
               + header + b"\r\nContent-Length: " + str(len(body)).encode()
               + b"\r\nConnection: close\r\n\r\n" + body)
    for _ in range(2):
        status_line = raw_exchange(gw, request).split(b"\r\n", 1)[0]
        assert status_line in (b"HTTP/1.1 200 OK", b"HTTP/1.1 401 Unauthorized"), status_line
    follow = gw.chat(chat_body("gpt"))
    assert follow.status == 200, follow.body


def test_empty_body(gw):
    r = gw.request("POST", "/v1/chat/completions", b"", {"Content-Type": "application/json"})
    assert_openai_error(r, 400, "invalid_request_error")
    assert_no_upstream_request(gw)


@pytest.mark.parametrize("body,param", [
    ({"messages": [user("hi")]}, "model"),
    ({"model": "claude"}, "messages"),
    ({"model": "gpt", "messages": None}, "messages"),
    ({"model": 123, "messages": [user("hi")]}, "model"),
    ({"model": "", "messages": [user("hi")]}, "model"),
    ({"model": "gpt", "messages": "hi"}, "messages"),
    ({"model": "gpt", "messages": []}, "messages"),
    ({"model": "claude", "messages": [user("hi")], "stream": "yes"}, "stream"),
])
def test_missing_or_mistyped_fields(gw, body, param):
    r = gw.chat(body)
    assert_openai_error(r, 400, "invalid_request_error", param=param)
    assert_no_upstream_request(gw)


def test_invalid_message(gw):
    r = gw.chat(chat_body("claude", {"role": "wizard", "content": "hi"}))
    err = assert_openai_error(r, 400, "invalid_request_error")
    assert err["param"] and err["param"].startswith("messages[0]"), err
    assert_no_upstream_request(gw)


def test_unknown_alias(gw):
    r = gw.chat(chat_body("no-such-model", user("hi")))
    err = assert_openai_error(r, 404, "invalid_request_error", code="model_not_found")
    assert "no-such-model" in err["message"]
    assert_no_upstream_request(gw)


def test_provider_model_id_is_not_an_alias(gw):
    """Clients must use the alias; the provider's own id is not routable."""
    r = gw.chat(chat_body("claude-sonnet-4-5", user("hi")))
    assert_openai_error(r, 404, code="model_not_found")
    assert_no_upstream_request(gw)


def _big_body(alias: str, size: int) -> bytes:
    base = json.dumps(chat_body(alias, user(""))).encode()
    filler = "x" * (size - len(base))
    return json.dumps(chat_body(alias, user(filler))).encode()


def test_oversized_body_with_content_length(gw):
    body = _big_body("gpt", LIMIT + 200_000)
    r = gw.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    assert_openai_error(r, 413, "invalid_request_error")
    assert_no_upstream_request(gw)


def test_oversized_body_chunked(gw):
    """Without Content-Length the limit is enforced while the body streams in."""
    body = _big_body("claude", LIMIT + 200_000)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"},
                     encode_chunked=True)
        resp = conn.getresponse()
        status, data = resp.status, resp.read()
    except (ConnectionResetError, BrokenPipeError) as e:  # the gateway may answer before reading all of it
        pytest.fail(f"connection dropped instead of a 413 answer: {e!r}")
    finally:
        conn.close()
    assert status == 413, data[:300]
    assert json.loads(data)["error"]["type"] == "invalid_request_error"
    assert_no_upstream_request(gw)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_body_just_under_limit_is_forwarded_whole(gw, provider):
    body = _big_body(ALIASES[provider], LIMIT - 4096)
    r = gw.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    assert r.status == 200, r.body[:300]
    (req,) = gw.provider_requests(provider)
    sent_text = req["body"]["messages"][0]["content"]
    if isinstance(sent_text, list):
        sent_text = "".join(b.get("text", "") for b in sent_text)
    assert sent_text == json.loads(body)["messages"][0]["content"]
    assert r.json()["choices"][0]["message"]["content"].startswith(HELLO[provider] + "xxxx")


def test_models_list(gw):
    r = gw.request("GET", "/v1/models")
    assert r.status == 200, r.body
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["object"] == "list"
    assert sorted(m["id"] for m in body["data"]) == ["claude", "dead-first", "gpt", "ha"]
    assert all(m["object"] == "model" for m in body["data"])
    assert_no_upstream_request(gw)


@pytest.mark.parametrize("method,path", [("POST", "/v1/audio/speech"), ("GET", "/"), ("GET", "/v1/nope"),
                                         ("POST", "/v1/images/generations")])
def test_unknown_path(gw, method, path):
    r = gw.request(method, path, {"model": "gpt", "input": "x"} if method == "POST" else None)
    assert_openai_error(r, 404)
    assert_no_upstream_request(gw)


def test_wrong_method_on_chat_completions(gw):
    r = gw.request("GET", "/v1/chat/completions")
    assert_openai_error(r, 405)
    assert_no_upstream_request(gw)


def test_gateway_recovers_after_refusals(gw):
    """Local replies leave no state behind: a good request right after bad ones works."""
    for bad in ('{"nope', {"model": "nope", "messages": [user("x")]}, {"model": "gpt"}):
        assert gw.chat(bad).status in (400, 404)
    r = gw.chat(chat_body("claude", user("after")))
    assert r.status == 200, r.body
    assert r.json()["choices"][0]["message"]["content"] == ANTHROPIC_HELLO + "after"


# ---------------------------------------------------------------- provider errors


ANTHROPIC_CASES = [
    # status from the provider, status to the client, OpenAI error type, provider message
    (400, 400, "invalid_request_error", "Invalid request: the mock provider rejected this request"),
    (401, 401, "authentication_error", "invalid x-api-key"),
    (403, 403, "permission_error", "Your API key does not have permission to use the specified resource."),
    (429, 429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    (500, 500, None, "Internal server error"),
    (529, 503, None, "Overloaded"),
]


@pytest.mark.parametrize("upstream,expected,etype,message", ANTHROPIC_CASES)
def test_anthropic_provider_errors(gw, upstream, expected, etype, message):
    gw.script("anthropic", {"status": upstream})
    r = gw.chat(chat_body("claude", user("x")))
    assert_openai_error(r, expected, etype, message_contains=message)
    (req,) = gw.provider_requests("anthropic")
    assert req["response"]["status"] == upstream


def test_anthropic_validation_error_message_reaches_client(gw):
    """A real 400 produced by the mock's own validation (temperature > 1 is invalid for Anthropic)."""
    r = gw.chat(chat_body("claude", user("x"), temperature=1.7))
    if r.status == 200:
        # a translator may clamp temperature into Anthropic's range instead; then it must be <= 1
        (req,) = gw.provider_requests("anthropic")
        assert req["body"]["temperature"] <= 1
        return
    err = assert_openai_error(r, 400, "invalid_request_error")
    assert "temperature" in err["message"]


def test_anthropic_429_keeps_retry_after(gw):
    gw.script("anthropic", {"status": 429, "headers": {"retry-after": "7"}})
    r = gw.chat(chat_body("claude", user("x")))
    assert_openai_error(r, 429, "rate_limit_error")
    assert r.headers.get("retry-after") == "7"


OPENAI_CASES = [
    (400, 400, "invalid_request_error", "Invalid request: the mock provider rejected this request", None),
    (401, 401, None, "Incorrect API key provided", "invalid_api_key"),
    (429, 429, None, "Rate limit reached for gpt-4o-mini", "rate_limit_exceeded"),
    (500, 500, None, "The server had an error while processing your request", None),
    (503, 503, None, "The engine is currently overloaded", None),
]


@pytest.mark.parametrize("upstream,expected,etype,message,code", OPENAI_CASES)
def test_openai_provider_errors(gw, upstream, expected, etype, message, code):
    gw.script("openai", {"status": upstream})
    r = gw.chat(chat_body("gpt", user("x")))
    assert_openai_error(r, expected, etype, message_contains=message, **({"code": code} if code else {}))


def test_openai_provider_error_param_and_code_kept(gw):
    gw.script("openai", {"status": 400, "body": {"error": {
        "message": "Invalid 'temperature': decimal above maximum value.", "type": "invalid_request_error",
        "param": "temperature", "code": "decimal_above_max_value"}}})
    r = gw.chat(chat_body("gpt", user("x"), temperature=5))
    assert_openai_error(r, 400, "invalid_request_error", param="temperature", code="decimal_above_max_value",
                        message_contains="decimal above maximum value")


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_non_json_provider_error(gw, provider):
    gw.script(provider, {"status": 502, "body": "<html><body>502 Bad Gateway</body></html>",
                         "headers": {"content-type": "text/html"}})
    r = gw.chat(chat_body(ALIASES[provider], user("x")))
    err = assert_openai_error(r, 502)
    assert "502 Bad Gateway" in err["message"]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_upstream_reset_before_response(gw, provider):
    """The provider drops the connection before any byte: an OpenAI-shaped 5xx, quickly."""
    gw.script(provider, {"reset_after_events": 0})
    r = gw.chat(chat_body(ALIASES[provider], user("x")))
    assert r.elapsed < 5
    err = assert_openai_error(r, r.status)
    assert r.status in (502, 503), (r.status, err)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_upstream_reset_mid_body(gw, provider):
    """The provider sends headers and half a JSON body, then RST: a connection error or an OpenAI-shaped 5xx."""
    gw.script(provider, {"reset_after_events": 1})
    try:
        r = gw.chat(chat_body(ALIASES[provider], user("x")))
    except (OSError, http.client.HTTPException):
        return  # the client saw the failure as a connection error: acceptable
    assert r.elapsed < 5
    assert r.status >= 500, (r.status, r.body[:300])
    assert_openai_error(r, r.status)


def test_anthropic_unreadable_success_body(gw):
    """A 200 whose body is not a Messages response: the client must get an error status, not 200."""
    gw.script("anthropic", {"status": 200, "body": "garbage"})
    r = gw.chat(chat_body("claude", user("x")))
    assert_openai_error(r, 502)


def test_gateway_recovers_after_provider_failures(gw):
    gw.script("anthropic", {"status": 529}, {"reset_after_events": 0})
    gw.script("openai", {"status": 500})
    assert gw.chat(chat_body("claude", user("x"))).status == 503
    assert gw.chat(chat_body("claude", user("x"))).status in (502, 503)
    assert gw.chat(chat_body("gpt", user("x"))).status == 500
    r1 = gw.chat(chat_body("claude", user("ok")))
    r2 = gw.chat(chat_body("gpt", user("ok")))
    assert r1.json()["choices"][0]["message"]["content"] == ANTHROPIC_HELLO + "ok"
    assert r2.json()["choices"][0]["message"]["content"] == OPENAI_HELLO + "ok"
