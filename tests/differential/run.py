#!/usr/bin/env python3
"""Differential test: the gateway against LiteLLM (issue 16).

Every case of tests/differential/corpus/*.json is sent, for each provider it applies to, twice
to the same recording mock: once through `litellm.completion` (LiteLLM, pinned in
tests/differential/requirements.txt) and once through the gateway (real Envoy with the built
filter, config rendered by `llm-gateway render`), over raw HTTP as an OpenAI client sends it.
Then two things are compared semantically:

* what the provider mock received: number of requests, method, path, the provider's significant
  headers, and the native body (JSON-normalised; Gemini's proto field names camelCased as
  Google reads them; the per-provider ignore list in ignore.yaml removes volatile or
  meaningless fields);
* what the client got: per choice role, content (JSON compared parsed when both are JSON),
  reasoning_content, tool calls (name and parsed arguments; ids are volatile), finish_reason,
  and usage numbers; for errors the HTTP status class and the OpenAI error type.

Each difference is a field path (`request.body.generationConfig.maxOutputTokens`,
`answer.choices[0].finish_reason`, ...). A difference listed in departures.yaml (provider,
case, field glob, reason, README anchor) counts as a documented departure; any other is a
disagreement. The table shows agree / documented / disagree per provider; the exit code is 1 if
any undocumented disagreement remains, a departure points at a README anchor that does not
exist, the corpus is empty or a provider ran no case.

Run it with the scratch venv's python (`make test-litellm` makes it):

    target/differential/venv/bin/python tests/differential/run.py \
        --wasm target/wasm32-wasip1/release/llm_gateway.wasm --bin target/release/llm-gateway \
        --envoy .venv/bin/envoy [--case NAME ...] [--provider NAME ...] [-v] [--markdown]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "mocks"))

import yaml  # noqa: E402  (PyYAML: a LiteLLM dependency, pinned in requirements.txt)

from azure_mock import AzureMock  # noqa: E402
from bedrock_mock import BedrockMock  # noqa: E402
from cohere_mock import CohereMock  # noqa: E402
import mock_gemini  # noqa: E402
from mistral_mock import MistralMock  # noqa: E402
from mock_providers import MockProviders  # noqa: E402
from ollama_mock import OllamaMock  # noqa: E402

ABSENT = "<absent>"
TIMEOUT = 30.0

# ---------------------------------------------------------------- Gemini proto-JSON field names
#
# Google's JSON parser takes a proto field under its lowerCamelCase JSON name or its original
# lower_snake name (`max_output_tokens` == `maxOutputTokens`); LiteLLM 1.110.2 sends several
# snake_case names. The Gemini mock knows only the camelCase ones, so the differential run
# camelCases proto field names in front of it (for both sides: it is idempotent) and compares
# the camelCased bodies. Free-form values (schemas, function arguments and responses, labels)
# are kept as written.

OPAQUE_KEYS = {"args", "response", "parameters", "parametersJsonSchema", "responseSchema",
               "responseJsonSchema", "labels"}


def _camel(k: str) -> str:
    head, *rest = k.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest) if rest else k


def camelize_proto(v: Any, opaque: bool = False) -> Any:
    if opaque:
        return v
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            ck = _camel(k) if isinstance(k, str) else k
            out[ck] = camelize_proto(x, ck in OPAQUE_KEYS)
        return out
    if isinstance(v, list):
        return [camelize_proto(x) for x in v]
    return v


def install_gemini_shim() -> None:
    """Camelcase proto field names before the Gemini mock records and validates the body."""
    orig = mock_gemini.GeminiServer.provider_request
    if getattr(orig, "_differential", False):
        return

    def provider_request(self, h, path, bare, body):
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            body = json.dumps(camelize_proto(parsed)).encode()
        return orig(self, h, path, bare, body)

    provider_request._differential = True  # type: ignore[attr-defined]
    mock_gemini.GeminiServer.provider_request = provider_request


# ---------------------------------------------------------------- providers

VERTEX_TOKEN = "vtx-token-differential"
AWS_KEY, AWS_SECRET, AWS_REGION = "AKIDDIFFERENTIAL01", "diff/Secret+Key0123456789EXAMPLE", "us-east-1"


@dataclass
class Provider:
    name: str                     # LiteLLM prefix (the table's row)
    model: str                    # prefix/model, the same on both sides
    port: int                     # the mock's port (control API)
    litellm: dict                 # extra litellm.completion kwargs (api_base, keys, ...)
    gateway: dict                 # litellm_params for the gateway's model_list
    headers: list[str] = field(default_factory=list)  # request headers compared (lower-case)
    alias: str = ""


def start_mocks(stack: contextlib.ExitStack) -> dict[str, Provider]:
    install_gemini_shim()
    mp = MockProviders(chunk_delay_ms=0).start()
    stack.callback(mp.stop)
    gm = mock_gemini.MockGemini(chunk_delay_ms=0).start()
    stack.callback(gm.stop)
    co = CohereMock(chunk_delay_ms=0, require_key="co-key-diff").start()
    stack.callback(co.stop)
    br = BedrockMock({AWS_KEY: AWS_SECRET}, region=AWS_REGION, chunk_delay_ms=0).start()
    stack.callback(br.stop)
    ol = OllamaMock(chunk_delay_ms=0).start()
    stack.callback(ol.stop)
    az = AzureMock(chunk_delay_ms=0, key="az-key-diff", deployments={"gpt4o": "gpt-4o-2024-11-20"}).start()
    stack.callback(az.stop)
    mi = MistralMock(chunk_delay_ms=0).start()
    stack.callback(mi.stop)

    def base(port: int, path: str = "") -> str:
        return f"http://127.0.0.1:{port}{path}"

    def same(**kw: Any) -> tuple[dict, dict]:
        return dict(kw), dict(kw)

    provs: list[Provider] = []

    def add(name, model, port, params: dict, headers=(), litellm_only: dict | None = None,
            gateway_only: dict | None = None):
        provs.append(Provider(name, model, port, {**params, **(litellm_only or {})},
                              {"model": model, **params, **(gateway_only or {})}, list(headers)))

    add("openai", "openai/gpt-4o-mini", mp.openai_port,
        {"api_base": base(mp.openai_port, "/v1"), "api_key": "sk-oai-diff"}, ["authorization"])
    add("anthropic", "anthropic/claude-sonnet-4-5", mp.anthropic_port,
        {"api_base": base(mp.anthropic_port), "api_key": "sk-ant-diff"},
        ["x-api-key", "anthropic-version", "anthropic-beta"])
    add("gemini", "gemini/gemini-2.5-flash", gm.port,
        {"api_base": base(gm.port, "/v1beta"), "api_key": "gm-key-diff"}, ["x-goog-api-key"])
    # LiteLLM mints Vertex tokens with google-auth; the harness hands it the token instead
    # (see patch_vertex_auth), the gateway takes it as api_key.
    add("vertex_ai", "vertex_ai/gemini-2.5-pro", gm.port,
        {"api_base": base(gm.port), "vertex_project": "proj-diff", "vertex_location": "us-central1"},
        ["authorization"], gateway_only={"api_key": VERTEX_TOKEN})
    # LiteLLM's Cohere v2 api_base is the full chat URL; the gateway takes that form too.
    add("cohere", "cohere/command-r-plus", co.port,
        {"api_base": base(co.port, "/v2/chat"), "api_key": "co-key-diff"}, ["authorization"])
    add("bedrock", "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", br.port,
        {"api_base": base(br.port), "aws_access_key_id": AWS_KEY, "aws_secret_access_key": AWS_SECRET,
         "aws_region_name": AWS_REGION}, [])
    add("ollama_chat", "ollama_chat/llama3.2", ol.port, {"api_base": base(ol.port)}, [])
    add("azure", "azure/gpt4o", az.port,
        {"api_base": base(az.port), "api_key": "az-key-diff", "api_version": "2024-10-21"}, ["api-key"])
    add("mistral", "mistral/mistral-small-latest", mi.port,
        {"api_base": base(mi.port, "/v1"), "api_key": "mi-key-diff"}, ["authorization"])
    # Groq is OpenAI-shaped: the OpenAI mock serves it (llama-3.3 has no structured outputs there).
    add("groq", "groq/llama-3.3-70b-versatile", mp.openai_port,
        {"api_base": base(mp.openai_port, "/v1"), "api_key": "gq-key-diff"}, ["authorization"])
    out = {}
    for p in provs:
        p.alias = f"diff-{p.name}"
        out[p.name] = p
    return out


def patch_vertex_auth() -> None:
    """LiteLLM gets its Vertex bearer token from google-auth (service account, ADC); here it is
    handed the token the gateway is configured with, so both send the same Authorization."""
    from litellm.llms.vertex_ai.vertex_llm_base import VertexBase

    def ensure(self, credentials, project_id, custom_llm_provider):
        if custom_llm_provider == "gemini":
            return "", ""
        return VERTEX_TOKEN, project_id

    VertexBase._ensure_access_token = ensure


def mock_call(port: int, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


def mock_reset(p: Provider) -> None:
    mock_call(p.port, "POST", "/__mock/reset", {})


def mock_requests(p: Provider) -> list[dict]:
    return [r for r in mock_call(p.port, "GET", "/__mock/requests") if not r["path"].startswith("/__mock")]


# ---------------------------------------------------------------- the gateway

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, provs: dict[str, Provider], args, workdir: Path):
        self.provs, self.args, self.workdir = provs, args, workdir
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.admin = free_port()

    def start(self) -> "Gateway":
        cfg = {"model_list": [{"model_name": p.alias, "litellm_params": p.gateway} for p in self.provs.values()],
               # one attempt per request, as litellm.completion makes it
               "router_settings": {"disable_cooldowns": True, "num_retries": 0}}
        src = self.workdir / "config.yaml"
        src.write_text(yaml.safe_dump(cfg, sort_keys=False))
        wasm = self.workdir / "llm_gateway.wasm"  # a copy: a concurrent rebuild cannot change it mid-run
        shutil.copyfile(self.args.wasm, wasm)
        r = subprocess.run([self.args.bin, "render", str(src), "--listen", f"127.0.0.1:{self.port}",
                            "--admin-port", str(self.admin), "--wasm", str(wasm)],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise SystemExit(f"llm-gateway render failed: {r.stderr}")
        boot = self.workdir / "envoy.yaml"
        boot.write_text(r.stdout)
        self.log = self.workdir / "envoy.log"
        out = open(self.workdir / "envoy.stdout", "wb")
        self.proc = subprocess.Popen([self.args.envoy, "-c", str(boot), "--concurrency", "1",
                                      "--disable-hot-restart", "-l", "warning", "--log-path", str(self.log)],
                                     stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        raise SystemExit(f"Envoy did not become ready; log tail:\n{tail}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def chat(self, body: dict) -> dict:
        """POST /v1/chat/completions; returns {"status", "json"} or, for a stream, {"status", "chunks"}."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            conn.request("POST", "/v1/chat/completions", json.dumps(body).encode(),
                         {"content-type": "application/json", "authorization": "Bearer client-key"})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        ctype = resp.getheader("content-type", "")
        if resp.status == 200 and "event-stream" in ctype:
            chunks = []
            for line in raw.decode().splitlines():
                if line.startswith("data:"):
                    data = line[5:].strip()
                    if data and data != "[DONE]":
                        chunks.append(json.loads(data))
            return {"status": 200, "chunks": chunks}
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {"raw": raw.decode(errors="replace")}
        return {"status": resp.status, "json": parsed}


