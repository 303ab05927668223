"""Issue 5, virtual keys: authentication (Bearer or x-api-key), 401/403 in OpenAI shape, the master
key (from `os.environ/GATEWAY_MASTER_KEY` in the VM environment), /key/info access rules, the open
gateway, and the key never leaving the gateway (provider headers, Envoy log, /stats).

  gpt     openai/gpt-mock-priced        claude  anthropic/claude-mock-priced
  alice   models [gpt]                  bob.smith  all models
  carol   team `narrow` (team models [gpt])
"""

from __future__ import annotations

import pytest

from conftest import ANTHROPIC_KEY, OPENAI_KEY, CLIENT_KEY, assert_openai_error, attach_gateway, chat_body, user
from keys_helpers import (MASTER_ENV, MASTER_KEY, all_headers_at_mocks, chat, key_hash, key_info, key_ref,
                          keyed_config, send, stream, usage_counter, all_stats, vkey, wait_info)

ALICE = "sk-alice-Qm4u2Zr8p1"
BOB = "sk-bob-Lx9v0Tn5c3"
CAROL = "sk-carol-Hy7w3Kd6b2"
UNKNOWN = "sk-nobody-Ww1x2y3z4"
PLAIN_KEYS = (ALICE, BOB, CAROL, UNKNOWN, MASTER_KEY)


@pytest.fixture(scope="module")
def auth_gateway(start_gateway, mocks):
    keys = [vkey(ALICE, "alice", models=["gpt"], max_budget=10.0),
            vkey(BOB, "bob.smith", max_budget=10.0),
            vkey(CAROL, "carol", team="narrow")]
    teams = [{"team_id": "narrow", "models": ["gpt"]}]
    cfg = keyed_config(mocks, keys, teams)
    with start_gateway(cfg, name="keys-auth", env=MASTER_ENV, wasm_log_level="debug") as g:
        yield g


@pytest.fixture
def ag(auth_gateway, request):
    return attach_gateway(auth_gateway, request)


def no_provider_requests(gw) -> None:
    seen = gw.provider_requests("openai") + gw.provider_requests("anthropic")
    assert not seen, f"a refused request reached a provider: {[r['path'] for r in seen]}"


def test_missing_key_is_401(ag):
    for path, body in (("/v1/chat/completions", chat_body("gpt")), ("/v1/models", None), ("/key/info", None)):
        r = send(ag, "POST" if body else "GET", path, body, key=None)
        assert_openai_error(r, 401, "authentication_error", code="missing_api_key")
    r = chat(ag, None, chat_body("gpt", stream=True))
    assert_openai_error(r, 401, "authentication_error", code="missing_api_key")
    # An empty x-api-key is no key either.
    r = send(ag, "POST", "/v1/chat/completions", chat_body("gpt"), key=None, headers={"x-api-key": ""})
    assert_openai_error(r, 401, "authentication_error", code="missing_api_key")
    no_provider_requests(ag)


def test_unknown_or_malformed_key_is_401(ag):
    for via in ("bearer", "x-api-key"):
        r = chat(ag, UNKNOWN, chat_body("gpt"), via=via)
        err = assert_openai_error(r, 401, "authentication_error", code="invalid_api_key")
        assert UNKNOWN not in r.text, err
    # Not the Bearer scheme, and no x-api-key
    for auth in (f"Basic {ALICE}", "Bearer", "Bearer   "):
        r = send(ag, "POST", "/v1/chat/completions", chat_body("gpt"), key=None, headers={"Authorization": auth})
        assert_openai_error(r, 401, "authentication_error", code="invalid_api_key")
    # The master key's config reference is not the master key.
    r = chat(ag, "os.environ/GATEWAY_MASTER_KEY", chat_body("gpt"))
    assert_openai_error(r, 401, "authentication_error", code="invalid_api_key")
    # A key's hash is not the key.
    r = chat(ag, key_hash(ALICE), chat_body("gpt"))
    assert_openai_error(r, 401, "authentication_error", code="invalid_api_key")
    r = send(ag, "GET", "/key/info", key=UNKNOWN)
    assert_openai_error(r, 401, "authentication_error", code="invalid_api_key")
    no_provider_requests(ag)


