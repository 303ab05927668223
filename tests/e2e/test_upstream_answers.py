"""Issue 17: what an upstream answers that is not an answer. A 200 with an empty, non-JSON or
wrongly shaped body, an HTML 500, a body over the response limit, an empty or malformed stream:
each reaches the client as an OpenAI error (502, or an error event closing the stream), the
provider's own error statuses keep their meaning, and the `Retry-After` of a 429 sets the
cooldown and reaches the client on the 503 that follows.

  u-<provider>   one deployment on each mock (allowed_fails high: these failures must not cool
                 the deployment down for the next case)
  r              two deployments on the OpenAI mock: an unreadable answer of the first is retried
  big            the OpenAI mock, behind `general_settings.max_response_size_mb: 1`
  wait           the OpenAI mock, default cooldown (5 s), for the Retry-After case
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import (CLIENT_KEY, OPENAI_HELLO, assert_envoy_log_clean, assert_openai_error, attach_gateway, chat_body, deployment_counter,
                      gateway_stats, user)
from routing_helpers import PRIMARY, ModelList

PROVIDERS = ["anthropic", "openai"]
MODEL = {"anthropic": "anthropic/claude-u", "openai": "openai/model-u"}


@pytest.fixture(scope="module")
def answers_gateway(start_gateway, mocks):
    ml = ModelList(mocks)
    ids = {p: ml.add(f"u-{p}", MODEL[p]) for p in PROVIDERS}
    ml.add("big", "openai/model-big")
    ml.add("r", "openai/model-r1", weight=PRIMARY)
    ml.add("r", "openai/model-r2")
    cfg = ml.config(router_settings={"allowed_fails": 1000})
    cfg["general_settings"] = {"max_response_size_mb": 1}
    with start_gateway(cfg, name="answers") as g:
        g.ids = ids  # type: ignore[attr-defined]
        yield g


@pytest.fixture(scope="module")
def wait_gateway(start_gateway, mocks):
    ml = ModelList(mocks)
    ml.add("wait", "openai/model-wait")
    with start_gateway(ml.config(), name="retry-after") as g:
        yield g


UNREADABLE = {
    "empty": "",
    "not-json": "upstream says hello",
    "html": "<html><body>OK</body></html>",
    "array": "[1, 2]",
    "wrong-shape": '{"status": "ok"}',
}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("case", list(UNREADABLE))
def test_a_200_that_is_no_answer_is_a_502(answers_gateway, request, provider, case):
    gw = attach_gateway(answers_gateway, request)
    gw.script(provider, {"status": 200, "body": UNREADABLE[case], "match_stream": False})
    before = deployment_counter(gateway_stats(gw), "failures", gw.ids[provider]) or 0
    r = gw.chat(chat_body(f"u-{provider}", user("x")))
    err = assert_openai_error(r, 502, "api_error")
    assert err["code"] in ("upstream_invalid_response", "upstream_response_invalid"), err
    assert len(gw.provider_requests(provider)) == 1
    after = deployment_counter(gateway_stats(gw), "failures", gw.ids[provider]) or 0
    assert after == before + 1, "the unreadable answer counts as the deployment's failure"
    # the next request on the same gateway is served
    ok = gw.chat(chat_body(f"u-{provider}", user("ok")))
    assert ok.status == 200, ok.body[:300]


def test_an_unreadable_answer_is_retried_on_the_next_deployment(answers_gateway, request):
    gw = attach_gateway(answers_gateway, request)
    gw.script("openai", {"match_model": "model-r1", "status": 200, "body": "<html>oops</html>"})
    r = gw.chat(chat_body("r", user("again")))
    assert r.status == 200, r.body[:300]
    assert r.json()["choices"][0]["message"]["content"] == OPENAI_HELLO + "again"
    assert r.headers.get("x-llm-gateway-attempts") == "2", r.headers
    assert [q["body"]["model"] for q in gw.provider_requests("openai")] == ["model-r1", "model-r2"]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status,expected", [(500, 502), (503, 503), (502, 502)])
def test_an_html_error_page_is_a_bad_gateway(answers_gateway, request, provider, status, expected):
    gw = attach_gateway(answers_gateway, request)
    gw.script(provider, {"status": status, "body": "<html><body><h1>Internal Server Error</h1></body></html>",
                         "headers": {"content-type": "text/html"}})
    r = gw.chat(chat_body(f"u-{provider}", user("x")))
    err = assert_openai_error(r, expected)
    assert "Internal Server Error" in err["message"], err


def test_the_providers_own_json_500_stays_a_500(answers_gateway, request):
    """As LiteLLM answers it: the provider's error, in its own words."""
    gw = attach_gateway(answers_gateway, request)
    gw.script("openai", {"status": 500})
    assert_openai_error(gw.chat(chat_body("u-openai", user("x"))), 500)