# ---------------------------------------------------------------- the two sides

# LiteLLM's exception classes as the OpenAI error type a client would see.
OPENAI_TYPE = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "invalid_request_error", 408: "api_error", 413: "invalid_request_error",
               422: "invalid_request_error", 429: "rate_limit_error"}


def error_view(status: int, etype: str | None, detail: str) -> dict:
    return {"error": {"status_class": f"{status // 100}xx", "type": etype or OPENAI_TYPE.get(status, "api_error")},
            "_detail": {"status": status, "message": detail[:300]}}


def run_litellm(p: Provider, case: dict) -> dict:
    import litellm

    req = copy.deepcopy(case["request"])
    req.pop("model", None)
    kwargs = {**req, **copy.deepcopy(p.litellm), "model": p.model, "timeout": TIMEOUT, "num_retries": 0,
              "max_retries": 0}
    if case.get("drop_params"):
        kwargs["drop_params"] = True
    try:
        resp = litellm.completion(**kwargs)
        if req.get("stream"):
            return {"chunks": [c.model_dump() for c in resp]}
        return {"json": resp.model_dump()}
    except Exception as e:  # noqa: BLE001 - every failure is an answer to compare
        status = getattr(e, "status_code", None)
        if not isinstance(status, int):
            status = 500
        return {"error": error_view(status, None, f"{type(e).__name__}: {e}")}


