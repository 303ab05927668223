"""The Grafana dashboard (dashboards/llm-gateway.json, issue 19) against real Prometheus: Debian's
`prometheus` scrapes a rendered gateway's `/stats/prometheus` every second while traffic runs
(plain, streamed, a cache hit, a fallback, a guardrail block, a budget refusal, keys in a team),
then every panel's PromQL is evaluated through Prometheus's HTTP API and must return data.
With DASHBOARD_PNG=path set, tools/dashboard_png.py draws the panels there (the README's
picture)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import openai
import pytest

from conftest import HTTP_TIMEOUT, ROOT, dead_port, free_port
from keys_helpers import vkey
from render_helpers import rendered_gateway

DASHBOARD = ROOT / "dashboards" / "llm-gateway.json"
TEAM_KEY, SOLO_KEY, BROKE_KEY = "sk-dash-team", "sk-dash-solo", "sk-dash-broke"
ENV = {"DB_OPENAI_KEY": "sk-oai-db", "DB_ANTHROPIC_KEY": "sk-ant-db", "DB_MASTER_KEY": "sk-dash-master"}
PRICE = {"input_cost_per_token": 0.000002, "output_cost_per_token": 0.000008}


def dashboard_config(mocks) -> dict:
    openai_base = f"http://127.0.0.1:{mocks.openai_port}/v1"
    return {
        "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": openai_base,
                                                     "api_key": "os.environ/DB_OPENAI_KEY", **PRICE}},
            {"model_name": "claude", "litellm_params": {
                "model": "anthropic/claude-sonnet-4-5", "api_base": f"http://127.0.0.1:{mocks.anthropic_port}",
                "api_key": "os.environ/DB_ANTHROPIC_KEY", **PRICE}},
            {"model_name": "flaky", "litellm_params": {"model": "openai/gpt-4o-mini",
                                                       "api_base": f"http://127.0.0.1:{dead_port()}/v1",
                                                       "api_key": "os.environ/DB_OPENAI_KEY"}},
        ],
        "router_settings": {"fallbacks": [{"flaky": ["gpt"]}], "disable_cooldowns": True},
        "litellm_settings": {"cache": True, "cache_params": {"type": "local"}},
        "guardrails": [{"guardrail_name": "no-secrets", "litellm_params": {
            "guardrail": "litellm_content_filter", "mode": "pre_call", "default_on": True,
            "patterns": [{"pattern_type": "regex", "pattern": r"\bTOPSECRET\b", "name": "secret",
                          "action": "BLOCK"}]}}],
        "general_settings": {"master_key": "os.environ/DB_MASTER_KEY"},
        "virtual_keys": [vkey(TEAM_KEY, "team-key", team_id="squad", max_budget=10.0),
                         vkey(SOLO_KEY, "solo-key", max_budget=5.0),
                         vkey(BROKE_KEY, "broke-key", max_budget=0)],
        "teams": [{"team_id": "squad"}],
    }


def promql(prom: str, expr: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{prom}/api/v1/query?{q}", timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if not path:
        pytest.fail("Debian's `prometheus` is not installed (tools/ensure-debs.sh prometheus; "
                    "`make test` installs it)", pytrace=False)
    return path


def traffic(base_url: str) -> None:
    def sdk(key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=HTTP_TIMEOUT)
    for i in range(3):
        sdk(TEAM_KEY).chat.completions.create(model="claude", messages=[{"role": "user", "content": f"c{i}"}])
        list(sdk(SOLO_KEY).chat.completions.create(model="gpt", stream=True,
                                                    messages=[{"role": "user", "content": f"s{i}"}]))
        sdk(TEAM_KEY).chat.completions.create(model="flaky", messages=[{"role": "user", "content": f"f{i}"}])
        sdk(TEAM_KEY).chat.completions.create(model="gpt", messages=[{"role": "user", "content": "same"}])
        with pytest.raises(openai.APIStatusError):
            sdk(TEAM_KEY).chat.completions.create(model="gpt", messages=[{"role": "user", "content": "TOPSECRET"}])
        with pytest.raises(openai.APIStatusError):
            sdk(BROKE_KEY).chat.completions.create(model="gpt", messages=[{"role": "user", "content": f"b{i}"}])
        time.sleep(1.0)


def test_every_panel_query_returns_data(gateway_bin, envoy_bin, mocks, e2e_dir, prometheus_bin):
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len(panels) >= 12, "the dashboard lost panels"
    workdir = e2e_dir / "dashboard"
    with rendered_gateway(gateway_bin, envoy_bin, dashboard_config(mocks), workdir, "dash", ENV,
                          "--access-log", str(workdir / "access.log")) as (port, admin_port):
        prom_port = free_port()
        cfg = workdir / "prometheus.yml"
        cfg.write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": [{
            "job_name": "llm-gateway", "metrics_path": "/stats/prometheus",
            "static_configs": [{"targets": [f"127.0.0.1:{admin_port}"]}]}]}))
        log = open(workdir / "prometheus.log", "wb")
        proc = subprocess.Popen([prometheus_bin, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=log)
        prom = f"http://127.0.0.1:{prom_port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if promql(prom, "up") and promql(prom, "up")[0]["value"][1] == "1":
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            else:
                pytest.fail(f"prometheus never scraped the gateway: {(workdir / 'prometheus.log').read_text()[-2000:]}")
            traffic(f"http://127.0.0.1:{port}")
            time.sleep(3)  # a few more scrapes after the last request
            empty = []
            for p in panels:
                expr = p["targets"][0]["expr"]
                result = promql(prom, expr)
                values = [float(r["value"][1]) for r in result]
                if not result or all(v != v for v in values):  # none, or only NaN
                    empty.append((p["title"], expr))
            assert not empty, f"panels without data: {empty}"
            # The numbers mean what the titles say.
            blocks = promql(prom, 'sum by (guardrail) (increase(llm_gateway_guardrail_blocked[1h]))')
            assert [b["metric"]["guardrail"] for b in blocks] == ["no_secrets"]  # label values are sanitized
            teams = promql(prom, "sum by (team) (increase(llm_gateway_team_cost_micro_usd[1h]))")
            assert [t["metric"]["team"] for t in teams] == ["squad"] and float(teams[0]["value"][1]) > 0
            if os.environ.get("DASHBOARD_PNG"):
                subprocess.run([sys.executable, str(ROOT / "tools" / "dashboard_png.py"), prom,
                                os.environ["DASHBOARD_PNG"], "1"], check=True, timeout=120)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            log.close()
