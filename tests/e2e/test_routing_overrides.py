"""Issue 4: retries then fallbacks in order, per-request overrides (`num_retries`, `fallbacks`,
`timeout` in the body; `x-litellm-num-retries`, `x-litellm-timeout` headers; all stripped before
the provider), context_window_fallbacks, and no retry for a client error.

  ov   openai/model-o1 (weight 1e6), openai/model-o2    fallbacks -> ovfb (anthropic/claude-ovfb)
  alt  anthropic/claude-alt                             (named by request `fallbacks`)
  cw   openai/model-small        context_window_fallbacks -> cwbig (anthropic/claude-big); fallbacks -> alt
  cwa  anthropic/claude-small    context_window_fallbacks -> cwobig (openai/model-big); fallbacks -> alt
  cp   openai/model-cp           content_policy_fallbacks -> alt; fallbacks -> ovfb
  quad openai/model-q0 (weight 1e6), openai/model-q1..q3     fallbacks -> ovfb
"""

from __future__ import annotations

import pytest

from conftest import assert_openai_error, attach_gateway, chat_body, user
from routing_helpers import (PRIMARY, ModelList, assert_served, attempts_seen, chat_ok, check_provider_request,
                             stream_ok)

OVERRIDE_FIELDS = ("num_retries", "fallbacks", "timeout", "context_window_fallbacks", "content_policy_fallbacks")


class Ids:
    o1 = o2 = ovfb = alt = small = big = asmall = obig = cp = ""
    quad: list[str] = []


def build(mocks) -> dict:
    ml = ModelList(mocks)
    Ids.o1 = ml.add("ov", "openai/model-o1", weight=PRIMARY)
    Ids.o2 = ml.add("ov", "openai/model-o2", weight=1)
    Ids.ovfb = ml.add("ovfb", "anthropic/claude-ovfb")
    Ids.alt = ml.add("alt", "anthropic/claude-alt")
    Ids.small = ml.add("cw", "openai/model-small")
    Ids.big = ml.add("cwbig", "anthropic/claude-big")
    Ids.asmall = ml.add("cwa", "anthropic/claude-small")
    Ids.obig = ml.add("cwobig", "openai/model-big")
    Ids.cp = ml.add("cp", "openai/model-cp")
    Ids.quad = [ml.add("quad", f"openai/model-q{i}", weight=PRIMARY if i == 0 else 1) for i in range(4)]
    return ml.config(router_settings={
        "allowed_fails": 1000,  # these tests fail the same deployments again and again
        "fallbacks": [{"ov": ["ovfb"]}, {"cw": ["alt"]}, {"cwa": ["alt"]}, {"cp": ["ovfb"]},
                      {"quad": ["ovfb"]}],
        "context_window_fallbacks": [{"cw": ["cwbig"]}, {"cwa": ["cwobig"]}],
        "content_policy_fallbacks": [{"cp": ["alt"]}],
    })


@pytest.fixture(scope="module")
def overrides_gateway(start_gateway, mocks):
    with start_gateway(build(mocks), name="routing-overrides") as g:
        yield g


@pytest.fixture
def ogw(overrides_gateway, request):
    return attach_gateway(overrides_gateway, request)


def no_overrides_upstream(gw) -> None:
    for p in ("anthropic", "openai"):
        for req in gw.provider_requests(p):
            leaked = [k for k in OVERRIDE_FIELDS if k in (req["body"] or {})]
            assert not leaked, f"override fields reached {p}: {leaked}"
            hdrs = [k for k in req["headers"] if k.startswith("x-litellm")]
            assert not hdrs, f"override headers reached {p}: {hdrs}"


def test_retries_then_fallback_in_order(ogw):
    ogw.script("openai", {"match_model": "model-o1", "status": 500}, {"match_model": "model-o2", "status": 503})
    r = ogw.chat(chat_body("ov", user("Hi there")))
    chat_ok(r, "anthropic")
    assert_served(r, Ids.ovfb, attempts=3, fallback=True)
    assert attempts_seen(ogw) == [("openai", "model-o1"), ("openai", "model-o2"), ("anthropic", "claude-ovfb")]
    [a] = ogw.provider_requests("anthropic")
    check_provider_request(a, "anthropic", "claude-ovfb", stream=False)


def test_num_retries_zero_in_body_goes_straight_to_the_fallback(ogw):
    ogw.script("openai", {"match_model": "model-o1", "status": 500})
    r = ogw.chat(chat_body("ov", user("Hi there"), num_retries=0))
    chat_ok(r, "anthropic")
    assert_served(r, Ids.ovfb, attempts=2, fallback=True)
    assert attempts_seen(ogw) == [("openai", "model-o1"), ("anthropic", "claude-ovfb")]
    no_overrides_upstream(ogw)