def run_gateway(gw: Gateway, p: Provider, case: dict) -> dict:
    body = copy.deepcopy(case["request"])
    body["model"] = p.alias
    if case.get("drop_params"):
        body["drop_params"] = True
    r = gw.chat(body)
    if "chunks" in r:
        return {"chunks": r["chunks"]}
    if r["status"] != 200:
        err = r["json"].get("error") if isinstance(r["json"], dict) else None
        err = err if isinstance(err, dict) else {}
        return {"error": error_view(r["status"], err.get("type"), json.dumps(r["json"]))}
    return {"json": r["json"]}


# ---------------------------------------------------------------- normalising answers

def _json_or_text(s: Any) -> Any:
    if isinstance(s, str):
        try:
            v = json.loads(s)
            if isinstance(v, (dict, list)):
                return {"<json>": v}
        except ValueError:
            pass
    return s


def _args(s: Any) -> Any:
    if isinstance(s, str):
        try:
            return json.loads(s) if s.strip() else {}
        except ValueError:
            return {"<unparsable>": s}
    return s


def _usage(u: Any) -> Any:
    if not isinstance(u, dict):
        return ABSENT
    out = {k: u.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    rd = (u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    cd = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    out["reasoning_tokens"], out["cached_tokens"] = rd, cd
    return out


def _empty(v: Any) -> Any:
    return ABSENT if v in (None, "", []) else v


def answer_view(a: dict) -> dict:
    if "error" in a:
        return {"error": a["error"]["error"]}
    if "chunks" in a:
        return stream_view(a["chunks"])
    j = a["json"]
    choices = []
    for c in sorted(j.get("choices") or [], key=lambda c: c.get("index", 0)):
        m = c.get("message") or {}
        tcs = [{"type": t.get("type", "function"), "name": (t.get("function") or {}).get("name"),
                "arguments": _args((t.get("function") or {}).get("arguments"))}
               for t in (m.get("tool_calls") or [])]
        choices.append({"role": m.get("role"), "content": _empty(_json_or_text(m.get("content"))),
                        "reasoning_content": _empty(m.get("reasoning_content")),
                        "tool_calls": _empty(tcs), "finish_reason": c.get("finish_reason")})
    return {"choices": choices, "usage": _usage(j.get("usage"))}


def stream_view(chunks: list[dict]) -> dict:
    acc: dict[int, dict] = {}
    usage = None
    errors = []
    for ch in chunks:
        if "error" in ch and not ch.get("choices"):
            errors.append(ch["error"])
            continue
        if ch.get("usage"):
            usage = ch["usage"]
        for c in ch.get("choices") or []:
            s = acc.setdefault(c.get("index", 0), {"role": None, "content": "", "reasoning_content": "",
                                                   "tools": {}, "finish_reason": None})
            d = c.get("delta") or {}
            if d.get("role") and not s["role"]:
                s["role"] = d["role"]
            s["content"] += d.get("content") or ""
            s["reasoning_content"] += d.get("reasoning_content") or ""
            for t in d.get("tool_calls") or []:
                slot = s["tools"].setdefault(t.get("index", 0), {"name": "", "arguments": "", "type": None})
                f = t.get("function") or {}
                slot["name"] += f.get("name") or ""
                slot["arguments"] += f.get("arguments") or ""
                slot["type"] = slot["type"] or t.get("type")
            if c.get("finish_reason"):
                s["finish_reason"] = c["finish_reason"]
    choices = []
    for i in sorted(acc):
        s = acc[i]
        tcs = [{"type": t["type"] or "function", "name": t["name"], "arguments": _args(t["arguments"])}
               for _, t in sorted(s["tools"].items())]
        choices.append({"role": s["role"], "content": _empty(_json_or_text(s["content"])),
                        "reasoning_content": _empty(s["reasoning_content"]), "tool_calls": _empty(tcs),
                        "finish_reason": s["finish_reason"]})
    out = {"choices": choices, "usage": _usage(usage)}
    if errors:
        out["stream_errors"] = errors
    return out


# ---------------------------------------------------------------- normalising native requests

def load_ignores() -> dict[str, list[dict]]:
    data = yaml.safe_load((HERE / "ignore.yaml").read_text()) or {}
    for prov, rules in data.items():
        for r in rules:
            if not r.get("reason") or not (r.get("path") or r.get("request_path")):
                raise SystemExit(f"ignore.yaml: {prov}: every rule needs path and reason: {r}")
    return data


def _drop_path(v: Any, parts: list[str], mode: str, value: Any = None) -> Any:
    """Remove the member at a dotted path (`*` = every list item or object member)."""
    if not parts:
        return v
    head, rest = parts[0], parts[1:]
    if isinstance(v, list) and head == "*":
        return [_drop_path(x, rest, mode, value) for x in v]
    if isinstance(v, dict):
        keys = list(v) if head == "*" else [head]
        out = dict(v)
        for k in keys:
            if k not in out:
                continue
            if rest:
                out[k] = _drop_path(out[k], rest, mode, value)
            elif (mode == "always" or (mode == "if_empty" and out[k] in (None, "", [], {}))
                  or (mode == "if_null" and out[k] is None) or (mode == "if_value" and out[k] == value)):
                del out[k]
        return out
    return v


def request_view(p: Provider, reqs: list[dict], ignores: list[dict]) -> dict:
    skip = [r["request_path"] for r in ignores if r.get("request_path")]
    reqs = [r for r in reqs if not any(glob_match(g, r.get("path", "")) for g in skip)]
    out = {"count": len(reqs)}
    for i, r in enumerate(reqs):
        body = r.get("body")
        if body is None and r.get("raw_body") is not None:
            body = {"<raw>": r["raw_body"]}
        if p.name in ("gemini", "vertex_ai"):
            body = camelize_proto(body)
        for rule in ignores:
            if rule.get("path"):
                body = _drop_path(body, rule["path"].split("."), rule.get("mode", "always"), rule.get("value"))
        path = r.get("path", "")
        hdrs = {h: r.get("headers", {}).get(h, ABSENT) for h in p.headers}
        if "anthropic-beta" in hdrs and hdrs["anthropic-beta"] != ABSENT:
            hdrs["anthropic-beta"] = ",".join(sorted(x.strip() for x in hdrs["anthropic-beta"].split(",")))
        view = {"method": r.get("method"), "path": path, "headers": hdrs, "body": body}
        if p.name == "bedrock":
            view["signature_ok"] = (r.get("signature") or {}).get("ok")
        out[f"{i}"] = view
    return out


# ---------------------------------------------------------------- diffs

def diff(a: Any, b: Any, path: str, out: list[tuple[str, Any, Any]]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k == "_detail":
                continue
            diff(a.get(k, ABSENT), b.get(k, ABSENT), f"{path}.{k}" if path else str(k), out)
        return
    if isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            diff(a[i] if i < len(a) else ABSENT, b[i] if i < len(b) else ABSENT, f"{path}[{i}]", out)
        return
    if isinstance(a, bool) or isinstance(b, bool):
        same = type(a) is type(b) and a == b  # True is not 1
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        same = float(a) == float(b)  # JSON: 1 == 1.0
    else:
        same = a == b
    if not same:
        out.append((path, a, b))


def readme_anchors() -> set[str]:
    anchors = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"^#{1,6}\s+(.*)", line)
        if m:
            s = m.group(1).strip().lower()
            s = re.sub(r"[^\w\- ]", "", s).replace(" ", "-")
            anchors.add("#" + s)
    return anchors


def load_departures() -> list[dict]:
    deps = yaml.safe_load((HERE / "departures.yaml").read_text()) or []
    anchors = readme_anchors()
    bad = []
    for d in deps:
        for k in ("provider", "case", "field", "reason", "readme"):
            if not d.get(k):
                bad.append(f"departure without `{k}`: {d}")
        if d.get("readme") and d["readme"] not in anchors:
            bad.append(f"departure {d.get('provider')}/{d.get('case')}/{d.get('field')}: README anchor "
                       f"{d['readme']} does not exist")
        d["_used"] = 0
    if bad:
        raise SystemExit("departures.yaml:\n  " + "\n  ".join(bad))
    return deps


def glob_match(pattern: str | list, s: str) -> bool:
    """`*` matches any run of characters; nothing else is special (paths hold `[0]`)."""
    if isinstance(pattern, list):
        return any(glob_match(p, s) for p in pattern)
    return re.fullmatch(".*".join(re.escape(part) for part in str(pattern).split("*")), s) is not None


def departure_for(deps: list[dict], prov: str, case: str, path: str) -> dict | None:
    for d in deps:
        if glob_match(d["provider"], prov) and glob_match(d["case"], case) and glob_match(d["field"], path):
            return d
    return None


# ---------------------------------------------------------------- main

def load_corpus(names: list[str] | None) -> list[dict]:
    cases = []
    for f in sorted((HERE / "corpus").glob("*.json")):
        c = json.loads(f.read_text())
        if c.get("name") != f.stem:
            raise SystemExit(f"{f}: name must be the file name ({f.stem})")
        if not isinstance(c.get("request"), dict) or not c["request"].get("messages"):
            raise SystemExit(f"{f}: request.messages missing")
        if not names or c["name"] in names:
            cases.append(c)
    return cases


def short(v: Any, n: int = 160) -> str:
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)
    return s if len(s) <= n else s[: n - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wasm", default=str(ROOT / "target/wasm32-wasip1/release/llm_gateway.wasm"))
    ap.add_argument("--bin", default=str(ROOT / "target/release/llm-gateway"))
    ap.add_argument("--envoy", default=shutil.which("envoy") or str(ROOT / ".venv/bin/envoy"))
    ap.add_argument("--workdir", default=None, help="keep the bootstrap, Envoy log and report.json here")
    ap.add_argument("--case", action="append", help="only these cases (repeatable)")
    ap.add_argument("--provider", action="append", help="only these providers (repeatable)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown too")
    ap.add_argument("-v", "--verbose", action="store_true", help="print documented departures too")
    args = ap.parse_args(argv)

    import litellm

    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    import logging
    logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
    patch_vertex_auth()

    cases = load_corpus(args.case)
    if not cases:
        print("differential: the corpus is empty (tests/differential/corpus/*.json)", file=sys.stderr)
        return 1
    deps = load_departures()
    ignores = load_ignores()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="llm-gw-diff-"))
    workdir.mkdir(parents=True, exist_ok=True)

    results: list[dict] = []
    with contextlib.ExitStack() as stack:
        provs = start_mocks(stack)
        if args.provider:
            unknown = set(args.provider) - set(provs)
            if unknown:
                print(f"unknown providers: {sorted(unknown)}; known: {sorted(provs)}", file=sys.stderr)
                return 2
            provs = {k: v for k, v in provs.items() if k in args.provider}
        gw = Gateway(provs, args, workdir).start()
        stack.callback(gw.stop)
        for case in cases:
            for pname, p in provs.items():
                if case.get("providers") and pname not in case["providers"]:
                    continue
                results.append(run_case(gw, p, case, ignores.get(pname, []) + ignores.get("*", []), deps))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return report(results, provs, deps, args, workdir if args.workdir else None)


