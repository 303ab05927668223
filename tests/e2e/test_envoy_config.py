"""The Envoy bootstrap the suite uses (the contract with the filter) is valid for this Envoy."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from conftest import WASM_PATH, envoy_bootstrap, validate_envoy_config


def test_envoy_version(envoy_bin):
    out = subprocess.run([envoy_bin, "--version"], capture_output=True, text=True, timeout=60)
    assert "/1.40.0/" in out.stdout, out.stdout


def test_bootstrap_validates(envoy_bin, tmp_path):
    """Validate mode loads the wasm module and configures the plugin, so it needs the real filter."""
    if not WASM_PATH.is_file():
        pytest.fail(f"the filter is not built: {WASM_PATH} missing; run `make build`", pytrace=False)
    cfg = tmp_path / "envoy.yaml"
    cfg.write_text(yaml.safe_dump(envoy_bootstrap(14000, 14001, str(WASM_PATH), 14002, 14003), sort_keys=False))
    res = validate_envoy_config(envoy_bin, cfg)
    assert res.returncode == 0, res.stdout + res.stderr


def test_bootstrap_with_a_typo_is_rejected(envoy_bin, tmp_path):
    """Guards the check above: validation really inspects the wasm filter's fields."""
    text = yaml.safe_dump(envoy_bootstrap(14000, 14001, "/nonexistent.wasm", 14002, 14003), sort_keys=False)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text.replace("allow_on_headers_stop_iteration", "allow_on_header_stop_iteration"))
    res = validate_envoy_config(envoy_bin, cfg)
    assert res.returncode != 0
    assert "allow_on_header_stop_iteration" in res.stdout + res.stderr