def test_num_retries_zero_in_header_goes_straight_to_the_fallback(ogw):
    ogw.script("openai", {"match_model": "model-o1", "status": 500})
    r = ogw.chat(chat_body("ov", user("Hi there")), headers={"x-litellm-num-retries": "0"})
    chat_ok(r, "anthropic")
    assert_served(r, Ids.ovfb, attempts=2, fallback=True)
    assert attempts_seen(ogw) == [("openai", "model-o1"), ("anthropic", "claude-ovfb")]
    no_overrides_upstream(ogw)


def test_body_fallbacks_replace_the_configured_ones(ogw):
    ogw.script("openai", {"match_model": "model-o1", "status": 500}, {"match_model": "model-o2", "status": 500})
    r = ogw.chat(chat_body("ov", user("Hi there"), fallbacks=["alt"]))
    chat_ok(r, "anthropic")
    assert_served(r, Ids.alt, attempts=3, fallback=True)
    assert attempts_seen(ogw) == [("openai", "model-o1"), ("openai", "model-o2"), ("anthropic", "claude-alt")]
    no_overrides_upstream(ogw)


def test_empty_body_fallbacks_turn_fallbacks_off(ogw):
    ogw.script("openai", {"match_model": "model-o1", "status": 500}, {"match_model": "model-o2", "status": 503})
    r = ogw.chat(chat_body("ov", user("Hi there"), fallbacks=[]))
    assert_openai_error(r, 503)
    assert attempts_seen(ogw) == [("openai", "model-o1"), ("openai", "model-o2")]
    assert r.headers.get("x-llm-gateway-attempts") == "2"


@pytest.mark.parametrize("where,mode", [("body", "json"), ("header", "json"), ("body", "stream")])
def test_timeout_override_cuts_a_slow_attempt(ogw, where, mode):
    ogw.script("openai", {"match_model": "model-o1", "delay_ms": 5000})
    extra = {"stream": True} if mode == "stream" else {}
    if where == "body":
        body, headers = chat_body("ov", user("Hi there"), timeout=0.5, **extra), {}
    else:
        body, headers = chat_body("ov", user("Hi there"), **extra), {"x-litellm-timeout": "0.5"}
    if mode == "stream":
        r = ogw.stream(body, headers=headers, deadline=10)
        stream_ok(r, "openai")
    else:
        r = ogw.chat(body, headers=headers, timeout=10)
        chat_ok(r, "openai")
    assert_served(r, Ids.o2, attempts=2, fallback=False)
    assert 0.4 <= r.elapsed < 2.5, f"answered after {r.elapsed:.2f}s; the override timeout is 0.5s"
    assert attempts_seen(ogw) == [("openai", "model-o1"), ("openai", "model-o2")]
    no_overrides_upstream(ogw)


def test_overrides_never_reach_the_provider_on_success(ogw):
    r = ogw.chat(chat_body("ov", user("Hi there"), num_retries=1, fallbacks=["alt"], timeout=30),
                 headers={"x-litellm-num-retries": "1", "x-litellm-timeout": "30"})
    chat_ok(r, "openai")
    assert_served(r, Ids.o1, attempts=1, fallback=False)
    [o] = ogw.provider_requests("openai")
    check_provider_request(o, "openai", "model-o1", stream=False)
    no_overrides_upstream(ogw)