def run_case(gw: Gateway, p: Provider, case: dict, ignores: list[dict], deps: list[dict]) -> dict:
    sides = {}
    for side in ("litellm", "gateway"):
        mock_reset(p)
        script = case.get("mock_script")
        if isinstance(script, dict):  # per provider
            script = script.get(p.name)
        if script:
            mock_call(p.port, "POST", "/__mock/script", script)
        try:
            ans = run_litellm(p, case) if side == "litellm" else run_gateway(gw, p, case)
        except Exception as e:  # noqa: BLE001
            ans = {"error": error_view(599, "harness_error", traceback.format_exc())}
            print(f"harness error in {case['name']}/{p.name}/{side}: {e}", file=sys.stderr)
        reqs = mock_requests(p)
        sides[side] = {"answer": ans, "requests": reqs,
                       "view": {"request": request_view(p, reqs, ignores), "answer": answer_view(ans)}}
    diffs: list[tuple[str, Any, Any]] = []
    diff(sides["litellm"]["view"], sides["gateway"]["view"], "", diffs)
    items = []
    for path, a, b in diffs:
        d = departure_for(deps, p.name, case["name"], path)
        if d:
            d["_used"] += 1
        items.append({"field": path, "litellm": a, "gateway": b, "departure": d and d["reason"]})
    if not items:
        outcome = "agree"
    elif all(i["departure"] for i in items):
        outcome = "documented"
    else:
        outcome = "disagree"
    return {"case": case["name"], "provider": p.name, "outcome": outcome, "diffs": items,
            "litellm": sides["litellm"]["view"], "gateway": sides["gateway"]["view"],
            "detail": {s: sides[s]["answer"].get("error", {}).get("_detail") for s in sides}}


