"""Issue 6, operations: metrics in /stats/prometheus, the JSON access log, live reconfiguration.

Everything here runs on the *rendered* bootstrap: a LiteLLM-style config.yaml whose deployments
point at the mock providers goes through `llm-gateway render CONFIG --listen --admin-port --wasm
--access-log` and the result is what Envoy runs (clusters `llm_127_0_0_1_<port>` derived by render
from the api_base authorities, stats_tags, the access log, the counter service).

  smart   anthropic/claude-ops        (Anthropic mock, weight 1e6: the first choice)   $3 / $15 per Mtok
  smart   openai/gpt-ops-backup       (OpenAI mock, weight 1: where a failed attempt retries) $2 / $8
  fast    openai/gpt-ops              (OpenAI mock)                                     $0.50 / $1.50
  embed   ollama/all-minilm           (Ollama mock: the OpenAI mock has no /v1/embeddings) $0.10 / 0

Keys: `ops-team` (budget $50) sends the workload; `broke` (budget 1 micro-USD) is refused for
budget at admission.

Metrics module: one scripted mixed workload, then one test per facet (requests by labels, tokens,
cost, per-deployment counters, histograms, per-key / per-model counters, label hygiene, access log
lines), so a defect in one facet fails only its test.

Live reconfiguration module part: the rendered listener moved into a file-based LDS resource
(`dynamic_resources.lds_config.path_config_source` with a `watched_directory`; updates are written
next to it and renamed over it), then a new alias, then an invalid plugin config.

Environment: LLM_GATEWAY_BIN (default target/release/llm-gateway, built by `cargo build --release
--bin llm-gateway` when the variable is not set), LLM_GATEWAY_WASM (conftest).
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from conftest import (ROOT, WASM_PATH, Response, StreamResult, _tail, free_port, launch_envoy, parse_stats,
                      settled_stats, stop_envoy, user)
from keys_helpers import (Price, _stream_raw, auth_headers, cost_micro, key_hash, key_info, send, settled, usd,
                          vkey, wait_info)
from ollama_mock import OllamaMock

OPS_KEY = "sk-ops-team-4b1d9e"
BROKE_KEY = "sk-ops-broke-77aa01"
LATE_KEY = "sk-ops-late-5c3f20"  # only in the reloaded config
MASTER = "sk-ops-master-0c1e"
ENV = {"OPS_ANTHROPIC_KEY": "sk-ant-ops", "OPS_OPENAI_KEY": "sk-oai-ops", "OPS_MASTER_KEY": MASTER}

CLAUDE_MODEL, BACKUP_MODEL, FAST_MODEL, EMBED_MODEL, FRESH_MODEL = (
    "claude-ops", "gpt-ops-backup", "gpt-ops", "all-minilm", "gpt-ops-fresh")
PRICES = {
    CLAUDE_MODEL: Price(3_000_000, 15_000_000),
    BACKUP_MODEL: Price(2_000_000, 8_000_000),
    FAST_MODEL: Price(500_000, 1_500_000),
    EMBED_MODEL: Price(100_000, 0),
    FRESH_MODEL: Price(1_000_000, 2_000_000),
}
# provider model -> (alias, deployment id = `<alias>#<index in model_list>`, provider family)
DEPLOYMENTS = {
    CLAUDE_MODEL: ("smart", "smart#0", "anthropic"),
    BACKUP_MODEL: ("smart", "smart#1", "openai"),
    FAST_MODEL: ("fast", "fast#2", "openai"),
    EMBED_MODEL: ("embed", "embed#3", "ollama"),
    FRESH_MODEL: ("fresh", "fresh#4", "openai"),
}
UNKNOWN_MODEL = "zebra-secret-model 42"  # free text a client may send: never a label
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
FLUSH = ["--file-flush-interval-msec", "50"]


def sid(deployment: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", deployment)


# ---------------------------------------------------------------- render


def render(gateway_bin: Path, cfg: dict, workdir: Path, name: str, port: int, admin_port: int,
           access_log: Path) -> dict:
    """`llm-gateway render` of this config (written as YAML): the bootstrap Envoy will run."""
    if not WASM_PATH.is_file():
        pytest.fail(f"the filter is not built: {WASM_PATH} does not exist. Run `make build` first.",
                    pytrace=False)
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / f"{name}.config.yaml"
    src.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [str(gateway_bin), "render", str(src), "--listen", f"127.0.0.1:{port}", "--admin-port",
           str(admin_port), "--wasm", str(WASM_PATH), "--access-log", str(access_log)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"render failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}"
    out = yaml.safe_load(r.stdout)
    assert isinstance(out, dict) and "static_resources" in out, r.stdout[:500]
    return out


def model(alias: str, litellm_model: str, api_base: str, api_key: str | None, **params: Any) -> dict:
    p: dict[str, Any] = {"model": litellm_model, "api_base": api_base, **params}
    if api_key:
        p["api_key"] = api_key
    price = PRICES[litellm_model.split("/", 1)[1]]
    p.update(price.params())
    return {"model_name": alias, "litellm_params": p}


def ops_config(mocks, ollama_port: int, fresh: bool = False) -> dict:
    anthropic = f"http://127.0.0.1:{mocks.anthropic_port}"
    openai = f"http://127.0.0.1:{mocks.openai_port}/v1"
    models = [
        model("smart", f"anthropic/{CLAUDE_MODEL}", anthropic, "os.environ/OPS_ANTHROPIC_KEY", weight=1_000_000),
        model("smart", f"openai/{BACKUP_MODEL}", openai, "os.environ/OPS_OPENAI_KEY", weight=1),
        model("fast", f"openai/{FAST_MODEL}", openai, "os.environ/OPS_OPENAI_KEY"),
        model("embed", f"ollama/{EMBED_MODEL}", f"http://127.0.0.1:{ollama_port}", None),
    ]
    keys = [vkey(OPS_KEY, "ops-team", max_budget=50.0), vkey(BROKE_KEY, "broke", max_budget=0.000001)]
    if fresh:  # appended, so every existing deployment keeps its id
        models.append(model("fresh", f"openai/{FRESH_MODEL}", openai, "os.environ/OPS_OPENAI_KEY"))
        keys.append(vkey(LATE_KEY, "late-key", max_budget=5.0))
    return {
        "model_list": models,
        "router_settings": {"num_retries": 2, "disable_cooldowns": True},
        "general_settings": {"master_key": "os.environ/OPS_MASTER_KEY"},
        "virtual_keys": keys,
    }


# ---------------------------------------------------------------- a rendered gateway


class Ops:
    """A running Envoy on a rendered bootstrap, with the three mocks."""

    def __init__(self, port: int, admin_port: int, mocks, ollama: OllamaMock, log_path: Path,
                 access_log: Path, proc: subprocess.Popen):
        self.host, self.port, self.admin_port = "127.0.0.1", port, admin_port
        self.mocks, self.ollama = mocks, ollama
        self.log_path, self.access_log, self.proc = log_path, access_log, proc

    def mock_port(self, provider: str) -> int:
        return {"anthropic": self.mocks.anthropic_port, "openai": self.mocks.openai_port,
                "ollama": self.ollama.port}[provider]

    def _control(self, provider: str, method: str, path: str, body: Any = None) -> Any:
        c = http.client.HTTPConnection("127.0.0.1", self.mock_port(provider), timeout=10)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            assert r.status == 200, (method, path, r.status, data)
            return json.loads(data)
        finally:
            c.close()

    def records(self, provider: str) -> list[dict]:
        return self._control(provider, "GET", "/__mock/requests")

    def script(self, provider: str, *behaviours: dict) -> None:
        self._control(provider, "POST", "/__mock/script", list(behaviours))

    def reset_mocks(self) -> None:
        for p in ("anthropic", "openai", "ollama"):
            self._control(p, "POST", "/__mock/reset")

    def admin(self, path: str) -> Response:
        return _admin(self, path)

    def prometheus(self) -> str:
        r = self.admin("/stats/prometheus")
        assert r.status == 200, r.body[:300]
        return r.text

    def stats(self, filt: str) -> dict[str, int]:
        r = self.admin(f"/stats?filter={filt}")
        assert r.status == 200, r.body[:300]
        return parse_stats(r.text)


def _admin(g: Ops, path: str) -> Response:
    if path.startswith("/stats"):
        return settled_stats(lambda: _admin_once(g, path))
    return _admin_once(g, path)


def _admin_once(g: Ops, path: str) -> Response:
    c = http.client.HTTPConnection("127.0.0.1", g.admin_port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        c.close()


@pytest.fixture(scope="module")
def ollama_mock():
    m = OllamaMock().start()
    yield m
    m.stop()


# ---------------------------------------------------------------- Prometheus text


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[Sample]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, f"unparsable Prometheus line: {line!r}"
        labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
        out.append(Sample(m.group(1), labels, float(m.group(3))))
    return out


def prom(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of the sample with exactly this name and label set (None if absent)."""
    want = tuple(sorted(labels.items()))
    found = [s.value for s in samples if s.name == name and s.labels == want]
    assert len(found) <= 1, f"{name}{labels} appears {len(found)} times"
    return found[0] if found else None


