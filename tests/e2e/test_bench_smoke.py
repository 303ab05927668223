"""`make bench` harness, smoke-tested: `bench/run.py --quick` runs every case once against
plain Envoy and Envoy with the filter (nginx as the provider, wrk as the load generator).

Asserts that the harness works (every run valid, both Envoys measured, the tables printed) and
that the filter really translated: the answers are OpenAI-shaped where plain Envoy's are the
provider's own, the stream is OpenAI chunks, the budget refusal is a 429. Never on timing or
any other number. Skipped when nginx, wrk or taskset are missing (`make bench` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, WASM_PATH, envoy_binary

sys.path.insert(0, str(ROOT / "bench"))

import fixtures  # noqa: E402

TOOLS = {"nginx": ["/usr/sbin/nginx"], "wrk": [], "taskset": []}
MISSING = [t for t, extra in TOOLS.items() if not (shutil.which(t) or any(os.access(p, os.X_OK) for p in extra))]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"bench smoke test needs {', '.join(MISSING)} "
                                                      "(Debian packages nginx-light and wrk; `make bench` installs them)")

CASES = {"anthropic_1k", "anthropic_100k", "passthrough_1k", "stream_500", "refused", "unloaded_1k", "pii_1k", "cache_hit_1k"}


def _gateway_bin() -> Path:
    """LLM_GATEWAY_BIN, or the native `llm-gateway` built here (make e2e builds only the wasm)."""
    if os.environ.get("LLM_GATEWAY_BIN"):
        return Path(os.environ["LLM_GATEWAY_BIN"])
    r = subprocess.run(["cargo", "build", "--release", "--bin", "llm-gateway"], cwd=ROOT,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"cargo build --release --bin llm-gateway failed:\n{r.stderr[-3000:]}"
    return ROOT / "target" / "release" / "llm-gateway"


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, str]:
    if not WASM_PATH.is_file():
        pytest.fail(f"the filter is not built: {WASM_PATH} does not exist. Run `make build` first.",
                    pytrace=False)
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--no-write", "--json", str(out),
           "--envoy", envoy_binary(), "--wasm", str(WASM_PATH), "--bin", str(_gateway_bin())]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, f"bench/run.py --quick failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return json.loads(out.read_text()), r.stdout


def test_every_case_ran_on_both_envoys_and_is_valid(quick):
    results, _ = quick
    assert {c["name"] for c in results["cases"]} == CASES
    for c in results["cases"]:
        for target in ("plain", "filter"):
            runs = c[target]["runs"]
            assert runs and all(r["requests"] > 0 for r in runs), (c["name"], target, runs)
            assert c[target]["valid"], (c["name"], target, runs)
            assert all(not any(r["errors"].values()) for r in runs), (c["name"], target, runs)
    assert results["judged"]["invalid"] == []
    assert results["ttfb"]["plain"]["valid"] and results["ttfb"]["filter"]["valid"]
    assert results["log_trouble"] == [], results["log_trouble"]


def test_tables_printed_without_judging(quick):
    _, stdout = quick
    assert "| case | Envoy | req/s | p50 µs | p90 µs | p99 µs |" in stdout
    assert "1 KB chat -> Anthropic" in stdout and "`llm_gateway.wasm` size" in stdout
    assert "not judged (quick)" in stdout and "MISSED" not in stdout


def _json(sample: dict) -> dict:
    assert sample["content_type"].startswith("application/json"), sample
    return json.loads(sample["body"])


@pytest.mark.parametrize("case", ["anthropic_1k", "anthropic_100k", "unloaded_1k"])
def test_filter_translated_the_anthropic_answer(quick, case):
    samples = quick[0]["samples"][case]
    plain, filt = samples["plain"], samples["filter"]
    # Plain Envoy hands over the provider's own answer ...
    assert plain["status"] == 200 and _json(plain)["type"] == "message"
    # ... the filter the OpenAI chat.completion made from it.
    assert filt["status"] == 200
    body = _json(filt)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"] == fixtures.REPLY_TEXT
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 231 and body["usage"]["completion_tokens"] == 64


def test_passthrough_answer_is_the_upstream_one(quick):
    s = quick[0]["samples"]["passthrough_1k"]
    for target in ("plain", "filter"):
        body = _json(s[target])
        assert s[target]["status"] == 200 and body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == fixtures.REPLY_TEXT


def test_filter_translated_the_stream(quick):
    s = quick[0]["samples"]["stream_500"]
    assert s["plain"]["status"] == 200 and "event: message_start" in s["plain"]["body"]
    assert "chat.completion.chunk" not in s["plain"]["body"]
    f = s["filter"]
    assert f["status"] == 200 and f["content_type"].startswith("text/event-stream")
    events = []
    for ln in f["body"].split("\n"):   # the sample is the first 4,000 characters: skip a cut-off event
        if ln.startswith("data: {"):
            try:
                events.append(json.loads(ln[len("data: "):]))
            except ValueError:
                pass
    assert len(events) > 5 and all(e["object"] == "chat.completion.chunk" for e in events)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    expected = "".join(fixtures.stream_words())
    assert len(text) > 20 and expected.startswith(text), (text, expected[:200])


def test_budget_refusal_is_a_429_and_plain_envoy_proxied_the_same_request(quick):
    s = quick[0]["samples"]["refused"]
    assert s["plain"]["status"] == 200 and _json(s["plain"])["type"] == "message"
    assert s["filter"]["status"] == 429
    assert _json(s["filter"])["error"]["code"] == "insufficient_quota"


def test_memory_streams_went_through_the_filter(quick):
    mem = quick[0]["memory"]
    for target in ("plain", "filter"):
        m = mem[target]
        assert m["streams"] == quick[0]["settings"]["streams"] and m["growth_streams"] > 0
        assert m["idle"]["rss"] > 0 and m["open"]["rss"] > 0 and m["open"]["heap"] > 0
    # The wasm VM's linear memory is found in the filter Envoy's mappings, and only there.
    assert mem["filter"]["idle"]["wasm"] > 0 and mem["plain"]["open"]["wasm"] == 0
    assert "chat.completion.chunk" in mem["filter"]["sample"]
    assert "event: message_start" in mem["plain"]["sample"]