def report(results: list[dict], provs: dict[str, Provider], deps: list[dict], args, workdir: Path | None) -> int:
    rc = 0
    for r in results:
        if r["outcome"] == "agree" or (r["outcome"] == "documented" and not args.verbose):
            continue
        print(f"\n{r['outcome'].upper()}: {r['provider']} / {r['case']}")
        for i in r["diffs"]:
            if i["departure"] and not args.verbose:
                continue
            tag = "  documented" if i["departure"] else "  DIFF"
            print(f"{tag} {i['field']}\n      litellm: {short(i['litellm'])}\n      gateway: {short(i['gateway'])}")
        for side, d in r["detail"].items():
            if d:
                print(f"      ({side} error: {d['status']} {short(d['message'], 240)})")
    rows = []
    for pname in provs:
        rs = [r for r in results if r["provider"] == pname]
        n = len(rs)
        a = sum(r["outcome"] == "agree" for r in rs)
        d = sum(r["outcome"] == "documented" for r in rs)
        x = n - a - d
        rows.append((pname, n, a, d, x, 100.0 * (a + d) / n if n else 0.0))
        if n == 0:
            print(f"differential: provider {pname} ran no case", file=sys.stderr)
            rc = 1
        elif not any("error" not in r["litellm"]["answer"] and "error" not in r["gateway"]["answer"] for r in rs):
            # errors on both sides "agree" too: a mis-wired provider must not pass that way
            print(f"differential: provider {pname} was never answered on both sides", file=sys.stderr)
            rc = 1
        if x:
            rc = 1
    head = ("provider", "cases", "agree", "documented", "disagree", "agree+documented")
    print("\nLiteLLM 1.110.2 vs llm-gateway, per provider (a case agrees when every compared field does):\n")
    fmt = "{:<12} {:>5} {:>6} {:>10} {:>9} {:>17}"
    print(fmt.format(*head))
    for p, n, a, d, x, pct in rows:
        print(fmt.format(p, n, a, d, x, f"{pct:.1f}%"))
    tot = [sum(r[i] for r in rows) for i in range(1, 5)]
    print(fmt.format("total", *tot, f"{100.0 * (tot[1] + tot[2]) / tot[0]:.1f}%" if tot[0] else "-"))
    if args.markdown:
        print("\n| " + " | ".join(head) + " |\n|---|--:|--:|--:|--:|--:|")
        for p, n, a, d, x, pct in rows:
            print(f"| {p} | {n} | {a} | {d} | {x} | {pct:.1f}% |")
    unused = [d for d in deps if not d["_used"]]
    if unused and not args.case and not args.provider:
        print("\nwarning: departures that matched no difference (stale? remove them):", file=sys.stderr)
        for d in unused:
            print(f"  {d['provider']} / {d['case']} / {d['field']}", file=sys.stderr)
    if workdir:
        for r in results:
            for i in r["diffs"]:
                i["departure"] = i["departure"]
        (workdir / "report.json").write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str))
        print(f"\nreport: {workdir / 'report.json'}")
    if rc:
        print("\ndifferential: FAILED (undocumented disagreements, or a provider without cases)", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
