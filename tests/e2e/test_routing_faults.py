"""Issue 4 fault matrix: a failing first attempt is answered by the next deployment of the alias or
by a fallback alias on the other provider, for plain and streaming requests, before any byte
reached the client; a failure after the first streamed byte ends the stream, never hangs.

Every case has its own alias (so a 429's cooldown of one primary cannot leak into another case):

  r-<fault>-<mode>  primary anthropic/claude-p-<fault>-<mode> (weight 1e6, timeout and
                    stream_timeout 1 s), then openai/model-s: a retry, Anthropic -> OpenAI
  f-<fault>-<mode>  only openai/model-p-<fault>-<mode> (timeout 1 s), `fallbacks` -> alias
                    `afb` (anthropic/claude-fb): a fallback, OpenAI -> Anthropic

`refused` primaries live on a port nothing listens on; `hang` primaries answer after 5 s.
"""

from __future__ import annotations

import pytest

from conftest import assert_openai_error, attach_gateway, chat_body, user
from routing_helpers import (HELLO, PRIMARY, ModelList, assert_served, attempts_seen, chat_ok,
                             check_provider_request, stream_ok)

FAULTS = ["500", "503", "429", "408", "reset", "hang", "refused"]
MODES = ["json", "stream"]
HANG_MS = 5000
TIMEOUT_S = 1


def fault_script(fault: str, model: str) -> dict | None:
    if fault.isdigit():
        return {"match_model": model, "status": int(fault)}
    if fault == "reset":
        return {"match_model": model, "reset_before_headers": True}
    if fault == "hang":
        return {"match_model": model, "delay_ms": HANG_MS}
    return None  # refused: nothing listens


class Ids:
    retry: dict[tuple[str, str], tuple[str, str]] = {}  # (fault, mode) -> (primary id, secondary id)
    fallback: dict[tuple[str, str], str] = {}           # (fault, mode) -> primary id
    afb = ""
    mid: dict[str, tuple[str, str]] = {}                # provider of the primary -> (primary, secondary)
    slow: tuple[str, str] = ("", "")
    stall: tuple[str, str] = ("", "")


def build(mocks) -> dict:
    ml = ModelList(mocks)
    limits = {"timeout": TIMEOUT_S, "stream_timeout": TIMEOUT_S}
    fallbacks = []
    for fault in FAULTS:
        at = "dead" if fault == "refused" else None
        for mode in MODES:
            alias = f"r-{fault}-{mode}"
            p = ml.add(alias, f"anthropic/claude-p-{fault}-{mode}", at, weight=PRIMARY, **limits)
            s = ml.add(alias, "openai/model-s", weight=1)
            Ids.retry[(fault, mode)] = (p, s)
            alias = f"f-{fault}-{mode}"
            Ids.fallback[(fault, mode)] = ml.add(alias, f"openai/model-p-{fault}-{mode}", at, **limits)
            fallbacks.append({alias: ["afb"]})
    Ids.afb = ml.add("afb", "anthropic/claude-fb")
    # after the first streamed byte: no retry is possible any more
    Ids.mid["openai"] = (ml.add("mid-o", "openai/model-mid", weight=PRIMARY),
                         ml.add("mid-o", "anthropic/claude-mid-2", weight=1))
    Ids.mid["anthropic"] = (ml.add("mid-a", "anthropic/claude-mid", weight=PRIMARY),
                            ml.add("mid-a", "openai/model-mid-2", weight=1))
    fallbacks += [{"mid-o": ["afb"]}, {"mid-a": ["afb"]}]
    # a stream that starts in time but lasts longer than stream_timeout (and timeout)
    Ids.slow = (ml.add("slow", "anthropic/claude-slow", weight=PRIMARY, stream_timeout=TIMEOUT_S),
                ml.add("slow", "openai/model-slow-2", weight=1))
    # a stream that starts, then goes silent
    Ids.stall = (ml.add("stall", "openai/model-stall", weight=PRIMARY, stream_timeout=TIMEOUT_S, timeout=3),
                 ml.add("stall", "anthropic/claude-stall-2", weight=1))
    return ml.config(router_settings={"fallbacks": fallbacks})


@pytest.fixture(scope="module")
def faults_gateway(start_gateway, mocks):
    with start_gateway(build(mocks), name="routing-faults") as g:
        yield g


@pytest.fixture
def fgw(faults_gateway, request):
    return attach_gateway(faults_gateway, request)


def send(gw, alias: str, mode: str):
    if mode == "stream":
        return gw.stream(chat_body(alias, user("Hi there"), stream=True), deadline=10)
    return gw.chat(chat_body(alias, user("Hi there")), timeout=10)


