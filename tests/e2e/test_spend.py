"""Spend records and reports in real Envoy (issue 19), on a *rendered* bootstrap (`llm-gateway
render --spend-log PATH`): one JSON spend record per LLM request in the spend log (and nothing for
other requests), daily totals per key, team and model in `/global/spend/report`, recent records
in `/spend/logs`, `/team/info`; the totals equal what the mock providers reported (tokens) priced
as the config says, and a key reads only itself. The official openai SDK is the client."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

import openai
import pytest

from conftest import HTTP_TIMEOUT, gateway_stats
from keys_helpers import vkey
from render_helpers import rendered_gateway

MASTER = "sk-spend-master-1"
SQUAD_KEY, SOLO_KEY, BROKE_KEY = "sk-spend-squad-a", "sk-spend-solo-b", "sk-spend-broke-c"
ENV = {"SP_ANTHROPIC_KEY": "sk-ant-sp", "SP_OPENAI_KEY": "sk-oai-sp", "SP_MASTER_KEY": MASTER}
# USD per token, as litellm_params.
GPT = {"input_cost_per_token": 0.000002, "output_cost_per_token": 0.000008}
CLAUDE = {"input_cost_per_token": 0.000003, "output_cost_per_token": 0.000015}


def spend_config(mocks) -> dict:
    return {
        "model_list": [
            {"model_name": "gpt", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{mocks.openai_port}/v1",
                "api_key": "os.environ/SP_OPENAI_KEY", **GPT}},
            {"model_name": "claude", "litellm_params": {
                "model": "anthropic/claude-sonnet-4-5", "api_base": f"http://127.0.0.1:{mocks.anthropic_port}",
                "api_key": "os.environ/SP_ANTHROPIC_KEY", **CLAUDE}},
        ],
        "general_settings": {"master_key": "os.environ/SP_MASTER_KEY"},
        "virtual_keys": [vkey(SQUAD_KEY, "squad-a", team_id="squad"), vkey(SOLO_KEY, "solo-b"),
                         vkey(BROKE_KEY, "broke-c", max_budget=0)],
        "teams": [{"team_id": "squad", "max_budget": 10.0}],
        "router_settings": {"disable_cooldowns": True},
    }


class Spend:
    def __init__(self, port: int, spend_log: Path):
        self.base_url, self.spend_log = f"http://127.0.0.1:{port}", spend_log

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=key, max_retries=0, timeout=HTTP_TIMEOUT)

    def get(self, path: str, key: str | None, **query) -> tuple[int, object]:
        import urllib.request
        url = f"{self.base_url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def lines(self) -> list[dict]:
        if not self.spend_log.exists():
            return []
        return [json.loads(l) for l in self.spend_log.read_text().splitlines() if l.strip()]


@pytest.fixture(scope="module")
def spend(gateway_bin, mocks, e2e_dir, envoy_bin):
    workdir = e2e_dir / "spend"
    spend_log = workdir / "spend-records.log"
    with rendered_gateway(gateway_bin, envoy_bin, spend_config(mocks), workdir, "spend", ENV,
                          "--access-log", str(workdir / "access.log"), "--spend-log", str(spend_log)) as (port, _):
        yield Spend(port, spend_log)


def cost_micro(price: dict, usage) -> int:
    return round((usage.prompt_tokens * price["input_cost_per_token"]
                  + usage.completion_tokens * price["output_cost_per_token"]) * 1e6)


@pytest.fixture(scope="module")
def seeded(spend):
    """Traffic: squad-a asks gpt twice and claude once (one streamed), solo-b gpt once, broke-c is
    refused; plus a /v1/models call that is not an LLM request."""
    answers = []
    for key, model, price in [(SQUAD_KEY, "gpt", GPT), (SQUAD_KEY, "gpt", GPT), (SQUAD_KEY, "claude", CLAUDE),
                              (SOLO_KEY, "gpt", GPT)]:
        out = spend.sdk(key).chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"spend test {len(answers)}"}], user="end-user-7")
        answers.append((key, model, out.id, out.usage, cost_micro(price, out.usage)))
    with pytest.raises(openai.APIStatusError):
        spend.sdk(BROKE_KEY).chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    spend.sdk(SOLO_KEY).models.list()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(spend.lines()) < 5:
        time.sleep(0.1)
    # The counter service's ledger gets the records in per-worker batches (at most ~50 ms late).
    while time.monotonic() < deadline and len(spend.get("/spend/logs", MASTER)[1]) < 5:
        time.sleep(0.05)
    return answers


def test_one_spend_record_per_llm_request(spend, seeded):
    lines = spend.lines()
    assert len(lines) == 5, lines  # four answered, one refused; /v1/models writes none
    by_id = {l["request_id"]: l for l in lines}
    for key, model, rid, usage, micro in seeded:
        rec = by_id[rid]
        assert rec["model_group"] == model and rec["status"] == "success" and rec["status_code"] == 200
        assert (rec["prompt_tokens"], rec["completion_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
        assert rec["total_tokens"] == usage.total_tokens
        assert rec["spend_micro"] == micro and abs(rec["spend"] - micro / 1e6) < 1e-12
        assert rec["end_user"] == "end-user-7" and rec["call_type"] == "chat"
        assert rec["api_key"].startswith("sha256:") and key not in json.dumps(rec)
        assert rec["startTime"] <= rec["endTime"] and rec["endTime"].endswith("Z")
    squad = [by_id[r] for k, _, r, _, _ in seeded if k == SQUAD_KEY]
    assert all(r["key_alias"] == "squad-a" and r["team_id"] == "squad" for r in squad)
    refused = [l for l in lines if l["key_alias"] == "broke-c"]
    assert len(refused) == 1 and refused[0]["status"] == "failure" and refused[0]["spend_micro"] == 0
    assert refused[0]["status_code"] >= 400


def wait_report(spend, key, **q):
    deadline = time.monotonic() + 10
    while True:
        status, body = spend.get("/global/spend/report", key, **q)
        if status != 200 or body or time.monotonic() > deadline:
            return status, body
        time.sleep(0.1)


def test_report_totals_equal_what_the_providers_reported(spend, seeded):
    today = time.strftime("%Y-%m-%d", time.gmtime())
    want_team = sum(m for k, _, _, _, m in seeded if k == SQUAD_KEY)
    status, body = wait_report(spend, MASTER, start_date=today, end_date=today, group_by="team")
    assert status == 200 and body[0]["group_by_day"] == today
    [team] = body[0]["teams"]
    assert team["team_name"] == "squad" and team["total_spend_micro"] == want_team
    per_model = {m["model"]: m["spend_micro"] for m in team["metadata"]}
    assert per_model == {"gpt": sum(m for k, mo, _, _, m in seeded if k == SQUAD_KEY and mo == "gpt"),
                         "claude": sum(m for k, mo, _, _, m in seeded if k == SQUAD_KEY and mo == "claude")}
    status, body = spend.get("/global/spend/report", MASTER, start_date=today, end_date=today, group_by="model")
    models = {m["model"]: m for m in body[0]["models"]}
    assert models["gpt"]["total_spend_micro"] == sum(m for _, mo, _, _, m in seeded if mo == "gpt")
    assert models["gpt"]["prompt_tokens"] == sum(u.prompt_tokens for _, mo, _, u, _ in seeded if mo == "gpt")
    assert models["gpt"]["requests"] == 4  # three answered and the refused one
    status, body = spend.get("/global/spend/report", MASTER, start_date=today, end_date=today, group_by="api_key")
    keys = {k["key_alias"]: k["total_spend_micro"] for k in body[0]["api_keys"]}
    assert keys == {"squad-a": want_team, "solo-b": seeded[3][4], "broke-c": 0}


def test_a_key_reads_only_itself(spend, seeded):
    today = time.strftime("%Y-%m-%d", time.gmtime())
    status, body = spend.get("/global/spend/report", SOLO_KEY, start_date=today, group_by="api_key")
    assert status == 200 and [k["key_alias"] for k in body[0]["api_keys"]] == ["solo-b"]
    status, body = spend.get("/global/spend/report", SOLO_KEY, group_by="team")
    assert status == 200 and body == []
    status, logs = spend.get("/spend/logs", SOLO_KEY)
    assert status == 200 and {l["key_alias"] for l in logs} == {"solo-b"} and len(logs) == 1
    status, logs = spend.get("/spend/logs", MASTER, request_id=seeded[0][2])
    assert status == 200 and [l["request_id"] for l in logs] == [seeded[0][2]]
    status, info = spend.get("/team/info", MASTER, team_id="squad")
    assert status == 200 and info["team_id"] == "squad" and info["team_info"]["models"] == []
    assert info["team_info"]["spend_micro"] == sum(m for k, _, _, _, m in seeded if k == SQUAD_KEY)
    status, err = spend.get("/team/info", SOLO_KEY, team_id="squad")
    assert status == 403 and err["error"]["type"] == "permission_error"
    status, _ = spend.get("/team/info", SQUAD_KEY)
    assert status == 200
    status, err = spend.get("/spend/logs", None)
    assert status == 401
    status, err = spend.get("/global/spend/report", MASTER, start_date="2026-13-01")
    assert status == 400 and err["error"]["param"] == "start_date"


def test_fleet_report_sums_every_envoy(start_gateway, mocks, e2e_dir):
    """With `counters.redis`, each counter service adds its Envoy's spend to Redis (batched per
    tick); `/global/spend/report` on any Envoy answers the fleet's totals."""
    from conftest import mock_cluster_map, mock_deployment
    from fleet_helpers import RedisFleet

    redis = RedisFleet(e2e_dir / "redis-spend")
    try:
        cfg = {
            "model_list": [mock_deployment(mocks, "gpt", "openai/gpt-4o-mini", **GPT)],
            "virtual_keys": [vkey(SQUAD_KEY, "squad-a", team_id="squad"), vkey(SOLO_KEY, "solo-b")],
            "teams": [{"team_id": "squad"}],
            "general_settings": {"master_key": "os.environ/SP_MASTER_KEY"},
            "counters": {"redis": {"cluster": "webdis", "key_prefix": "spendtest", "sync_interval": "200ms"}},
            "gateway": {"clusters": mock_cluster_map(mocks)},
        }
        env = {"MOCK_OPENAI_KEY": "sk-oai-test", "SP_MASTER_KEY": MASTER}
        want = 0
        with start_gateway(cfg, extra_clusters={"webdis": redis.webdis_port}, env=env, name="spend-a") as a, \
                start_gateway(cfg, extra_clusters={"webdis": redis.webdis_port}, env=env, name="spend-b") as b:
            for gw in (a, b, b):
                c = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=SQUAD_KEY, max_retries=0,
                                  timeout=HTTP_TIMEOUT)
                out = c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "fleet"}])
                want += cost_micro(GPT, out.usage)
            today = time.strftime("%Y-%m-%d", time.gmtime())
            deadline = time.monotonic() + 10
            while True:
                r = a.request("GET", f"/global/spend/report?group_by=team&start_date={today}",
                              headers={"Authorization": f"Bearer {MASTER}"})
                body = r.json()
                got = body[0]["teams"][0]["total_spend_micro"] if body else 0
                if got == want or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert r.status == 200 and r.headers["x-llm-gateway-spend-scope"] == "fleet"
            assert got == want and body[0]["teams"][0]["requests"] == 3
            # Flushed once: further ticks add nothing (a failed flush would be re-sent).
            time.sleep(1)
            r = a.request("GET", f"/global/spend/report?group_by=team&start_date={today}",
                          headers={"Authorization": f"Bearer {MASTER}"})
            assert r.json()[0]["teams"][0]["total_spend_micro"] == want
            for gw in (a, b):
                stats = gateway_stats(gw, "spend")
                flushes = {n: v for n, v in stats.items() if n.endswith("spend.fleet_flushes")}
                failures = {n: v for n, v in stats.items() if n.endswith("spend.fleet_flush_failures")}
                assert sum(flushes.values()) >= 1 and sum(failures.values()) == 0, stats
            # A key still reads only itself, fleet-wide too.
            r = b.request("GET", f"/global/spend/report?group_by=api_key&start_date={today}",
                          headers={"Authorization": f"Bearer {SOLO_KEY}"})
            assert r.status == 200 and r.json() == []
            # Redis away: this Envoy's own totals, said so.
            redis.stop_redis()
            r = b.request("GET", f"/global/spend/report?group_by=team&start_date={today}",
                          headers={"Authorization": f"Bearer {MASTER}"})
            assert r.status == 200 and r.headers["x-llm-gateway-spend-scope"] == "local"
            assert r.json()[0]["teams"][0]["requests"] == 2
    finally:
        redis.close()
