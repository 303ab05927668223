"""Virtual keys bound to workload identities (issue 6): a key listing an mTLS peer principal
(`virtual_keys[].principals`, Envoy's `source.principal`) is used when a request carries no key.

The test makes its own CA, a server certificate for the Envoy listener and two client
certificates whose URI SANs are SPIFFE ids, starts Envoy with a TLS listener that requires
client certificates, and checks who the gateway thinks is calling.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
import subprocess
from pathlib import Path

import pytest

from conftest import (WASM_PATH, Gateway, dead_port, free_port, gateway_bootstrap, launch_envoy,
                      stop_envoy, user)

INDEXER = "spiffe://cluster.local/ns/search/sa/indexer"
STRANGER = "spiffe://cluster.local/ns/other/sa/stranger"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> None:
    """CA; server cert for 127.0.0.1; client certs with SPIFFE URI SANs."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=test-ca", cwd=d)
    for name, san in [("server", "IP:127.0.0.1"), ("indexer", f"URI:{INDEXER}"),
                      ("stranger", f"URI:{STRANGER}")]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def mtls_gateway(mocks, e2e_dir, envoy_bin):
    if not WASM_PATH.is_file():
        pytest.fail(f"the filter is not built: {WASM_PATH}", pytrace=False)
    d = e2e_dir / "mtls-pki"
    d.mkdir(parents=True, exist_ok=True)
    make_pki(d)
    plugin = {
        "model_list": [{"model_name": "gpt", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{mocks.openai_port}/v1",
            "api_key": "sk-oai-test"}}],
        "virtual_keys": [
            {"key_hash": "sha256:" + hashlib.sha256(b"sk-plain-key").hexdigest(), "key_alias": "plain"},
            {"key_hash": "sha256:" + hashlib.sha256(b"sk-indexer-unused").hexdigest(),
             "key_alias": "indexer", "principals": [INDEXER], "max_budget": 5.0},
        ],
        "gateway": {"clusters": {f"127.0.0.1:{mocks.openai_port}": "mock_openai"}},
    }
    port, admin_port = free_port(), free_port()
    cfg = gateway_bootstrap(port, admin_port, str(WASM_PATH), plugin,
                            {"mock_openai": mocks.openai_port, "mock_dead": dead_port()})
    listener = cfg["static_resources"]["listeners"][0]
    listener["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": str(d / "server.crt")},
                                      "private_key": {"filename": str(d / "server.key")}}],
                "validation_context": {"trusted_ca": {"filename": str(d / "ca.crt")}},
            },
        },
    }
    proc, log_path, _ = launch_envoy(cfg, e2e_dir / "mtls", "mtls", envoy_bin)
    ctl = Gateway(port, admin_port, mocks, log_path)  # for the mocks' control API
    try:
        yield port, d, ctl
    finally:
        stop_envoy(proc)


def call(port: int, pki: Path, cert: str, method: str, path: str, body: dict | None = None,
         headers: dict | None = None) -> tuple[int, dict, dict]:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        hdrs = {"content-type": "application/json", **(headers or {})}
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdrs)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read() or b"null")
    finally:
        conn.close()


def test_principal_acts_as_its_key_without_a_bearer_secret(mtls_gateway):
    port, pki, ctl = mtls_gateway
    ctl.reset()
    status, headers, body = call(port, pki, "indexer", "POST", "/v1/chat/completions",
                                 {"model": "gpt", "messages": [user("Hi there")]})
    assert status == 200, body
    assert "mock OpenAI provider" in body["choices"][0]["message"]["content"]
    # charged to the bound key: its budget header is there
    assert "x-llm-gateway-remaining-budget" in headers, headers
    [req] = [r for r in ctl.requests("openai") if r["path"].endswith("/chat/completions")]
    assert req["headers"]["authorization"] == "Bearer sk-oai-test"
    status, _, info = call(port, pki, "indexer", "GET", "/key/info")
    assert status == 200, info
    assert info["info"]["key_alias"] == "indexer"


def test_unknown_principal_without_key_is_refused(mtls_gateway):
    port, pki, ctl = mtls_gateway
    ctl.reset()
    status, _, body = call(port, pki, "stranger", "POST", "/v1/chat/completions",
                           {"model": "gpt", "messages": [user("Hi")]})
    assert status == 401, body
    assert body["error"]["code"] == "missing_api_key"
    assert ctl.requests("openai") == []


def test_an_explicit_key_wins_over_the_principal(mtls_gateway):
    port, pki, _ = mtls_gateway
    status, _, info = call(port, pki, "indexer", "GET", "/key/info",
                           headers={"authorization": "Bearer sk-plain-key"})
    assert status == 200, info
    assert info["info"]["key_alias"] == "plain"