def prom_family(samples: list[Sample], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {s.labels: s.value for s in samples if s.name == name}


def labels_of(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def eventually(get: Callable[[], Any], want: Any, timeout: float = 10.0, what: str = "") -> Any:
    """Poll `get()` until it equals `want` (at most `timeout` s); returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        got = get()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


# ---------------------------------------------------------------- access log


def read_access_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def wait_log_lines(path: Path, rids: list[str], timeout: float = 10.0) -> dict[str, list[dict]]:
    deadline = time.monotonic() + timeout
    while True:
        by_rid: dict[str, list[dict]] = collections.defaultdict(list)
        for entry in read_access_log(path):
            by_rid[entry.get("request_id")].append(entry)
        if all(r in by_rid for r in rids) or time.monotonic() > deadline:
            return by_rid
        time.sleep(0.1)


# ---------------------------------------------------------------- the workload


@dataclass
class Sent:
    """One client request and what it should have produced."""
    rid: str
    label: str  # what it is, for messages
    status: int
    alias: str  # expected `alias` label ("unknown" when none)
    deployment: str | None  # deployment id that served it (None: refused before any attempt)
    provider: str | None
    attempts: int
    key_alias: str | None
    prompt: int = 0
    completion: int = 0
    cost: int = 0  # micro-USD
    usage_known: bool = False
    response: Any = None
    records: dict[str, list[dict]] = field(default_factory=dict)


def usage_of(provider: str, rec: dict) -> tuple[int, int]:
    u = rec["response"]["usage"]
    if provider == "anthropic":
        return (u["input_tokens"] + u.get("cache_read_input_tokens", 0)
                + u.get("cache_creation_input_tokens", 0), u["output_tokens"])
    if provider == "ollama":
        return u["prompt_eval_count"], u.get("eval_count", 0)
    return u["prompt_tokens"], u["completion_tokens"]


class Workload:
    def __init__(self, g: Ops):
        self.g = g
        self.sent: list[Sent] = []
        self.seq = 0

    def _snapshot(self) -> dict[str, int]:
        return {p: len(self.g.records(p)) for p in ("anthropic", "openai", "ollama")}

    def run(self, label: str, call: Callable[[dict[str, str]], Any], *, alias: str,
            key_alias: str | None) -> Sent:
        self.seq += 1
        rid = f"ops-{self.seq:03d}-{os.getpid()}"
        before = self._snapshot()
        resp = call({"x-request-id": rid})
        records = {p: self.g.records(p)[n:] for p, n in before.items()}
        status = resp.status
        served = [(p, r) for p, rs in records.items() for r in rs]
        ok = [(p, r) for p, r in served if r["response"]["status"] == 200]
        assert len(ok) <= 1, f"{label}: several answered provider requests: {served}"
        s = Sent(rid, label, status, alias, None, None, len(served), key_alias, response=resp, records=records)
        if served:
            p, last = served[-1]
            model_name = (last.get("body") or {}).get("model")
            s.alias, s.deployment, s.provider = DEPLOYMENTS[model_name]
            assert s.provider == p
        if ok:
            p, r = ok[0]
            s.prompt, s.completion = usage_of(p, r)
            s.cost = cost_micro(PRICES[r["body"]["model"]], s.prompt, s.completion)
            s.usage_known = True
        self.sent.append(s)
        return s

    def chat(self, label: str, key: str | None, body: dict, alias: str, key_alias: str | None) -> Sent:
        return self.run(label, lambda h: send(self.g, "POST", "/v1/chat/completions", body, key, headers=h),
                        alias=alias, key_alias=key_alias)

    def stream(self, label: str, key: str, body: dict, alias: str, key_alias: str) -> Sent:
        return self.run(label, lambda h: _stream_raw(self.g, {**body, "stream": True}, {**auth_headers(key), **h},
                                                     10.0), alias=alias, key_alias=key_alias)

    def embed(self, label: str, key: str, body: dict, alias: str, key_alias: str) -> Sent:
        return self.run(label, lambda h: send(self.g, "POST", "/v1/embeddings", body, key, headers=h),
                        alias=alias, key_alias=key_alias)


def body(alias: str, i: int, **extra: Any) -> dict:
    return {"model": alias, "messages": [user(f"request {i}: " + "word " * i)], "max_tokens": 200, **extra}


@pytest.fixture(scope="module")
def ops(gateway_bin, mocks, ollama_mock, e2e_dir, envoy_bin):
    workdir = e2e_dir / "ops-metrics"
    port, admin_port = free_port(), free_port()
    access_log = workdir / "access.log"
    boot = render(gateway_bin, ops_config(mocks, ollama_mock.port), workdir, "ops", port, admin_port, access_log)
    proc, log_path, _ = launch_envoy(boot, workdir, "ops", envoy_bin, FLUSH, env=ENV)
    g = Ops(port, admin_port, mocks, ollama_mock, log_path, access_log, proc)
    g.bootstrap = boot  # type: ignore[attr-defined]
    try:
        yield g
    finally:
        stop_envoy(proc)


@pytest.fixture(scope="module")
def workload(ops) -> Workload:
    """The scripted mixed workload, once; every request checked as the client saw it."""
    g = ops
    g.reset_mocks()
    w = Workload(g)
    for i in range(3):
        s = w.chat(f"smart #{i}", OPS_KEY, body("smart", i + 1), "smart", "ops-team")
        assert s.status == 200 and s.deployment == "smart#0", (s.label, s.status, s.response.body[:300])
    for i in range(2):
        s = w.chat(f"fast #{i}", OPS_KEY, body("fast", i + 4), "fast", "ops-team")
        assert s.status == 200 and s.deployment == "fast#2", (s.label, s.status, s.response.body[:300])
    s = w.stream("smart stream", OPS_KEY, body("smart", 6), "smart", "ops-team")
    assert s.status == 200 and s.response.error is None and s.response.ends_with_done(), s.response.raw[-300:]
    assert s.deployment == "smart#0"
    s = w.stream("fast stream", OPS_KEY, body("fast", 7), "fast", "ops-team")
    assert s.status == 200 and s.response.error is None and s.response.ends_with_done(), s.response.raw[-300:]
    assert s.deployment == "fast#2"
    # the gateway asked the OpenAI mock for stream usage, so it can count the tokens
    assert s.records["openai"][0]["body"].get("stream_options") == {"include_usage": True}
    # a provider 500 on the first choice, retried on the other smart deployment
    g.script("anthropic", {"status": 500, "match_model": CLAUDE_MODEL})
    s = w.chat("smart retried", OPS_KEY, body("smart", 8), "smart", "ops-team")
    assert s.status == 200, s.response.body[:300]
    assert s.deployment == "smart#1" and s.attempts == 2, (s.deployment, s.records)
    assert s.response.headers.get("x-llm-gateway-attempts") == "2"
    assert s.response.headers.get("x-llm-gateway-deployment") == "smart#1"
    s = w.embed("embeddings", OPS_KEY, {"model": "embed", "input": ["why is the sky blue?", "ops"]},
                "embed", "ops-team")
    assert s.status == 200 and s.deployment == "embed#3", (s.status, s.response.body[:300])
    assert s.response.json()["usage"]["prompt_tokens"] == s.prompt
    # refusals: an unknown model, a wrong key, a provider 400 passed on (a key over budget: below)
    s = w.chat("unknown model", OPS_KEY, body(UNKNOWN_MODEL, 9), "unknown", "ops-team")
    assert 400 <= s.status < 500 and s.attempts == 0, (s.status, s.response.body[:300])
    s = w.chat("wrong key", "sk-not-a-key-zebra", body("smart", 10), "unknown", None)
    assert s.status == 401 and s.attempts == 0, (s.status, s.response.body[:300])
    g.script("openai", {"status": 400, "match_model": FAST_MODEL})
    s = w.chat("provider 400", OPS_KEY, body("fast", 11), "fast", "ops-team")
    assert s.status == 400 and s.deployment == "fast#2" and s.attempts == 1, (s.status, s.response.body[:300])
    for s in w.sent:
        if s.status == 200:
            assert s.usage_known, s.label
    return w


def refused(s: Sent) -> bool:
    return s.deployment is None


def expected_requests(w: Workload) -> dict[tuple, int]:
    out: dict[tuple, int] = collections.Counter()
    for s in w.sent:
        out[labels_of(alias=s.alias, provider=s.provider or "none", deployment=sid(s.deployment or "none"),
                      status_class=f"{s.status // 100}xx")] += 1
    return dict(out)


def scrape_until(g: Ops, get: Callable[[list[Sample]], Any], want: Any, timeout: float = 10.0) -> Any:
    return eventually(lambda: get(parse_prometheus(g.prometheus())), want, timeout)


# ---------------------------------------------------------------- 1. Prometheus


def test_requests_by_alias_provider_deployment_status_class(ops, workload):
    want = expected_requests(workload)
    got = scrape_until(ops, lambda s: prom_family(s, "llm_gateway_requests"), want)
    assert got == want, ("llm_gateway_requests differs from the workload:\n"
                         + "\n".join(f"{dict(k)}: got {got.get(k)} want {want.get(k)}"
                                     for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)))


def test_tokens_by_type(ops, workload):
    want: dict[tuple, int] = collections.Counter()
    for s in workload.sent:
        if s.usage_known:
            want[labels_of(alias=s.alias, token_type="input")] += s.prompt
            want[labels_of(alias=s.alias, token_type="output")] += s.completion
    want = dict(want)
    assert all(v > 0 for k, v in want.items() if dict(k)["token_type"] == "input"), want
    got = scrape_until(ops, lambda s: prom_family(s, "llm_gateway_tokens"), want)
    assert got == want


def test_cost_micro_usd_by_alias(ops, workload):
    want: dict[tuple, int] = collections.Counter()
    for s in workload.sent:
        if not refused(s):
            want[labels_of(alias=s.alias)] += s.cost
    want = dict(want)
    assert want[labels_of(alias="smart")] > 0 and want[labels_of(alias="fast")] > 0
    got = scrape_until(ops, lambda s: prom_family(s, "llm_gateway_cost_micro_usd"), want)
    assert got == want


def test_attempts_failures_retries_per_deployment(ops, workload):
    attempts: dict[str, int] = collections.Counter()
    for s in workload.sent:
        for p, recs in s.records.items():
            for r in recs:
                attempts[sid(DEPLOYMENTS[r["body"]["model"]][1])] += 1
    assert attempts == {"smart_0": 5, "smart_1": 1, "fast_2": 4, "embed_3": 1}, attempts
    want = {
        "llm_gateway_attempts": {labels_of(deployment=d): n for d, n in attempts.items()},
        "llm_gateway_failures": {labels_of(deployment="smart_0"): 1},
        "llm_gateway_failures_by_kind": {labels_of(kind="http_500", deployment="smart_0"): 1},
        "llm_gateway_retries": {labels_of(deployment="smart_1"): 1},
        "llm_gateway_fallbacks": {},
        "llm_gateway_cooldowns": {},
    }
    got = scrape_until(ops, lambda s: {n: {k: v for k, v in prom_family(s, n).items() if v}
                                       for n in want}, want)
    assert got == want


def test_latency_histograms_count_successful_attempts(ops, workload):
    ok: dict[tuple, int] = collections.Counter()
    for s in workload.sent:
        if s.status == 200:
            ok[labels_of(deployment=sid(s.deployment))] += 1
    ok = dict(ok)
    assert ok == {labels_of(deployment="smart_0"): 4, labels_of(deployment="smart_1"): 1,
                  labels_of(deployment="fast_2"): 3, labels_of(deployment="embed_3"): 1}, ok
    want = {"llm_gateway_upstream_latency_ms_count": ok, "llm_gateway_time_to_first_token_ms_count": ok}
    # histograms reach /stats/prometheus at Envoy's stats flush (every 5 s)
    got = scrape_until(ops, lambda s: {n: prom_family(s, n) for n in want}, want, timeout=15)
    assert got == want
    samples = parse_prometheus(ops.prometheus())
    for n in ("llm_gateway_upstream_latency_ms", "llm_gateway_time_to_first_token_ms"):
        buckets = [s for s in samples if s.name == f"{n}_bucket"]
        assert buckets and all(set(s.label_dict) == {"deployment", "le"} for s in buckets), buckets[:3]
        inf = {s.label_dict["deployment"]: s.value for s in buckets if s.label_dict["le"] == "+Inf"}
        assert inf == {dict(k)["deployment"]: v for k, v in ok.items()}


def test_per_key_and_per_model_counters(ops, workload):
    admitted = [s for s in workload.sent if s.key_alias and not refused(s)]
    key_req: dict[tuple, int] = collections.Counter()
    key_tok: dict[tuple, int] = collections.Counter()
    key_cost: dict[tuple, int] = collections.Counter()
    model_req: dict[tuple, int] = collections.Counter()
    for s in admitted:
        k = labels_of(key_alias=sid(s.key_alias))
        key_req[k] += 1
        key_tok[k] += s.prompt + s.completion
        key_cost[k] += s.cost
        model_req[labels_of(alias=s.alias)] += 1
    want = {
        "llm_gateway_key_requests": dict(key_req),
        "llm_gateway_key_tokens": dict(key_tok),
        "llm_gateway_key_cost_micro_usd": dict(key_cost),
        "llm_gateway_model_requests": dict(model_req),
    }
    got = scrape_until(ops, lambda s: {n: prom_family(s, n) for n in want}, want)
    assert got == want


def test_labels_are_bounded(ops, workload):
    text = ops.prometheus()
    samples = [s for s in parse_prometheus(text) if s.name.startswith("llm_gateway_")]
    assert samples, "no llm_gateway_ metric in /stats/prometheus"
    allowed = {
        "alias": {"smart", "fast", "embed", "unknown"},
        "provider": {"anthropic", "openai", "ollama", "none"},
        "deployment": {"smart_0", "smart_1", "fast_2", "embed_3", "none"},
        "status_class": {"2xx", "4xx", "5xx"},
        "token_type": {"input", "output"},
        "key_alias": {"ops_team", "broke"},
        "kind": {"http_500", "http_502", "http_503", "http_429", "connect", "timeout", "reset", "unreadable"},
    }
    for s in samples:
        for k, v in s.labels:
            if k == "le":
                assert v == "+Inf" or re.fullmatch(r"\d+(\.\d+)?(e[+-]?\d+)?", v), s
                continue
            assert k in allowed and v in allowed[k], f"unexpected label {k}={v!r} on {s.name}"
        # the labels were all taken out of the name: nothing configuration-specific is left in it
        assert not re.search(r"smart|fast|embed|ops_team|broke|anthropic|ollama", s.name), s.name
    # no key, no client free text, anywhere in the exposition or the admin stats
    everything = text + _admin(ops, "/stats").text
    for secret in (OPS_KEY, BROKE_KEY, MASTER, "sk-not-a-key", key_hash(OPS_KEY)[7:19], "zebra",
                   ENV["OPS_OPENAI_KEY"], ENV["OPS_ANTHROPIC_KEY"]):
        assert secret not in everything, f"{secret!r} appears in the stats"


# ---------------------------------------------------------------- 2. access log


def test_access_log_one_json_line_per_request(ops, workload):
    rids = [s.rid for s in workload.sent]
    by_rid = wait_log_lines(ops.access_log, rids)
    missing = [r for r in rids if r not in by_rid]
    assert not missing, f"no access-log line for {missing}; file has {len(read_access_log(ops.access_log))} lines"
    problems = []
    for s in workload.sent:
        lines = by_rid[s.rid]
        if len(lines) != 1:
            problems.append(f"{s.label}: {len(lines)} lines")
            continue
        e = lines[0]
        want: dict[str, Any] = {"status": s.status, "method": "POST"}
        if refused(s):
            want.update(model_alias=None, deployment=None, provider=None, attempts=None)
        else:
            want.update(model_alias=s.alias, provider=s.provider, deployment=s.deployment,
                        attempts=str(s.attempts), cost_usd=usd(s.cost), key_alias=s.key_alias)
            if s.usage_known:
                want.update(prompt_tokens=str(s.prompt), completion_tokens=str(s.completion))
        got = {k: e.get(k) for k in want}
        if got != want:
            problems.append(f"{s.label}: " + ", ".join(f"{k}={got[k]!r} (want {v!r})"
                                                         for k, v in want.items() if got[k] != v))
        # what the client saw agrees with the log
        if not refused(s) and hasattr(s.response, "headers") and not isinstance(s.response, StreamResult):
            h = s.response.headers
            if s.status == 200:
                client = {"deployment": h.get("x-llm-gateway-deployment"),
                          "attempts": h.get("x-llm-gateway-attempts"),
                          "cost_usd": h.get("x-llm-gateway-response-cost")}
                logged = {k: e.get(k) for k in client}
                if client != logged:
                    problems.append(f"{s.label}: client headers {client} != log {logged}")
            if s.status == 200 and s.label.startswith(("smart", "fast")):
                u = s.response.json()["usage"]
                if (u["prompt_tokens"], u["completion_tokens"]) != (s.prompt, s.completion):
                    problems.append(f"{s.label}: client usage {u} != mock usage {(s.prompt, s.completion)}")
    assert not problems, "access log:\n" + "\n".join(problems)


def test_access_log_retried_request(ops, workload):
    s = next(x for x in workload.sent if x.label == "smart retried")
    e = wait_log_lines(ops.access_log, [s.rid])[s.rid]
    assert len(e) == 1, e
    e = e[0]
    assert (e["model_alias"], e["provider"], e["deployment"], e["attempts"]) == ("smart", "openai", "smart#1", "2"), e
    assert (e["prompt_tokens"], e["completion_tokens"]) == (str(s.prompt), str(s.completion)), e
    assert e["cost_usd"] == usd(cost_micro(PRICES[BACKUP_MODEL], s.prompt, s.completion)), e
    assert e["key_alias"] == "ops-team" and e["status"] == 200, e


def test_access_log_path_is_the_client_path(ops, workload):
    rids = [s.rid for s in workload.sent]
    by_rid = wait_log_lines(ops.access_log, rids)
    got = {s.label: [e.get("path") for e in by_rid.get(s.rid, [])] for s in workload.sent}
    want = {s.label: ["/v1/embeddings" if s.label == "embeddings" else "/v1/chat/completions"]
            for s in workload.sent}
    assert got == want


# ---------------------------------------------------------------- a refusal for a known alias
# (after the exact-count tests above, which scrape whole metric families)


@pytest.fixture(scope="module")
def over_budget(ops, workload):
    """The key `broke` (budget 1 micro-USD) asks for `fast`: refused at admission. Returns the
    request and the metrics before it."""
    before = parse_prometheus(ops.prometheus())
    s = workload.chat("over budget", BROKE_KEY, body("fast", 12), "fast", "broke")
    assert s.status == 429 and s.attempts == 0, (s.status, s.response.body[:300])
    assert s.response.json()["error"]["code"] == "insufficient_quota"
    return s, before


def delta(before: list[Sample], after: list[Sample], name: str) -> dict[tuple, float]:
    b, a = prom_family(before, name), prom_family(after, name)
    return {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b) if a.get(k, 0) != b.get(k, 0)}


def test_budget_refusal_counters(ops, over_budget):
    s, before = over_budget
    want = {
        "llm_gateway_key_rejected_budget": {labels_of(key_alias="broke"): 1},
        "llm_gateway_model_rejected_budget": {labels_of(alias="fast"): 1},
        "llm_gateway_attempts": {}, "llm_gateway_cost_micro_usd": {}, "llm_gateway_tokens": {},
        "llm_gateway_key_requests": {},
    }
    got = scrape_until(ops, lambda after: {n: delta(before, after, n) for n in want}, want)
    assert got == want
    # one more refused request, with no deployment, whatever its alias label
    reqs = scrape_until(ops, lambda after: delta(before, after, "llm_gateway_requests"), None, timeout=0)
    assert sum(reqs.values()) == 1 and all(dict(k)["deployment"] == "none" and dict(k)["provider"] == "none"
                                           and dict(k)["status_class"] == "4xx" for k in reqs), reqs
    line = wait_log_lines(ops.access_log, [s.rid]).get(s.rid)
    assert line and len(line) == 1 and line[0]["status"] == 429 and line[0]["attempts"] is None, line


def test_refusal_for_a_known_alias_keeps_its_alias_label(ops, over_budget):
    """A request for a configured alias refused before any attempt (here: the key's budget) is
    counted under that alias with `provider="none", deployment="none"` (src/filter/http.rs
    observe_end: only an alias that is not configured is `unknown`)."""
    s, before = over_budget
    got = scrape_until(ops, lambda after: delta(before, after, "llm_gateway_requests"),
                       {labels_of(alias="fast", provider="none", deployment="none", status_class="4xx"): 1})
    assert got == {labels_of(alias="fast", provider="none", deployment="none", status_class="4xx"): 1}, (
        f"the budget refusal of alias `fast` (status {s.status}) was counted as {got}")


# ---------------------------------------------------------------- 3. live reconfiguration (file-based LDS)


@dataclass
class LdsGateway:
    g: Ops
    lds_path: Path
    workdir: Path
    listener_v1: dict
    listener_v2: dict
    version: int = 0
    current: dict | None = None

    def write(self, listener: dict) -> None:
        """A new LDS resource file, renamed over the watched one (an atomic move in the directory)."""
        self.version += 1
        self.current = listener
        tmp = self.workdir / f"lds-{self.version}.json"
        tmp.write_text(json.dumps({"version_info": str(self.version),
                                   "resources": [{"@type": LISTENER_TYPE, **listener}]}))
        os.replace(tmp, self.lds_path)

    def lds(self) -> dict[str, int]:
        st = self.g.stats("listener_manager.lds")
        return {k.rsplit(".", 1)[1]: v for k, v in st.items()}


def plugin_of(listener: dict) -> dict:
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    wasm = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm")
    return wasm["typed_config"]["config"]


@pytest.fixture(scope="module")
def lds_gw(gateway_bin, mocks, ollama_mock, e2e_dir, envoy_bin):
    workdir = e2e_dir / "ops-lds"
    port, admin_port = free_port(), free_port()
    access_log = workdir / "access.log"
    v1 = render(gateway_bin, ops_config(mocks, ollama_mock.port), workdir, "v1", port, admin_port, access_log)
    v2 = render(gateway_bin, ops_config(mocks, ollama_mock.port, fresh=True), workdir, "v2", port, admin_port,
                access_log)
    # the new alias needs no new cluster (same mock authority), and the VM is the same one
    assert v2["static_resources"]["clusters"] == v1["static_resources"]["clusters"]
    assert plugin_of(v2["static_resources"]["listeners"][0])["vm_config"] == \
        plugin_of(v1["static_resources"]["listeners"][0])["vm_config"]
    lds_dir = workdir / "lds"
    lds_dir.mkdir(parents=True, exist_ok=True)
    lds_path = lds_dir / "listeners.json"
    boot = json.loads(json.dumps(v1))
    listener = boot["static_resources"].pop("listeners")[0]
    boot["node"] = {"id": "llm-gateway-ops", "cluster": "llm-gateway"}  # required with xDS
    boot["dynamic_resources"] = {"lds_config": {"resource_api_version": "V3", "path_config_source": {
        "path": str(lds_path), "watched_directory": {"path": str(lds_dir)}}}}
    lg = LdsGateway(None, lds_path, workdir, listener, v2["static_resources"]["listeners"][0])  # type: ignore[arg-type]
    lg.write(listener)
    # --drain-time-s 1: the replaced listener (and its plugin) is gone soon after a reload
    proc, log_path, _ = launch_envoy(boot, workdir, "lds", envoy_bin, [*FLUSH, "--drain-time-s", "1"], env=ENV)
    lg.g = Ops(port, admin_port, mocks, ollama_mock, log_path, access_log, proc)
    try:
        yield lg
    finally:
        stop_envoy(proc)


def ops_chat(g: Ops, alias: str, i: int, key: str = OPS_KEY) -> Response:
    return send(g, "POST", "/v1/chat/completions", body(alias, i), key)


def test_lds_reload_adds_alias_keeps_counters_and_spend(lds_gw, request):
    lg, g = lds_gw, lds_gw.g
    request.node._envoy_log = g.log_path
    request.node._envoy_log_offset = g.log_path.stat().st_size if g.log_path.exists() else 0
    g.reset_mocks()
    pid = g.proc.pid
    start = lg.lds()
    assert start.get("update_success") == 1, start  # the initial load from the file
    # (a) the listener from LDS serves
    for i in range(2):
        r = ops_chat(g, "smart", i + 1)
        assert r.status == 200 and r.headers["x-llm-gateway-deployment"] == "smart#0", (r.status, r.body[:300])
    r = ops_chat(g, "fresh", 3)
    assert 400 <= r.status < 500, ("`fresh` served before the reload", r.status, r.body[:300])
    spend = sum(cost_micro(PRICES[CLAUDE_MODEL], *usage_of("anthropic", rec))
                for rec in g.records("anthropic") if rec["response"]["status"] == 200)
    assert spend > 0
    wait_info(g, OPS_KEY, settled(spend))
    smart_ok = labels_of(alias="smart", provider="anthropic", deployment="smart_0", status_class="2xx")
    key_req = labels_of(key_alias="ops_team")

    def counters() -> tuple:
        s = parse_prometheus(g.prometheus())
        return (prom_family(s, "llm_gateway_requests").get(smart_ok),
                prom_family(s, "llm_gateway_key_requests").get(key_req))

    assert eventually(counters, (2, 2)) == (2, 2)

    # (b) a listener whose plugin config adds the alias `fresh` and the key `late-key`
    lg.write(lg.listener_v2)
    done = eventually(lambda: lg.lds().get("update_success"), start["update_success"] + 1)
    assert done == start["update_success"] + 1, lg.lds()
    assert lg.lds().get("update_rejected", 0) == 0, lg.lds()
    # the replaced listener drains away (--drain-time-s 1) with its plugin root context
    drained = eventually(lambda: g.stats("listener_manager.total_listeners_draining")
                         .get("listener_manager.total_listeners_draining"), 0, timeout=15)
    assert drained == 0, "the old listener never finished draining"
    # counters and spend, before any request on the new config
    assert counters() == (2, 2), "filter counters were reset by the reload"
    assert key_info(g, OPS_KEY)["info"]["spend_micro"] == spend, "the key's spend was lost in the reload"
    deadline = time.monotonic() + 10
    while True:
        r = ops_chat(g, "fresh", 4)
        if r.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status == 200, ("the new alias never worked after the reload", r.status, r.body[:300])
    assert r.headers["x-llm-gateway-deployment"] == "fresh#4"
    fresh_rec = [x for x in g.records("openai") if (x.get("body") or {}).get("model") == FRESH_MODEL]
    assert len(fresh_rec) == 1 and fresh_rec[0]["response"]["status"] == 200, fresh_rec
    fresh_cost = cost_micro(PRICES[FRESH_MODEL], *usage_of("openai", fresh_rec[0]))
    assert g.proc.poll() is None and g.proc.pid == pid, "Envoy restarted"
    r = ops_chat(g, "smart", 5)
    assert r.status == 200, r.body[:300]
    smart_cost = cost_micro(PRICES[CLAUDE_MODEL], *usage_of("anthropic", g.records("anthropic")[-1]))
    assert eventually(counters, (3, 4)) == (3, 4), "counters did not continue from their values before the reload"
    s = parse_prometheus(g.prometheus())
    assert prom_family(s, "llm_gateway_requests").get(
        labels_of(alias="fresh", provider="openai", deployment="fresh_4", status_class="2xx")) == 1
    wait_info(g, OPS_KEY, settled(spend + fresh_cost + smart_cost))
    # a key that only the new config has: admitted and charged
    r = ops_chat(g, "fresh", 6, key=LATE_KEY)
    assert r.status == 200, r.body[:300]
    late = [x for x in g.records("openai") if (x.get("body") or {}).get("model") == FRESH_MODEL][-1]
    wait_info(g, LATE_KEY, settled(cost_micro(PRICES[FRESH_MODEL], *usage_of("openai", late))))


def test_lds_invalid_plugin_config_is_rejected_and_old_config_serves(lds_gw, request):
    lg, g = lds_gw, lds_gw.g
    request.node._envoy_log = g.log_path
    offset = g.log_path.stat().st_size if g.log_path.exists() else 0
    request.node._envoy_log_offset = offset
    g.reset_mocks()
    pid = g.proc.pid
    serving = lg.current
    assert serving is not None
    bad = json.loads(json.dumps(serving))
    plugin = plugin_of(bad)
    cfg = json.loads(plugin["configuration"]["value"])
    assert cfg["model_list"][2]["model_name"] == "fast"
    cfg["model_list"][2]["litellm_params"]["model"] = "nosuchprovider/gpt-ops"
    plugin["configuration"]["value"] = json.dumps(cfg)
    before = lg.lds()
    s0 = parse_prometheus(g.prometheus())
    fast_ok = labels_of(alias="fast", provider="openai", deployment="fast_2", status_class="2xx")
    fast_before = prom_family(s0, "llm_gateway_requests").get(fast_ok, 0)

    lg.write(bad)
    want = before.get("update_rejected", 0) + 1
    got = eventually(lambda: lg.lds().get("update_rejected", 0), want)
    after = lg.lds()
    assert got == want, f"the invalid listener was not rejected: {after}"
    assert after.get("update_success") == before.get("update_success"), after
    # the reason is logged with the field
    field_name = "model_list[2].litellm_params.model"
    deadline = time.monotonic() + 10
    while True:
        log = _tail(g.log_path, 400, offset)
        if (field_name in log and "nosuchprovider" in log) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert field_name in log and "nosuchprovider" in log, f"the log does not name the field:\n{log[-3000:]}"
    # the old configuration keeps serving, with its counters
    assert g.proc.poll() is None and g.proc.pid == pid
    r = ops_chat(g, "fast", 7)
    assert r.status == 200 and r.headers["x-llm-gateway-deployment"] == "fast#2", (r.status, r.body[:300])
    assert [x["body"]["model"] for x in g.records("openai")] == [FAST_MODEL]
    r = ops_chat(g, "smart", 8)
    assert r.status == 200, r.body[:300]
    got = eventually(lambda: prom_family(parse_prometheus(g.prometheus()), "llm_gateway_requests").get(fast_ok),
                     fast_before + 1)
    assert got == fast_before + 1


# ---------------------------------------------------------------- secrets (issue 17)


def test_a_key_in_the_query_never_reaches_the_access_log(ops):
    rid = f"ops-secret-query-{os.getpid()}"
    r = send(ops, "GET", f"/key/info?key={OPS_KEY}", key=MASTER, headers={"x-request-id": rid})
    assert r.status == 200, r.body
    (line,) = wait_log_lines(ops.access_log, [rid])[rid]
    assert line["path"] == "/key/info?key=REDACTED", line
    assert OPS_KEY not in ops.access_log.read_text()


def test_provider_error_quoting_its_key_and_client_cookies(ops):
    ops.reset_mocks()
    quoted = {"error": {"message": f"Incorrect API key provided: Bearer {ENV['OPS_OPENAI_KEY']}.",
                        "type": "invalid_request_error", "code": "invalid_api_key"}}
    ops.script("openai", {"status": 401, "body": quoted})
    r = send(ops, "POST", "/v1/chat/completions", body("fast", 1), key=OPS_KEY, headers={"cookie": "session=s3cr3t",
                                                      "proxy-authorization": "Basic dXNlcjpwYXNz"})
    assert r.status == 401, r.body
    assert ENV["OPS_OPENAI_KEY"] not in r.body.decode(), r.body
    assert "[REDACTED]" in r.body.decode()
    (got,) = ops.records("openai")
    assert "cookie" not in got["headers"] and "proxy-authorization" not in got["headers"], got["headers"]