def test_an_answer_over_the_response_limit_is_a_502_in_openai_shape(answers_gateway, request):
    gw = attach_gateway(answers_gateway, request)
    huge = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "z" * (3 * 1024 * 1024)}, "finish_reason": "stop"}]}
    gw.script("openai", {"response": huge, "match_stream": False})
    r = gw.chat(chat_body("big", user("x")))
    assert_openai_error(r, 502, code="upstream_response_too_large")
    assert gw.chat(chat_body("big", user("ok"))).status == 200


def test_a_40_mb_answer_with_the_default_limit_is_an_openai_error(answers_gateway, request):
    """Over Envoy's 32 MiB buffer: the filter answers first (30 MiB default), never Envoy's plain 500."""
    gw = attach_gateway(answers_gateway, request)
    huge = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "z" * (40 * 1024 * 1024)}, "finish_reason": "stop"}]}
    gw.script("openai", {"response": huge, "match_stream": False})
    r = gw.chat(chat_body("u-openai", user("x")), timeout=60)
    assert_openai_error(r, 502, code="upstream_response_too_large")


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("empty", ["content-length-0", "no-chunks"])
def test_an_empty_stream_ends_with_an_error_event(answers_gateway, request, provider, empty):
    gw = attach_gateway(answers_gateway, request)
    behaviour = ({"status": 200, "body": "", "headers": {"content-type": "text/event-stream"}}
                 if empty == "content-length-0" else {"sse": ""})
    gw.script(provider, {**behaviour, "match_stream": True})
    res = gw.stream(chat_body(f"u-{provider}", user("x"), stream=True))
    assert res.status == 200 and res.headers["content-type"].startswith("text/event-stream"), res.headers
    assert res.error is None, res.error
    assert res.chunks() == [], res.text
    [err] = res.errors()
    assert err["code"] == "upstream_stream_truncated", err
    assert res.ends_with_done()


def openai_chunk(text: str) -> str:
    return "data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                                  "model": "model-u", "choices": [{"index": 0, "delta": {"content": text},
                                                                   "finish_reason": None}]}) + "\n\n"


@pytest.mark.parametrize("split", ["one-write", "event-per-write"])
def test_a_malformed_event_ends_an_openai_stream_with_an_error_event(answers_gateway, request, split):
    gw = attach_gateway(answers_gateway, request)
    raw = openai_chunk("Hello") + openai_chunk(" world") + "data: {\"id\": oops\n\n" + openai_chunk(" lost") \
        + "data: [DONE]\n\n"
    behaviour = {"sse_chunks": [raw]} if split == "one-write" else {"sse": raw}
    gw.script("openai", {**behaviour, "match_stream": True})
    res = gw.stream(chat_body("u-openai", user("x"), stream=True))
    assert res.status == 200 and res.error is None, (res.status, res.error)
    assert res.content() == "Hello world", res.text
    [err] = res.errors()
    assert err["code"] == "upstream_stream_malformed", err
    assert "oops" not in res.text and "lost" not in res.text, res.text
    assert res.ends_with_done()


def test_the_openai_sdk_surfaces_the_malformed_stream_as_an_error(answers_gateway, request):
    import openai

    gw = attach_gateway(answers_gateway, request)
    gw.script("openai", {"sse": openai_chunk("Hi") + "data: <html>\n\n", "match_stream": True})
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{gw.port}/v1", api_key=CLIENT_KEY, max_retries=0)
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in client.chat.completions.create(model="u-openai", messages=[{"role": "user", "content": "x"}],
                                                    stream=True):
            got.append(chunk.choices[0].delta.content if chunk.choices else None)
    assert got == ["Hi"], got
    assert "not JSON" in str(e.value), e.value


def test_a_429_retry_after_sets_the_cooldown_and_reaches_the_client(wait_gateway, request):
    gw = attach_gateway(wait_gateway, request)
    gw.script("openai", {"status": 429, "headers": {"retry-after": "7"}})
    r = gw.chat(chat_body("wait", user("x")))
    assert_openai_error(r, 429)
    assert r.headers.get("retry-after") == "7", r.headers
    t0 = time.monotonic()
    # the deployment's own cooldown is 5 s; the provider asked for 7: still cooling at 5.5 s
    time.sleep(5.5)
    r = gw.chat(chat_body("wait", user("x")))
    err = assert_openai_error(r, 503, code="all_deployments_cooled_down")
    wait = int(r.headers.get("retry-after", "0"))
    assert 1 <= wait <= 2, (r.headers, err)
    assert len(gw.provider_requests("openai")) == 1, "a cooling deployment is not called"
    time.sleep(max(0.0, 7.2 - (time.monotonic() - t0) + 0.1))
    ok = gw.chat(chat_body("wait", user("ok")))
    assert ok.status == 200 and ok.json()["choices"][0]["message"]["content"] == OPENAI_HELLO + "ok"


def test_zz_no_wasm_trouble_after_the_faults(answers_gateway, wait_gateway):
    for g in (answers_gateway, wait_gateway):
        assert g.proc.poll() is None, "Envoy exited"
        assert_envoy_log_clean(g)