def check_timing(res, fault: str) -> None:
    if fault == "hang":
        # the primary's timeout (1 s) was waited for, the mock's 5 s answer was not
        assert TIMEOUT_S - 0.1 <= res.elapsed < HANG_MS / 1000 - 1, f"answered after {res.elapsed:.2f}s"
    else:
        assert res.elapsed < 3, f"answered after {res.elapsed:.2f}s"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", FAULTS)
def test_failed_primary_is_retried_on_the_next_deployment(fgw, fault, mode):
    primary, secondary = Ids.retry[(fault, mode)]
    pmodel = f"claude-p-{fault}-{mode}"
    script = fault_script(fault, pmodel)
    if script:
        fgw.script("anthropic", script)
    res = send(fgw, f"r-{fault}-{mode}", mode)
    if mode == "stream":
        stream_ok(res, "openai")
    else:
        chat_ok(res, "openai")
    assert_served(res, secondary, attempts=2, fallback=False)
    check_timing(res, fault)
    expected = [("openai", "model-s")] if fault == "refused" else [("anthropic", pmodel), ("openai", "model-s")]
    assert attempts_seen(fgw) == expected
    if fault != "refused":
        [a] = fgw.provider_requests("anthropic")
        check_provider_request(a, "anthropic", pmodel, stream=mode == "stream")
    [o] = fgw.provider_requests("openai")
    check_provider_request(o, "openai", "model-s", stream=mode == "stream")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", FAULTS)
def test_failed_alias_falls_back_to_another_provider(fgw, fault, mode):
    pmodel = f"model-p-{fault}-{mode}"
    script = fault_script(fault, pmodel)
    if script:
        fgw.script("openai", script)
    res = send(fgw, f"f-{fault}-{mode}", mode)
    if mode == "stream":
        stream_ok(res, "anthropic")
    else:
        chat_ok(res, "anthropic")
    assert_served(res, Ids.afb, attempts=2, fallback=True)
    check_timing(res, fault)
    expected = [("anthropic", "claude-fb")] if fault == "refused" else [("openai", pmodel), ("anthropic", "claude-fb")]
    assert attempts_seen(fgw) == expected
    if fault != "refused":
        [o] = fgw.provider_requests("openai")
        check_provider_request(o, "openai", pmodel, stream=mode == "stream")
    [a] = fgw.provider_requests("anthropic")
    check_provider_request(a, "anthropic", "claude-fb", stream=mode == "stream")


# ---------------------------------------------------------------- after the first streamed byte

# events written before the failure: OpenAI role chunk + 2 words; Anthropic message_start,
# content_block_start, ping + 2 text deltas
EVENTS_BEFORE = {"openai": 3, "anthropic": 5}
PRIMARY_MODEL = {"openai": "model-mid", "anthropic": "claude-mid"}
ALIAS = {"openai": "mid-o", "anthropic": "mid-a"}


def check_cut_stream(gw, s, provider: str) -> None:
    assert s.status == 200, s.raw[:500]
    assert s.elapsed < 5, f"stream took {s.elapsed:.1f}s: it must end promptly, not hang"
    got, full = s.content(), HELLO[provider] + "Hi there"
    assert got and full.startswith(got) and got != full, f"expected a strict prefix of {full!r}, got {got!r}"
    assert "stop" not in [c.get("finish_reason") for ch in s.chunks() for c in ch.get("choices") or []], \
        "a cut stream must not end like a complete answer"
    primary, _ = Ids.mid[provider]
    assert_served(s, primary, attempts=1, fallback=False)
    # bytes reached the client: no other deployment, no fallback
    assert attempts_seen(gw) == [(provider, PRIMARY_MODEL[provider])]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_truncated_stream_after_first_byte_ends_with_error_event_and_done(fgw, provider):
    fgw.script(provider, {"match_model": PRIMARY_MODEL[provider], "truncate_after_events": EVENTS_BEFORE[provider]})
    s = fgw.stream(chat_body(ALIAS[provider], user("Hi there"), stream=True), deadline=10)
    check_cut_stream(fgw, s, provider)
    assert s.error is None, f"a clean upstream end must give a clean client end: {s.error!r}"
    errors = s.errors()
    assert len(errors) == 1, f"expected one OpenAI error event, got {errors}; tail {s.raw[-400:]!r}"
    assert {"message", "type", "param", "code"} <= set(errors[0]), errors[0]
    items = s.data_items()
    assert items[-1] == "[DONE]" and items.count("[DONE]") == 1, items[-3:]
    assert "error" in items[-2], f"the error event comes right before [DONE]: {items[-3:]}"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_reset_stream_after_first_byte_ends_promptly(fgw, provider):
    fgw.script(provider, {"match_model": PRIMARY_MODEL[provider], "reset_after_events": EVENTS_BEFORE[provider]})
    s = fgw.stream(chat_body(ALIAS[provider], user("Hi there"), stream=True), deadline=10)
    check_cut_stream(fgw, s, provider)
    if s.error is None:
        # no connection error: then the stream must say what happened and end properly
        assert s.errors(), f"a reset stream ended cleanly without an error event: {s.raw[-400:]!r}"
        assert s.ends_with_done(), s.raw[-300:]