def test_bearer_and_x_api_key_are_accepted(ag):
    r = chat(ag, ALICE, chat_body("gpt", user("Hi there")), via="x-api-key")
    assert r.status == 200, r.body[:400]
    r = chat(ag, BOB, chat_body("claude", user("Hi there")), via="x-api-key")
    assert r.status == 200, r.body[:400]
    r = send(ag, "POST", "/v1/chat/completions", chat_body("gpt"), key=None,
             headers={"Authorization": f"bearer {ALICE}"})
    assert r.status == 200, r.body[:400]
    # Authorization that is not Bearer: the x-api-key decides.
    r = send(ag, "POST", "/v1/chat/completions", chat_body("claude"), key=BOB, via="x-api-key",
             headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert r.status == 200, r.body[:400]
    s = stream(ag, BOB, chat_body("claude", stream=True), via="x-api-key")
    assert s.status == 200 and s.error is None and s.ends_with_done(), s.raw[-300:]
    assert len(ag.provider_requests("openai")) == 2 and len(ag.provider_requests("anthropic")) == 3
    info = wait_info(ag, BOB, lambda i: i["rpm_used"] >= 3 and i["parallel_requests"] == 0)
    assert info["key_alias"] == "bob.smith" and info["rpm_used"] == 3, info


def test_model_not_allowed_is_403(ag):
    before = all_stats(ag)
    r = chat(ag, ALICE, chat_body("claude"))
    err = assert_openai_error(r, 403, "permission_error", param="model", code="model_not_allowed")
    assert "alice" in err["message"] and "claude" in err["message"], err
    r = chat(ag, ALICE, chat_body("claude", stream=True), via="x-api-key")
    assert_openai_error(r, 403, "permission_error", param="model", code="model_not_allowed")
    # The team narrows its keys' models.
    r = chat(ag, CAROL, chat_body("claude"))
    err = assert_openai_error(r, 403, "permission_error", param="model", code="model_not_allowed")
    assert "carol" in err["message"] and "narrow" in err["message"], err
    no_provider_requests(ag)
    assert chat(ag, CAROL, chat_body("gpt")).status == 200
    # /v1/models lists what each key may use.
    ids = lambda k: sorted(m["id"] for m in send(ag, "GET", "/v1/models", key=k).json()["data"])  # noqa: E731
    assert ids(ALICE) == ["gpt"]
    assert ids(CAROL) == ["gpt"]
    assert ids(BOB) == ["claude", "gpt"]
    assert ids(MASTER_KEY) == ["claude", "gpt"]
    after = all_stats(ag)
    # a 403 is not an admitted request, nor a budget refusal
    for what in ("requests", "rejected_budget", "rejected_rpm"):
        assert usage_counter(after, "key", "alice", what) == usage_counter(before, "key", "alice", what), what
    assert usage_counter(after, "key", "carol", "requests") == usage_counter(before, "key", "carol", "requests") + 1


def test_master_key_passes_every_check_and_reads_any_key(ag):
    before = all_stats(ag)
    for alias in ("gpt", "claude"):
        r = chat(ag, MASTER_KEY, chat_body(alias))
        assert r.status == 200, r.body[:300]
        assert "x-llm-gateway-response-cost" not in r.headers, "the master key is not charged"
    s = stream(ag, MASTER_KEY, chat_body("claude", stream=True), via="x-api-key")
    assert s.status == 200 and s.ends_with_done(), s.raw[-300:]
    after = all_stats(ag)
    assert usage_counter(after, "key", "master", "requests") == 0
    assert not [n for n in after if ".key.master." in n], "master requests are not counted as a key"
    assert usage_counter(after, "key", "bob_smith", "requests") == usage_counter(before, "key", "bob_smith", "requests")

    body = key_info(ag, MASTER_KEY, f"key={BOB}")
    assert body["key"] == key_ref(BOB) and body["info"]["key_alias"] == "bob.smith", body
    assert body["info"]["max_budget"] == 10.0
    body = key_info(ag, MASTER_KEY, "key_alias=alice")
    assert body["key"] == key_ref(ALICE) and body["info"]["key_alias"] == "alice", body
    assert body["info"]["models"] == ["gpt"]
    body = key_info(ag, MASTER_KEY, "key_alias=carol")
    assert body["info"]["team_id"] == "narrow" and body["info"]["team"]["team_id"] == "narrow", body
    assert body["info"]["team"]["models"] == ["gpt"]
    r = send(ag, "GET", "/key/info", key=MASTER_KEY)
    assert_openai_error(r, 400, "invalid_request_error", param="key")
    r = send(ag, "GET", "/key/info?key_alias=nobody", key=MASTER_KEY)
    assert_openai_error(r, 404, code="key_not_found")
    r = send(ag, "GET", f"/key/info?key={UNKNOWN}", key=MASTER_KEY)
    assert_openai_error(r, 404, code="key_not_found")


def test_a_key_cannot_read_another_key(ag):
    for query in (f"key={BOB}", "key_alias=bob.smith", ""):
        body = key_info(ag, ALICE, query)
        assert body["key"] == key_ref(ALICE), (query, body)
        assert body["info"]["key_alias"] == "alice", (query, body)
    body = key_info(ag, BOB, "")
    assert body["key"] == key_ref(BOB) and body["info"]["key_alias"] == "bob.smith"
    info = body["info"]
    for f in ("key_alias", "spend", "spend_micro", "reserved_micro", "max_budget", "budget_reset_at",
              "remaining_budget", "rpm_used", "tpm_used", "parallel_requests", "team", "model_max_budget"):
        assert f in info, (f, info)
    assert BOB not in send(ag, "GET", "/key/info", key=BOB).text


def test_the_key_never_leaves_the_gateway(ag):
    sent = [
        chat(ag, ALICE, chat_body("gpt")),
        chat(ag, ALICE, chat_body("gpt"), via="x-api-key"),
        chat(ag, BOB, chat_body("claude")),
        chat(ag, BOB, chat_body("claude"), via="x-api-key"),
        chat(ag, MASTER_KEY, chat_body("gpt")),
        chat(ag, MASTER_KEY, chat_body("claude"), via="x-api-key"),
    ]
    assert [r.status for r in sent] == [200] * 6, [(r.status, r.body[:200]) for r in sent]
    for key, via, alias in ((ALICE, "bearer", "gpt"), (BOB, "x-api-key", "claude"), (MASTER_KEY, "bearer", "claude")):
        s = stream(ag, key, chat_body(alias, stream=True), via=via)
        assert s.status == 200 and s.ends_with_done(), s.raw[-300:]
    # refused ones too
    assert chat(ag, UNKNOWN, chat_body("gpt")).status == 401
    assert chat(ag, ALICE, chat_body("claude")).status == 403

    headers = all_headers_at_mocks(ag)
    # the OpenAI mock's 4 requests (3 + 1 stream) carry the gateway's key
    assert len([h for h in headers if h[1].lower() == "authorization"]) == 4
    for provider, name, value in headers:
        for plain in PLAIN_KEYS:
            assert plain not in value, f"{provider} mock got the client's key in header {name}: {value}"
        if name.lower() == "authorization":
            assert provider == "openai" and value == f"Bearer {OPENAI_KEY}", (provider, name, value)
        if name.lower() == "x-api-key":
            assert provider == "anthropic" and value == ANTHROPIC_KEY, (provider, name, value)
    bodies = [r.get("raw_body") or str(r.get("body")) for p in ("openai", "anthropic") for r in ag.requests(p)]
    assert not [b for b in bodies for k in PLAIN_KEYS if k in b]

    log = ag.log_path.read_text(errors="replace")
    assert "llm-gateway" in log, "the filter's debug log is empty: the check below would prove nothing"
    for plain in PLAIN_KEYS:
        assert plain not in log, f"a plain key is in the Envoy log ({plain[:8]}...)"
    for stats_path in ("/stats", "/stats/prometheus", "/stats?format=json"):
        text = ag.admin(stats_path).text
        for plain in PLAIN_KEYS:
            assert plain not in text, f"a plain key is in {stats_path}"
            assert key_hash(plain)[7:] not in text, f"a key's digest is in {stats_path}"
    assert usage_counter(all_stats(ag), "key", "bob.smith", "requests") >= 3


def test_counter_service_runs(ag):
    stats = all_stats(ag)
    assert "wasm.llm_gateway_counter.vm_reload" in stats, sorted(n for n in stats if n.startswith("wasm."))
    log = ag.log_path.read_text(errors="replace")
    assert "llm-gateway counter: serving usage queue" in log, log[-2000:]


def test_open_gateway_without_keys(gw):
    """The session gateway has neither virtual_keys nor a master key: no key needed, nothing charged."""
    r = send(gw, "POST", "/v1/chat/completions", chat_body("gpt"), key=None)
    assert r.status == 200, r.body[:300]
    assert "x-llm-gateway-response-cost" not in r.headers
    r = chat(gw, "any-key-at-all", chat_body("claude"), via="x-api-key")
    assert r.status == 200, r.body[:300]
    r = send(gw, "GET", "/key/info", key=CLIENT_KEY)
    assert_openai_error(r, 404)
    assert "wasm.llm_gateway_counter.vm_reload" in all_stats(gw), "the session gateway runs the counter service too"


def test_a_limited_key_never_falls_back_to_a_model_it_may_not_use(ag):
    """Issue 17: alice may use `gpt` only; a context-window fallback to `claude` (asked in the
    request) is not taken, so the provider's own 400 reaches her and Anthropic is never called."""
    too_long = {"error": {"message": "This model's maximum context length is 8192 tokens",
                          "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}
    for extra in ({"context_window_fallbacks": ["claude"]}, {"fallbacks": ["claude"]}):
        ag.reset()
        status = 400 if "context_window_fallbacks" in extra else 500
        ag.script("openai", {"status": status, "body": too_long if status == 400 else {"error": {"message": "down"}}})
        r = chat(ag, ALICE, {**chat_body("gpt"), **extra})
        assert_openai_error(r, status)
        assert ag.provider_requests("anthropic") == [], extra
        assert len(ag.provider_requests("openai")) == 1
