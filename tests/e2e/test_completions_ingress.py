"""OpenAI's legacy completions (`POST /v1/completions`) through real Envoy with the official `openai`
SDK (`completions.create`): passed through to the OpenAI mock's own `/v1/completions` (only the
model changed), and translated through the chat translators for the Anthropic mock (the prompt as
one user message, the answer as a `text_completion`), plain and streamed. And `GET /v1/models/{id}`
(`models.retrieve`).
"""

from __future__ import annotations

import openai
import pytest

from conftest import ANTHROPIC_HELLO, ANTHROPIC_MODEL, OPENAI_HELLO, OPENAI_MODEL, anthropic_text


def streamed(client, **kw) -> tuple[dict[int, str], dict[int, str], list]:
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    chunks = list(client.completions.create(stream=True, **kw))
    for c in chunks:
        assert c.object == "text_completion"
        for ch in c.choices:
            texts[ch.index] = texts.get(ch.index, "") + ch.text
            if ch.finish_reason:
                finish[ch.index] = ch.finish_reason
    return texts, finish, chunks


def test_passthrough_to_an_openai_server(gw, client):
    r = client.completions.create(model="gpt", prompt="Say hi", max_tokens=30, temperature=0)
    req = gw.only_request("openai")
    assert req["path"] == "/v1/completions"
    assert req["body"] == {"model": OPENAI_MODEL, "prompt": "Say hi", "max_tokens": 30, "temperature": 0}
    assert req["headers"]["authorization"] != "Bearer client-secret-123"
    assert r.object == "text_completion"
    assert r.choices[0].text == OPENAI_HELLO + "Say hi"
    assert r.usage.total_tokens == req["response"]["usage"]["total_tokens"]


def test_passthrough_keeps_what_chat_cannot_say(gw, client):
    r = client.completions.create(model="gpt", prompt=["a", "b"], echo=True, max_tokens=30)
    assert [c.text for c in r.choices] == ["a" + OPENAI_HELLO + "a", "b" + OPENAI_HELLO + "b"]
    assert gw.only_request("openai")["body"]["prompt"] == ["a", "b"]


def test_passthrough_stream(gw, client):
    texts, finish, chunks = streamed(client, model="gpt", prompt="Say hi", max_tokens=30)
    assert texts == {0: OPENAI_HELLO + "Say hi"}
    assert finish == {0: "stop"}
    assert gw.only_request("openai")["path"] == "/v1/completions"


def test_translated_for_anthropic(gw, client):
    r = client.completions.create(model="claude", prompt="Say hi", max_tokens=40)
    req = gw.only_request("anthropic")
    assert req["path"] == "/v1/messages"
    sent = req["body"]
    assert sent["model"] == ANTHROPIC_MODEL and sent["max_tokens"] == 40
    assert [(m["role"], anthropic_text(m["content"])) for m in sent["messages"]] == [("user", "Say hi")]
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert r.choices[0].text == ANTHROPIC_HELLO + "Say hi"
    assert r.choices[0].finish_reason == "stop"
    u = req["response"]["usage"]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (u["input_tokens"], u["output_tokens"])


def test_translated_stream_and_default_max_tokens(gw, client):
    texts, finish, _ = streamed(client, model="claude", prompt=["Say hi"])
    sent = gw.only_request("anthropic")["body"]
    assert sent["max_tokens"] == 16, "the completions API's default"
    plain = client.completions.create(model="claude", prompt="Say hi")
    assert texts == {0: plain.choices[0].text}
    assert finish == {0: plain.choices[0].finish_reason}


def test_several_prompts_cannot_be_translated(gw, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="claude", prompt=["a", "b"])
    assert e.value.body["param"] == "prompt"
    assert gw.requests("anthropic") == []


def test_models_retrieve(gw, client):
    m = client.models.retrieve("claude")
    assert (m.id, m.object, m.owned_by) == ("claude", "model", "llm-gateway")
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("nope")
    assert e.value.body["code"] == "model_not_found"
    assert gw.requests("anthropic") == [] and gw.requests("openai") == []