def test_stream_timeout_bounds_only_the_start_of_a_stream(fgw):
    """stream_timeout (1 s) limits the wait for the stream to start, not its length: a stream whose
    events keep coming for ~2.5 s is delivered whole, from the first deployment."""
    fgw.script("anthropic", {"match_model": "claude-slow", "chunk_delay_ms": 200})
    s = fgw.stream(chat_body("slow", user("Hi there"), stream=True), deadline=15)
    stream_ok(s, "anthropic")
    assert s.elapsed > 1.5, f"the scripted stream should take ~2.5s, took {s.elapsed:.2f}s"
    assert_served(s, Ids.slow[0], attempts=1, fallback=False)
    assert attempts_seen(fgw) == [("anthropic", "claude-slow")]


@pytest.mark.parametrize("events", [0, 3])
def test_stalled_stream_does_not_hang(fgw, events):
    """The provider sends its 200 stream headers and `events` events, then nothing (connection open)
    for 60 s. The deployment has `stream_timeout: 1` and `timeout: 3`: the client's stream must end
    within a bound set by those, not by Envoy's 600 s route timeout: with an error event + [DONE]
    or a connection error, or (no event sent yet) with the next deployment's answer."""
    fgw.script("openai", {"match_model": "model-stall", "stall_after_events": events})
    s = fgw.stream(chat_body("stall", user("Hi there"), stream=True), deadline=9)
    assert not isinstance(s.error, TimeoutError), \
        f"stream still open after {s.elapsed:.1f}s (received {s.raw[-200:]!r})"
    assert s.status == 200 and s.elapsed < 8, f"ended after {s.elapsed:.1f}s"
    if events == 0 and s.content() == HELLO["anthropic"] + "Hi there":
        stream_ok(s, "anthropic")  # retried before any event reached the client
        assert attempts_seen(fgw) == [("openai", "model-stall"), ("anthropic", "claude-stall-2")]
        return
    got = s.content()
    assert (HELLO["openai"] + "Hi there").startswith(got) and (got or events == 0), got
    if s.error is None:
        assert s.errors() and s.ends_with_done(), s.raw[-300:]
    assert attempts_seen(fgw) == [("openai", "model-stall")]


def test_truncated_stream_from_a_retried_attempt_is_not_passed_off_as_complete(fgw):
    """model-mid fails (500) before any byte; the retry on claude-mid-2 (a whole-answer call) is
    truncated by the provider. Nothing reached the client yet, so the gateway may try the fallback;
    otherwise the client's stream must carry the partial text, an error event and [DONE]."""
    fgw.script("openai", {"match_model": "model-mid", "status": 500})
    fgw.script("anthropic", {"match_model": "claude-mid-2", "truncate_after_events": 5})
    s = fgw.stream(chat_body("mid-o", user("Hi there"), stream=True), deadline=10)
    assert s.status == 200 and s.error is None and s.elapsed < 5, (s.status, s.error, s.raw[-300:])
    if s.headers.get("x-llm-gateway-fallback") == "true":
        stream_ok(s, "anthropic")
        assert_served(s, Ids.afb, attempts=3, fallback=True)
        return
    assert_served(s, Ids.mid["openai"][1], attempts=2, fallback=False)
    got, full = s.content(), HELLO["anthropic"] + "Hi there"
    assert got != full and full.startswith(got), got
    assert s.errors(), f"a truncated answer must carry an error event: {s.raw[-400:]!r}"
    assert s.ends_with_done()
    assert attempts_seen(fgw) == [("openai", "model-mid"), ("anthropic", "claude-mid-2")]


def test_reset_mid_body_of_a_retried_attempt_is_never_a_200_with_half_an_answer(fgw):
    """model-mid fails (500); the retry's provider sends headers and half its JSON body, then
    resets. The client gets the fallback's complete answer or an OpenAI-shaped 5xx."""
    fgw.script("openai", {"match_model": "model-mid", "status": 500})
    fgw.script("anthropic", {"match_model": "claude-mid-2", "reset_after_events": 1})
    r = fgw.chat(chat_body("mid-o", user("Hi there")), timeout=10)
    if r.status == 200:
        chat_ok(r, "anthropic")
        assert_served(r, Ids.afb, attempts=3, fallback=True)
        assert attempts_seen(fgw) == [("openai", "model-mid"), ("anthropic", "claude-mid-2"),
                                      ("anthropic", "claude-fb")]
    else:
        assert_openai_error(r, r.status)
        assert r.status in (502, 503, 504), r.status
        assert r.headers.get("x-llm-gateway-attempts") in ("2", "3")
