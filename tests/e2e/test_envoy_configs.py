"""Deployment artefacts load in real Envoy, and `make oci` writes a valid image layout.

- Every Envoy bootstrap in `envoy/` and the one in the Kubernetes gateway's
  ConfigMap (with the health listener the Deployment merges in with
  `--config-yaml`) pass `envoy --mode validate`. Validate mode loads the Wasm
  module and configures the plugin, so the module path is pointed at the built
  `.wasm` (LLM_GATEWAY_WASM) and the VM's variables get dummy values.
- The Wasm filter config each Istio EnvoyFilter adds (`allow_on_headers_stop_
  iteration`, `failure_policy`, VM settings, the plugin config) is valid for
  this Envoy and accepted by the module: it is validated inside a minimal
  bootstrap, with the remote code swapped for the local module (the
  istio-agent makes the same substitution).
- `tools/oci.py`: index.json -> manifest -> config and layer descriptors match
  the blobs (digest and size), the layer holds exactly the module, and two runs
  give the same bytes.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, WASM_PATH

TOOLS = ROOT / "tools"
WASM_FILTER = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def require_wasm() -> Path:
    if not WASM_PATH.is_file():
        pytest.fail(f"the filter is not built: {WASM_PATH} missing; run `make build`", pytrace=False)
    return WASM_PATH


def walk(node, fn) -> None:
    if isinstance(node, dict):
        fn(node)
        for v in node.values():
            walk(v, fn)
    elif isinstance(node, list):
        for v in node:
            walk(v, fn)


def localize(bootstrap: dict, wasm: Path) -> tuple[dict, dict[str, str]]:
    """Point every Wasm VM at `wasm`; dummy values for the variables VMs read."""
    env: dict[str, str] = {}

    def fix(node: dict) -> None:
        vm = node.get("vm_config")
        if isinstance(vm, dict) and "code" in vm:
            vm["code"] = {"local": {"filename": str(wasm)}}
            for name in vm.get("environment_variables", {}).get("host_env_keys", []):
                env[name] = f"dummy-{name.lower()}"

    out = copy.deepcopy(bootstrap)
    walk(out, fix)
    return out, env


def validate(envoy: str, config: dict, tmp_path: Path, env: dict[str, str], extra: list[str] | None = None,
             name: str = "envoy.yaml") -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run([envoy, "--mode", "validate", "-c", str(path), "-l", "warning", *(extra or [])],
                          capture_output=True, text=True, timeout=180, env={**os.environ, **env})


def bootstraps_in_envoy_dir() -> list[Path]:
    out = []
    for p in sorted((ROOT / "envoy").glob("*.yaml")):
        doc = yaml.safe_load(p.read_text())
        if isinstance(doc, dict) and "static_resources" in doc:
            out.append(p)
    return out


def k8s_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def wasm_vm_count(config: dict) -> int:
    n = 0

    def count(node: dict) -> None:
        nonlocal n
        n += isinstance(node.get("vm_config"), dict)

    walk(config, count)
    return n


# ------------------------------------------------------------------ envoy/ bootstraps


@pytest.mark.parametrize("path", bootstraps_in_envoy_dir(), ids=lambda p: p.name)
def test_envoy_dir_bootstrap_validates(envoy_bin, tmp_path, path):
    config, env = localize(yaml.safe_load(path.read_text()), require_wasm())
    assert wasm_vm_count(config) >= 1, f"{path.name}: no Wasm VM found"
    res = validate(envoy_bin, config, tmp_path, env)
    assert res.returncode == 0, f"{path.name}:\n{res.stdout}{res.stderr}"


def test_envoy_dir_has_bootstraps():
    names = {p.name for p in bootstraps_in_envoy_dir()}
    assert {"demo.yaml", "providers.yaml"} <= names, names


# ------------------------------------------------------------------ the Kubernetes gateway


def test_k8s_gateway_bootstrap_validates_as_deployed(envoy_bin, tmp_path):
    gw = ROOT / "k8s" / "gateway"
    (cm,) = [d for d in k8s_docs(gw / "configmap.yaml") if d["metadata"]["name"] == "llm-gateway-envoy"]
    (health,) = k8s_docs(gw / "health-configmap.yaml")
    (deployment,) = k8s_docs(gw / "deployment.yaml")
    bootstrap = yaml.safe_load(cm["data"]["envoy.yaml"])
    config, env = localize(bootstrap, require_wasm())
    assert wasm_vm_count(config) == 2, "the filter and the counter service"
    assert set(env) == {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GATEWAY_MASTER_KEY"}, env

    # Run it the way the container does: same flags, health listener merged in.
    (envoy_container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = " ".join(envoy_container["args"])
    assert '--config-yaml "$(cat /etc/envoy-health/health.yaml)"' in args, args
    assert "-c /etc/envoy/envoy.yaml" in args, args
    res = validate(envoy_bin, config, tmp_path, env, ["--config-yaml", health["data"]["health.yaml"]])
    assert res.returncode == 0, res.stdout + res.stderr

    # The probes reach /ready through the health listener, never the admin port.
    spec = envoy_container
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    health_cfg = yaml.safe_load(health["data"]["health.yaml"])
    listener = health_cfg["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == ports["health"]
    assert spec["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "health"}
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    listener_port = bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert (listener_port["address"], listener_port["port_value"]) == ("0.0.0.0", ports["http"])


def test_k8s_gateway_bootstrap_with_an_unset_key_is_rejected(envoy_bin, tmp_path):
    """Guards the check above: validation really configures the plugin."""
    gw = ROOT / "k8s" / "gateway"
    (cm,) = [d for d in k8s_docs(gw / "configmap.yaml") if d["metadata"]["name"] == "llm-gateway-envoy"]
    config, env = localize(yaml.safe_load(cm["data"]["envoy.yaml"]), require_wasm())
    env.pop("OPENAI_API_KEY")
    clean = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    res = subprocess.run([envoy_bin, "--mode", "validate", "-c", str(path), "-l", "warning"],
                         capture_output=True, text=True, timeout=180, env={**clean, **env})
    assert res.returncode != 0
    assert "OPENAI_API_KEY" in res.stdout + res.stderr


# ------------------------------------------------------------------ Istio EnvoyFilters


def envoyfilter_wasm_configs() -> list[tuple[str, dict]]:
    out = []
    for path in sorted((ROOT / "k8s").rglob("*.yaml")):
        for doc in k8s_docs(path):
            if doc.get("kind") != "EnvoyFilter":
                continue
            for patch in doc["spec"]["configPatches"]:
                value = patch["patch"]["value"]
                if patch["applyTo"] == "EXTENSION_CONFIG" and value["typed_config"]["@type"] == WASM_FILTER:
                    out.append((f"{path.relative_to(ROOT)}:{value['name']}", value["typed_config"]))
    return out


@pytest.mark.parametrize("name,typed_config", envoyfilter_wasm_configs(), ids=lambda x: x if isinstance(x, str) else "")
def test_envoyfilter_wasm_config_loads_in_envoy(envoy_bin, tmp_path, name, typed_config):
    remote = typed_config["config"]["vm_config"]["code"]["remote"]
    assert remote["http_uri"]["uri"].startswith(("oci://", "https://")), name
    bootstrap = {
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 4000}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "gateway",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "route": {"cluster_header": "x-llm-gateway-cluster"}}]}]},
                        "http_filters": [
                            {"name": "llm-gateway", "typed_config": typed_config},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                        ],
                    },
                }]}],
            }],
        },
    }
    config, env = localize(bootstrap, require_wasm())
    assert env, f"{name}: the VM reads no provider keys?"
    res = validate(envoy_bin, config, tmp_path, env)
    assert res.returncode == 0, f"{name}:\n{res.stdout}{res.stderr}"


def test_k8s_has_envoyfilters():
    assert len(envoyfilter_wasm_configs()) >= 2


# ------------------------------------------------------------------ OCI layout


def run_oci(out: Path, *args: str) -> str:
    res = subprocess.run([sys.executable, str(TOOLS / "oci.py"), "--wasm", str(require_wasm()), "--out", str(out),
                          *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def blob(layout: Path, digest: str) -> bytes:
    algo, hexd = digest.split(":", 1)
    assert algo == "sha256"
    data = (layout / "blobs" / "sha256" / hexd).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hexd, f"blob {digest} does not hash to its name"
    return data


def check_descriptor(layout: Path, desc: dict) -> bytes:
    data = blob(layout, desc["digest"])
    assert desc["size"] == len(data), desc
    return data


def read_layout(layout: Path, printed: str) -> tuple[dict, dict, bytes]:
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    (entry,) = index["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["digest"] == printed, "the printed digest is the manifest's"
    manifest = json.loads(check_descriptor(layout, entry))
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == entry["mediaType"]
    config = check_descriptor(layout, manifest["config"])
    # No stray blobs: everything in the layout is referenced.
    referenced = {entry["digest"], manifest["config"]["digest"], *(d["digest"] for d in manifest["layers"])}
    present = {"sha256:" + p.name for p in (layout / "blobs" / "sha256").iterdir()}
    assert present == referenced
    return entry, manifest, config


def test_oci_compat_layout(tmp_path):
    wasm = require_wasm().read_bytes()
    layout = tmp_path / "compat"
    digest = run_oci(layout, "--tag", "0.1.0")
    entry, manifest, config = read_layout(layout, digest)
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "0.1.0"}
    assert manifest["annotations"] == {"module.wasm.image/variant": "compat"}
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    (layer_desc,) = manifest["layers"]
    assert layer_desc["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    layer = check_descriptor(layout, layer_desc)
    tar_bytes = gzip.decompress(layer)
    assert json.loads(config)["rootfs"] == {"type": "layers",
                                            "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"plugin.wasm", "runtime-config.json"}
        assert tar.extractfile(members["plugin.wasm"]).read() == wasm
        assert all(m.mtime == 0 and m.uid == 0 and m.isreg() for m in members.values())
    # Deterministic: a second run gives the same layout, byte for byte.
    again = tmp_path / "again"
    assert run_oci(again, "--tag", "0.1.0") == digest
    for p in layout.rglob("*"):
        if p.is_file():
            assert (again / p.relative_to(layout)).read_bytes() == p.read_bytes(), p


def test_oci_artifact_variant_layout(tmp_path):
    """The `oci` variant as Istio reads it: two layers, one the raw module."""
    wasm = require_wasm().read_bytes()
    layout = tmp_path / "oci"
    digest = run_oci(layout, "--variant", "oci")
    _, manifest, config = read_layout(layout, digest)
    assert manifest["config"]["mediaType"] == "application/vnd.module.wasm.config.v1+json"
    assert json.loads(config)["type"] == "envoy_proxy"
    layers = {d["mediaType"]: check_descriptor(layout, d) for d in manifest["layers"]}
    assert len(manifest["layers"]) == 2
    assert layers["application/vnd.module.wasm.content.layer.v1+wasm"] == wasm


def test_oci_refuses_a_non_wasm_file(tmp_path):
    bogus = tmp_path / "x.wasm"
    bogus.write_bytes(b"not wasm")
    res = subprocess.run([sys.executable, str(TOOLS / "oci.py"), "--wasm", str(bogus), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "not a WebAssembly module" in res.stderr
