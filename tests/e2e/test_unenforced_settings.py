"""Unsafe settings are refused, not ignored (issue 15, first part): a LiteLLM config with a
guardrail this gateway does not enforce, or a spend setting it does not apply, makes the plugin
refuse to start in real Envoy, naming the key; with the operator's explicit override it starts,
logs loudly, and serves."""

from __future__ import annotations


import pytest
import yaml

from conftest import (WASM_PATH, gateway_bootstrap, mock_cluster_map, mock_deployment, user,
                      validate_envoy_config)

GUARDRAILS = [{"guardrail_name": "pii-mask",
               "litellm_params": {"guardrail": "bedrock", "mode": "pre_call", "default_on": True}}]


def plugin(mocks, **extra) -> dict:
    cfg = {"model_list": [mock_deployment(mocks, "gpt", "openai/gpt-4o-mini")],
           "gateway": {"clusters": mock_cluster_map(mocks)}}
    for k, v in extra.items():
        if k == "gateway":
            cfg["gateway"].update(v)
        else:
            cfg[k] = v
    return cfg


def validate(envoy_bin, tmp_path, mocks, cfg: dict):
    if not WASM_PATH.is_file():
        pytest.fail(f"the filter is not built: {WASM_PATH}; run `make build`", pytrace=False)
    boot = gateway_bootstrap(14100, 14101, str(WASM_PATH), cfg,
                             {"mock_anthropic": mocks.anthropic_port, "mock_openai": mocks.openai_port,
                              "mock_dead": 1}, env={"MOCK_OPENAI_KEY": "k", "MOCK_ANTHROPIC_KEY": "k"})
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(boot, sort_keys=False))
    return validate_envoy_config(envoy_bin, path)


@pytest.mark.parametrize("extra, field", [
    ({"guardrails": GUARDRAILS}, "guardrails[0]"),
    ({"litellm_settings": {"callbacks": ["presidio"]}}, "litellm_settings.callbacks[0]"),
    ({"litellm_settings": {"max_budget": 100}}, "litellm_settings.max_budget"),
    ({"general_settings": {"enforce_user_param": True}}, "general_settings.enforce_user_param"),
])
def test_envoy_refuses_a_config_with_an_unenforced_setting(envoy_bin, tmp_path, mocks, extra, field):
    res = validate(envoy_bin, tmp_path, mocks, plugin(mocks, **extra))
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-2000:]
    assert f"invalid configuration at `{field}`" in out, out[-2000:]
    assert "refusing to start" in out


def test_the_same_config_validates_without_the_setting(envoy_bin, tmp_path, mocks):
    """Guards the test above: the refusal is the setting's, not the bootstrap's."""
    res = validate(envoy_bin, tmp_path, mocks, plugin(mocks))
    assert res.returncode == 0, (res.stdout + res.stderr)[-2000:]


def test_with_the_override_it_starts_warns_loudly_and_serves(start_gateway, mocks):
    cfg = plugin(mocks, guardrails=GUARDRAILS, litellm_settings={"max_budget": 100},
                 gateway={"allow_unenforced_guardrails": True,
                          "allow_unenforced_settings": ["litellm_settings.max_budget"]})
    with start_gateway(cfg, env={"MOCK_OPENAI_KEY": "sk-oai-test", "MOCK_ANTHROPIC_KEY": "k"},
                       wasm_log_level="info", name="unenforced") as gw:
        gw.reset()
        r = gw.chat({"model": "gpt", "messages": [user("hello")]})
        assert r.status == 200, r.text
        assert r.json()["object"] == "chat.completion"
        sent = gw.only_request("openai")
        assert sent["body"]["messages"][0]["content"] == "hello"
        log = gw.log_path.read_text(errors="replace")
        assert "guardrails[0]: guardrail `pii-mask` (type `bedrock`) is NOT enforced" in log, log[-3000:]
        assert "litellm_settings.max_budget is NOT enforced" in log, log[-3000:]