@pytest.mark.parametrize("mode", ["json", "stream"])
def test_context_length_400_goes_to_context_window_fallbacks_openai_to_anthropic(ogw, mode):
    ogw.script("openai", {"match_model": "model-small", "status": 400, "body": {"error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in "
                   "9000 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}})
    if mode == "stream":
        r = ogw.stream(chat_body("cw", user("Hi there"), stream=True), deadline=10)
        stream_ok(r, "anthropic")
    else:
        r = ogw.chat(chat_body("cw", user("Hi there")))
        chat_ok(r, "anthropic")
    assert_served(r, Ids.big, attempts=2, fallback=True)
    assert attempts_seen(ogw) == [("openai", "model-small"), ("anthropic", "claude-big")]
    [a] = ogw.provider_requests("anthropic")
    check_provider_request(a, "anthropic", "claude-big", stream=mode == "stream")


def test_prompt_too_long_400_goes_to_context_window_fallbacks_anthropic_to_openai(ogw):
    ogw.script("anthropic", {"match_model": "claude-small", "status": 400, "body": {
        "type": "error", "error": {"type": "invalid_request_error",
                                   "message": "prompt is too long: 215000 tokens > 200000 maximum"},
        "request_id": "req_mock"}})
    r = ogw.chat(chat_body("cwa", user("Hi there")))
    chat_ok(r, "openai")
    assert_served(r, Ids.obig, attempts=2, fallback=True)
    assert attempts_seen(ogw) == [("anthropic", "claude-small"), ("openai", "model-big")]
    [o] = ogw.provider_requests("openai")
    check_provider_request(o, "openai", "model-big", stream=False)


def test_client_error_is_neither_retried_nor_falls_back(ogw):
    ogw.script("openai", {"match_model": "model-o1", "status": 400, "body": {"error": {
        "message": "Invalid value for 'temperature'", "type": "invalid_request_error",
        "param": "temperature", "code": "invalid_value"}}})
    r = ogw.chat(chat_body("ov", user("Hi there")))
    assert_openai_error(r, 400, param="temperature")
    assert_served(r, Ids.o1, attempts=1, fallback=False)
    assert attempts_seen(ogw) == [("openai", "model-o1")]


@pytest.mark.parametrize("field,value", [("num_retries", -1), ("num_retries", "two"), ("timeout", 0),
                                         ("fallbacks", "alt"), ("fallbacks", ["no-such-alias"])])
def test_malformed_override_is_a_400_naming_it(ogw, field, value):
    r = ogw.chat(chat_body("ov", user("Hi there"), **{field: value}))
    assert_openai_error(r, 400, param=field)
    assert attempts_seen(ogw) == []


def test_content_policy_400_goes_to_content_policy_fallbacks(ogw):
    ogw.script("openai", {"match_model": "model-cp", "status": 400, "body": {"error": {
        "message": "Your request was rejected as a result of our safety system.",
        "type": "invalid_request_error", "param": None, "code": "content_policy_violation"}}})
    r = ogw.chat(chat_body("cp", user("Hi there")))
    chat_ok(r, "anthropic")
    assert_served(r, Ids.alt, attempts=2, fallback=True)
    assert attempts_seen(ogw) == [("openai", "model-cp"), ("anthropic", "claude-alt")]


def test_body_num_retries_wins_over_the_header(ogw):
    ogw.script("openai", {"match_model": "model-o1", "status": 500})
    r = ogw.chat(chat_body("ov", user("Hi there"), num_retries=0), headers={"x-litellm-num-retries": "1"})
    chat_ok(r, "anthropic")
    assert attempts_seen(ogw) == [("openai", "model-o1"), ("anthropic", "claude-ovfb")]
    no_overrides_upstream(ogw)


@pytest.mark.parametrize("num_retries", [None, 0, 1, 3])
def test_num_retries_bounds_the_attempts_on_the_alias(ogw, num_retries):
    """quad has 4 deployments, all failing: 1 + num_retries (default 2) of them are tried, the
    heavy one first, then the fallback alias."""
    ogw.script("openai", {"match_model": [f"model-q{i}" for i in range(4)], "status": 500, "repeat": 4})
    extra = {} if num_retries is None else {"num_retries": num_retries}
    r = ogw.chat(chat_body("quad", user("Hi there"), **extra))
    chat_ok(r, "anthropic")
    tried = 1 + (2 if num_retries is None else num_retries)
    assert_served(r, Ids.ovfb, attempts=tried + 1, fallback=True)
    seen = attempts_seen(ogw)
    assert seen[0] == ("openai", "model-q0") and seen[-1] == ("anthropic", "claude-ovfb"), seen
    quad = [m for p, m in seen[:-1]]
    assert len(quad) == tried and len(set(quad)) == tried, f"each deployment at most once: {seen}"


def test_every_attempt_timing_out_fails_within_the_override_timeouts(ogw):
    ogw.script("openai", {"match_model": ["model-o1", "model-o2"], "delay_ms": 5000, "repeat": 2})
    r = ogw.chat(chat_body("ov", user("Hi there"), timeout=0.5, fallbacks=[]), timeout=10)
    assert_openai_error(r, r.status)
    assert r.status in (502, 503, 504), r.status
    assert r.elapsed < 2.5, f"two 0.5 s attempts took {r.elapsed:.2f}s"
    assert r.headers.get("x-llm-gateway-attempts") == "2"
    assert attempts_seen(ogw) == [("openai", "model-o1"), ("openai", "model-o2")]


@pytest.mark.parametrize("header,value,param", [("x-litellm-num-retries", "abc", None),
                                                ("x-litellm-num-retries", "-1", "num_retries"),
                                                ("x-litellm-timeout", "0", "timeout")])
def test_malformed_override_header_is_a_400(ogw, header, value, param):
    r = ogw.chat(chat_body("ov", user("Hi there")), headers={header: value})
    err = assert_openai_error(r, 400)
    if param:
        assert err["param"] == param, err
    assert attempts_seen(ogw) == []
