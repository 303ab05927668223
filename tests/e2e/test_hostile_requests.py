"""Issue 17 hostile-request battery: every malformed request is the client's 4xx with an OpenAI error
naming the problem, for every provider family behind the gateway (the same checks before any
translator: the OpenAI-compatible path too, which forwards the client's bytes), nothing reaches a
provider, and the gateway serves the next request (the session's last test checks Envoy's log
for wasm panics)."""

from __future__ import annotations

import json

import pytest

from conftest import ALIASES, assert_openai_error, chat_body, user

PROVIDERS = ["anthropic", "openai"]


def assert_nothing_upstream(gw):
    for p in PROVIDERS:
        assert gw.requests(p) == [], f"the request reached the {p} mock"


def body_cases(alias: str) -> dict[str, tuple[bytes, int, str | None]]:
    """name -> (raw body, status, param the error names or None)."""
    ok = chat_body(alias, user("hi"))

    def with_(**fields):
        return json.dumps({**ok, **fields}).encode()

    deep = b'{"model": "' + alias.encode() + b'", "messages": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    return {
        "invalid-json": (b'{"model": "' + alias.encode() + b'", "messages": [', 400, None),
        "empty-body": (b"", 400, None),
        "json-array": (json.dumps([ok]).encode(), 400, None),
        "json-string": (b'"hello"', 400, None),
        "messages-missing": (json.dumps({"model": alias}).encode(), 400, "messages"),
        "messages-object": (with_(messages={"role": "user", "content": "hi"}), 400, "messages"),
        "message-without-role": (with_(messages=[{"content": "hi"}]), 400, "messages[0]"),
        "unknown-role": (with_(messages=[{"role": "wizard", "content": "hi"}]), 400, "messages[0]"),
        "content-number": (with_(messages=[{"role": "user", "content": 42}]), 400, "messages[0]"),
        "model-missing": (json.dumps({"messages": [user("hi")]}).encode(), 400, "model"),
        "model-number": (with_(model=7), 400, "model"),
        "model-unknown": (with_(model="no-such-alias"), 404, None),
        "stream-yes": (with_(stream="yes"), 400, "stream"),
        "n-negative": (with_(n=-1), 400, "n"),
        "temperature-hot": (with_(temperature="hot"), 400, "temperature"),
        "max-tokens-huge": (json.dumps(ok).encode()[:-1] + b', "max_tokens": 1e309}', 400, None),
        "max-tokens-string": (with_(max_tokens="100"), 400, "max_tokens"),
        "tools-not-a-list": (with_(tools={"type": "function"}), 400, "tools"),
        "tool-without-function": (with_(tools=[{"type": "function"}]), 400, None),
        "unknown-part-type": (with_(messages=[{"role": "user", "content": [{"type": "txt", "text": "hi"}]}]),
                              400, "messages[0].content[0]"),
        "timeout-infinite": (json.dumps(ok).encode()[:-1] + b', "timeout": 1e309}', 400, None),
        "client-api-key": (with_(api_key="sk-mine"), 400, "api_key"),
        "client-api-base": (with_(api_base="http://evil.test"), 400, "api_base"),
        "client-base-url": (with_(base_url="http://evil.test"), 400, "base_url"),
        "nested-100k-deep": (deep, 400, None),
        "invalid-utf8": (json.dumps(ok).encode().replace(b"hi", b"h\xff\xfe"), 400, None),
    }


CASES = list(body_cases("x"))


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("case", CASES)
def test_malformed_request_is_a_4xx_naming_the_problem(gw, provider, case):
    body, status, param = body_cases(ALIASES[provider])[case]
    r = gw.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    err = assert_openai_error(r, status)
    if param is not None:
        assert err["param"] == param or (err["param"] or "").startswith(param), (case, err)
    assert_nothing_upstream(gw)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_wrong_content_type_is_refused(gw, provider):
    r = gw.request("POST", "/v1/chat/completions", json.dumps(chat_body(ALIASES[provider], user("hi"))),
                   {"Content-Type": "text/plain"})
    err = assert_openai_error(r, 415)
    assert "application/json" in err["message"], err
    assert_nothing_upstream(gw)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405(gw, method):
    assert_openai_error(gw.request(method, "/v1/chat/completions"), 405)
    assert_nothing_upstream(gw)


@pytest.mark.parametrize("path", ["/v1/chat/%63ompletions", "/v1/../v1/chat/completions", "/v1/./chat/completions",
                                  "/v1//chat/completions", "/v1/chat/completions/../../key/info",
                                  "/v1/chat%2Fcompletions"])
def test_odd_paths_are_served_as_envoy_normalises_them_or_refused(gw, path):
    """Envoy normalises dot segments and merges slashes before the filter (the rendered listener
    sets `normalize_path` and `merge_slashes`); an encoded `/` is not a separator. Either the
    request is served as the chat endpoint (and then as any chat request) or refused 404: never
    a crash, never a provider call for a path the filter did not classify."""
    r = gw.request("POST", path, chat_body("gpt", user("hi")))
    if r.status == 200:
        assert r.json()["object"] == "chat.completion"
        assert len(gw.requests("openai")) == 1
    else:
        assert_openai_error(r, r.status)
        assert r.status in (400, 404), (path, r.status, r.body[:300])
        assert_nothing_upstream(gw)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_good_request_after_the_battery_is_served(gw, provider):
    r = gw.chat(chat_body(ALIASES[provider], user("fine")))
    assert r.status == 200, r.body[:300]
    assert r.json()["choices"][0]["message"]["content"].endswith("fine")
