"""Issue 4 cooldowns (router_settings `allowed_fails: 1`, `cooldown_time: 2`): a deployment that
fails more than allowed_fails times in a minute, or answers 429, is skipped by *every* Envoy worker
for cooldown_time seconds, then used again; when every deployment is cooling down the request fails
fast with 503 `all_deployments_cooled_down`, unless `gateway.use_cooled_down_when_all_cooled`.

  cd    openai/model-ca (weight 1e6), openai/model-cb
  both  openai/model-x1, openai/model-x2  (no fallbacks)
"""

from __future__ import annotations

import re
import time

import pytest

from conftest import (assert_openai_error, attach_gateway, chat_body, deployment_counter, gateway_stats, user)
from routing_helpers import PRIMARY, ModelList, assert_served, attempts_seen, chat_ok, models_seen, stream_ok

COOLDOWN_S = 2.0


def build(mocks, use_cooled: bool) -> dict:
    ml = ModelList(mocks)
    ml.add("cd", "openai/model-ca", weight=PRIMARY)
    ml.add("cd", "openai/model-cb", weight=1)
    ml.add("both", "openai/model-x1")
    ml.add("both", "openai/model-x2")
    gateway = {"use_cooled_down_when_all_cooled": True} if use_cooled else None
    return ml.config(router_settings={"allowed_fails": 1, "cooldown_time": COOLDOWN_S}, gateway=gateway)


@pytest.fixture(scope="module")
def cooldown_gateway(start_gateway, mocks):
    with start_gateway(build(mocks, use_cooled=False), name="cooldown") as g:
        yield g


@pytest.fixture(scope="module")
def use_cooled_gateway(start_gateway, mocks):
    with start_gateway(build(mocks, use_cooled=True), name="cooldown-use-cooled") as g:
        yield g


def worker_connections(gw) -> dict[str, int]:
    """Downstream connections accepted per Envoy worker on the gateway listener."""
    stats = gateway_stats(gw, "listener")
    out = {}
    for name, v in stats.items():
        m = re.fullmatch(rf"listener\.127\.0\.0\.1_{gw.port}\.(worker_\d+)\.downstream_cx_total", name)
        if m:
            out[m.group(1)] = v
    assert len(out) == 2, f"expected two workers' listener stats, got {out}"
    return out


def test_cooldown_is_shared_by_every_worker_and_expires(cooldown_gateway, request):
    gw = attach_gateway(cooldown_gateway, request)
    gw.script("openai", {"match_model": "model-ca", "status": 500, "repeat": 2})
    # failure 1 of model-ca: within allowed_fails, model-cb answers
    r = gw.chat(chat_body("cd", user("Hi there")))
    chat_ok(r, "openai")
    assert_served(r, "cd#1", attempts=2, fallback=False)
    # failure 2: more than allowed_fails -> model-ca cools down for 2 s
    t_sent = time.monotonic()
    r = gw.chat(chat_body("cd", user("Hi there")))
    t_cooled = time.monotonic()
    chat_ok(r, "openai")
    assert_served(r, "cd#1", attempts=2, fallback=False)
    assert models_seen(gw, "openai") == ["model-ca", "model-cb", "model-ca", "model-cb"]

    # While it cools down, requests on fresh connections (spread over both workers) never try it.
    before = worker_connections(gw)
    served = []
    while time.monotonic() < t_sent + COOLDOWN_S - 0.4 and len(served) < 40:
        r = gw.chat(chat_body("cd", user("Hi there")), timeout=5)  # one new connection each
        chat_ok(r, "openai")
        assert_served(r, "cd#1", attempts=1, fallback=False)
        served.append(r)
    after = worker_connections(gw)
    assert len(served) >= 10, f"only {len(served)} requests fitted in the cooldown window"
    assert all(after[w] > before[w] for w in before), \
        f"both workers must have served during the cooldown: before {before}, after {after}"
    assert models_seen(gw, "openai").count("model-ca") == 2, "a cooled-down deployment received traffic"

    # After cooldown_time it is the first choice again.
    time.sleep(max(0.0, t_cooled + COOLDOWN_S + 0.3 - time.monotonic()))
    for _ in range(5):
        r = gw.chat(chat_body("cd", user("Hi there")))
        chat_ok(r, "openai")
        assert_served(r, "cd#0", attempts=1, fallback=False)
    assert models_seen(gw, "openai").count("model-ca") == 7
    stats = gateway_stats(gw)
    assert deployment_counter(stats, "cooldowns", "cd#0") == 1, \
        {k: v for k, v in stats.items() if "cooldowns" in k}
    assert deployment_counter(stats, "cooldowns", "cd#1") in (0, None)


