"""A LiteLLM `config.yaml` written the way LiteLLM users write it, rendered by `llm-gateway render`
and served by real Envoy: YAML 1.1 scalars as PyYAML reads them (`tpm: 80_000`, `rpm: 1_000`,
`drop_params: yes`), anchors and merge keys, `api_base: os.environ/...` resolved from the
environment render runs in, and deployment defaults. The official openai SDK asks; the mock records
what it got. An unset endpoint variable fails render naming the field and the variable."""

from __future__ import annotations

import os
import subprocess

import openai
import pytest
import yaml

from conftest import HTTP_TIMEOUT, WASM_PATH, Gateway, free_port, launch_envoy, stop_envoy

CONFIG = """\
x-defaults: &defaults
  api_key: os.environ/YAML_OPENAI_KEY
  tpm: 80_000
  rpm: 1_000
  temperature: 0.25

model_list:
  - model_name: gpt
    litellm_params:
      <<: *defaults
      model: openai/gpt-4o-mini
      api_base: os.environ/YAML_OPENAI_BASE
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: os.environ/YAML_ANTHROPIC_BASE
      api_key: os.environ/YAML_ANTHROPIC_KEY
      max_tokens: 123

litellm_settings:
  drop_params: yes
"""


def run_render(gateway_bin, src, env, port, admin_port):
    return subprocess.run(
        [str(gateway_bin), "render", str(src), "--listen", f"127.0.0.1:{port}", "--admin-port",
         str(admin_port), "--wasm", str(WASM_PATH)],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env})


@pytest.fixture(scope="module")
def yaml_gw(gateway_bin, mocks, e2e_dir, envoy_bin):
    workdir = e2e_dir / "litellm-yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "config.yaml"
    src.write_text(CONFIG)
    port, admin_port = free_port(), free_port()
    env = {"YAML_OPENAI_BASE": f"http://127.0.0.1:{mocks.openai_port}/v1",
           "YAML_ANTHROPIC_BASE": f"http://127.0.0.1:{mocks.anthropic_port}",
           "YAML_OPENAI_KEY": "sk-oai-yaml", "YAML_ANTHROPIC_KEY": "sk-ant-yaml"}
    r = run_render(gateway_bin, src, env, port, admin_port)
    assert r.returncode == 0, r.stderr
    boot = yaml.safe_load(r.stdout)
    # The endpoints are written in; the VM still reads the keys from its environment.
    proc, log_path, _ = launch_envoy(boot, workdir, "litellm-yaml", envoy_bin,
                                     env={k: v for k, v in env.items() if k.endswith("_KEY")})
    gw = Gateway(port, admin_port, mocks, log_path)
    gw.bootstrap = boot  # type: ignore[attr-defined]
    try:
        yield gw
    finally:
        stop_envoy(proc)


def plugin_config(boot: dict) -> dict:
    import json
    for lst in boot["static_resources"]["listeners"]:
        for fc in lst["filter_chains"]:
            for f in fc["filters"]:
                for hf in f.get("typed_config", {}).get("http_filters", []):
                    if hf["name"].endswith("wasm") or "wasm" in hf["name"]:
                        return json.loads(hf["typed_config"]["config"]["configuration"]["value"])
    raise AssertionError("no wasm filter in the bootstrap")


def test_render_reads_yaml_1_1_and_resolves_endpoints(yaml_gw):
    cfg = plugin_config(yaml_gw.bootstrap)
    gpt = cfg["model_list"][0]["litellm_params"]
    assert (gpt["tpm"], gpt["rpm"], gpt["temperature"]) == (80000, 1000, 0.25)
    assert gpt["api_base"].startswith("http://127.0.0.1:"), "resolved where render runs"
    assert gpt["api_key"] == "os.environ/YAML_OPENAI_KEY", "a credential stays a reference"
    assert cfg["litellm_settings"]["drop_params"] is True


def test_the_rendered_gateway_serves_the_config(yaml_gw):
    mocks = yaml_gw
    mocks.reset()
    client = openai.OpenAI(base_url=f"{yaml_gw.base_url}/v1", api_key="client",
                           max_retries=0, timeout=HTTP_TIMEOUT)
    answer = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    got = mocks.only_request("openai")
    assert got["body"]["temperature"] == 0.25, "a default from the merged anchor"
    assert got["headers"]["authorization"] == "Bearer sk-oai-yaml"
    answer = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi"}], logit_bias={"1": 1})
    assert answer.choices[0].message.content
    sent = mocks.only_request("anthropic")["body"]
    assert sent["max_tokens"] == 123
    assert "logit_bias" not in sent, "drop_params: yes is true"


def test_an_unset_endpoint_variable_fails_render_naming_it(gateway_bin, e2e_dir):
    src = e2e_dir / "litellm-yaml-unset.yaml"
    src.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YAML_")}
    r = subprocess.run([str(gateway_bin), "check", str(src)], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode != 0
    assert "model_list[0].litellm_params.api_base" in r.stderr, r.stderr
    assert "`YAML_OPENAI_BASE` is not set" in r.stderr, r.stderr
