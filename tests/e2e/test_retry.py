"""Retries before anything reached the client (issue 4, first part).

Alias `ha` = Anthropic mock (first choice) then the OpenAI mock; alias
`dead-first` = a deployment whose connection is refused, then Anthropic. A
retryable failure of the first attempt is answered by the next deployment,
translated for *its* provider, and the response headers say what happened.
"""

from __future__ import annotations

import pytest

from conftest import ANTHROPIC_MODEL, OPENAI_MODEL, assert_openai_error, chat_body, user


@pytest.mark.parametrize("status", [500, 503, 529, 429])
def test_retryable_status_falls_over_to_the_next_provider(gw, status):
    gw.script("anthropic", {"status": status})
    r = gw.chat(chat_body("ha", user("Hi there")), headers={"Authorization": "Bearer client-secret-123"})
    assert r.status == 200, r.body[:400]
    body = r.json()
    assert body["object"] == "chat.completion"
    assert "mock OpenAI provider" in body["choices"][0]["message"]["content"]
    assert r.headers["x-llm-gateway-attempts"] == "2"
    assert r.headers["x-llm-gateway-deployment"] == "ha#1"  # <alias>#<index in model_list>
    assert r.headers["x-llm-gateway-fallback"] == "false"
    # Exactly one attempt each, each in its own provider's format.
    [a] = gw.provider_requests("anthropic")
    assert a["path"] == "/v1/messages" and a["body"]["model"] == ANTHROPIC_MODEL
    [o] = gw.provider_requests("openai")
    assert o["path"] == "/v1/chat/completions" and o["body"]["model"] == OPENAI_MODEL
    assert o["headers"]["authorization"] == "Bearer sk-oai-test"
    assert "client-secret-123" not in str(o["headers"])


def test_streaming_request_retried_before_first_byte(gw):
    gw.script("anthropic", {"status": 503})
    s = gw.stream(chat_body("ha", user("Hi there"), stream=True))
    assert s.status == 200
    assert s.ends_with_done()
    assert "mock OpenAI provider" in s.content()
    assert len(gw.provider_requests("openai")) == 1


def test_refused_connection_is_retried(gw):
    r = gw.chat(chat_body("dead-first", user("Hi there")))
    assert r.status == 200, r.body[:400]
    assert "choices" in r.json(), (r.headers, r.body[:600])
    assert "mock Anthropic provider" in r.json()["choices"][0]["message"]["content"]
    assert r.headers["x-llm-gateway-attempts"] == "2"
    assert len(gw.provider_requests("anthropic")) == 1


def test_client_errors_are_not_retried(gw):
    gw.script("anthropic", {"status": 400})
    r = gw.chat(chat_body("ha", user("Hi there")))
    assert_openai_error(r, 400)
    assert len(gw.provider_requests("anthropic")) == 1
    assert gw.provider_requests("openai") == []


def test_every_attempt_failing_returns_the_last_error(gw):
    gw.script("anthropic", {"status": 500})
    gw.script("openai", {"status": 503})
    r = gw.chat(chat_body("ha", user("Hi there")))
    assert_openai_error(r, 503)
    assert r.headers["x-llm-gateway-attempts"] == "2"
    assert len(gw.provider_requests("anthropic")) == 1
    assert len(gw.provider_requests("openai")) == 1