def cool_both(gw) -> None:
    """A 429 from each deployment of `both`: each cools down at once."""
    gw.script("openai", {"match_model": "model-x1", "status": 429}, {"match_model": "model-x2", "status": 429})
    r = gw.chat(chat_body("both", user("Hi there")))
    assert_openai_error(r, 429)
    assert r.headers.get("x-llm-gateway-attempts") == "2"
    assert sorted(models_seen(gw, "openai")) == ["model-x1", "model-x2"]


def test_all_deployments_cooled_down_fails_fast(cooldown_gateway, request):
    gw = attach_gateway(cooldown_gateway, request)
    cool_both(gw)
    t_cooled = time.monotonic()
    r = gw.chat(chat_body("both", user("Hi there")))
    err = assert_openai_error(r, 503, code="all_deployments_cooled_down")
    assert r.elapsed < 0.5, f"took {r.elapsed:.2f}s"
    assert "both" in err["message"], err
    s = gw.chat(chat_body("both", user("Hi there"), stream=True))
    assert_openai_error(s, 503, code="all_deployments_cooled_down")
    assert len(attempts_seen(gw)) == 2, "no provider request while everything is cooling down"
    # and it is over after cooldown_time
    time.sleep(max(0.0, t_cooled + COOLDOWN_S + 0.3 - time.monotonic()))
    r = gw.chat(chat_body("both", user("Hi there")))
    chat_ok(r, "openai")
    assert len(attempts_seen(gw)) == 3


def test_use_cooled_down_when_all_cooled_tries_anyway(use_cooled_gateway, request):
    gw = attach_gateway(use_cooled_gateway, request)
    cool_both(gw)
    r = gw.chat(chat_body("both", user("Hi there")))
    chat_ok(r, "openai")
    assert r.headers.get("x-llm-gateway-deployment") in ("both#2", "both#3"), r.headers
    assert r.headers.get("x-llm-gateway-attempts") == "1"
    assert len(attempts_seen(gw)) == 3
    s = gw.stream(chat_body("both", user("Hi there"), stream=True))
    stream_ok(s, "openai")
    assert len(attempts_seen(gw)) == 4


@pytest.fixture(scope="module")
def defaults_gateway(start_gateway, mocks):
    ml = ModelList(mocks)
    ml.add("cd", "openai/model-ca", weight=PRIMARY)
    ml.add("cd", "openai/model-cb", weight=1)
    with start_gateway(ml.config(), name="cooldown-defaults") as g:
        yield g


def test_default_allowed_fails_is_3(defaults_gateway, request):
    """Without router_settings: the 4th failure within a minute cools model-ca down (default
    cooldown_time 5 s)."""
    gw = attach_gateway(defaults_gateway, request)
    gw.script("openai", {"match_model": "model-ca", "status": 500, "repeat": 4})
    for i in range(4):
        r = gw.chat(chat_body("cd", user("Hi there")))
        chat_ok(r, "openai")
        assert_served(r, "cd#1", attempts=2, fallback=False)
    for i in range(3):
        r = gw.chat(chat_body("cd", user("Hi there")))
        chat_ok(r, "openai")
        assert_served(r, "cd#1", attempts=1, fallback=False)
    assert models_seen(gw, "openai") == ["model-ca", "model-cb"] * 4 + ["model-cb"] * 3
    assert deployment_counter(gateway_stats(gw), "cooldowns", "cd#0") == 1
