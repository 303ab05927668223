"""OpenTelemetry traces in real Envoy (issue 19), LiteLLM's callback settings unchanged:
`callbacks: ["otel"]` exports one span per request over OTLP/HTTP to a receiver started here,
which decodes each export with the official `opentelemetry-proto` package; `success_callback:
["langfuse"]` sends to LANGFUSE_HOST's `/api/public/otel/v1/traces` with Basic auth; a dead
collector leaves requests untouched. The mocks record what the provider received (the
`traceparent` that makes the provider call a child of the gateway's span)."""

from __future__ import annotations

import base64
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from conftest import HTTP_TIMEOUT, dead_port, gateway_stats, mock_cluster_map, mock_deployment
from keys_helpers import vkey

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TEAM_KEY, ZERO_KEY = "sk-trace-team-key", "sk-trace-zero-key"


class OtlpReceiver:
    """An OTLP/HTTP traces endpoint: every POST decoded as ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.exports: list[tuple[str, dict[str, str], trace_service_pb2.ExportTraceServiceRequest]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                req = trace_service_pb2.ExportTraceServiceRequest()
                req.ParseFromString(body)
                with receiver.lock:
                    receiver.exports.append((self.path, {k.lower(): v for k, v in self.headers.items()}, req))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list:
        with self.lock:
            return [s for _, _, r in self.exports for rs in r.resource_spans
                    for ss in rs.scope_spans for s in ss.spans]

    def wait_span(self, pred, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [s for s in self.spans() if pred(attrs(s))]
            if found:
                return found[-1]
            time.sleep(0.1)
        raise AssertionError(f"no matching span among {[attrs(s) for s in self.spans()]}")

    def close(self) -> None:
        self.server.shutdown()


def attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = ([x.string_value for x in v.array_value.values] if kind == "array_value"
                       else getattr(v, kind))
    return out


def traced_config(mocks, rx_port: int, **litellm) -> dict:
    return {
        "model_list": [
            mock_deployment(mocks, "claude", "anthropic/claude-sonnet-4-5"),
            mock_deployment(mocks, "gpt", "openai/gpt-4o-mini"),
            mock_deployment(mocks, "flaky", "openai/gpt-4o-mini", at="dead"),
        ],
        "router_settings": {"fallbacks": [{"flaky": ["gpt"]}], "disable_cooldowns": True},
        "litellm_settings": {"callbacks": ["otel"], **litellm},
        "virtual_keys": [vkey(TEAM_KEY, "team-key", team_id="squad"),
                         vkey(ZERO_KEY, "zero-key", max_budget=0)],
        "teams": [{"team_id": "squad"}],
        "gateway": {"clusters": {**mock_cluster_map(mocks), f"127.0.0.1:{rx_port}": "otel_rx"}},
    }


ENV = {"MOCK_OPENAI_KEY": "sk-oai-test", "MOCK_ANTHROPIC_KEY": "sk-ant-test"}


@pytest.fixture(scope="module")
def rx():
    r = OtlpReceiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def traced(start_gateway, mocks, rx):
    env = {**ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{rx.port}",
           "OTEL_SERVICE_NAME": "gw-under-test"}
    with start_gateway(traced_config(mocks, rx.port), extra_clusters={"otel_rx": rx.port},
                       env=env, name="traces") as gw:
        yield gw


def sdk(gw, key: str = TEAM_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=HTTP_TIMEOUT)


def test_plain_request_joins_the_client_trace_and_carries_genai_attributes(traced, rx):
    traced.reset()
    tp = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"
    out = sdk(traced).chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "secret prompt text"}],
        max_tokens=64, temperature=0.5, extra_headers={"traceparent": tp})
    span = rx.wait_span(lambda a: a.get("gen_ai.response.id") == out.id)
    a = attrs(span)
    assert span.trace_id.hex() == PARENT_TRACE and span.parent_span_id.hex() == PARENT_SPAN
    assert span.name == "chat claude" and span.kind == 3 and span.status.code == 1
    assert span.end_time_unix_nano >= span.start_time_unix_nano > 0
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.model"] == "claude" and a["gen_ai.response.model"] == "claude-sonnet-4-5"
    assert a["gen_ai.usage.input_tokens"] == out.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == out.usage.completion_tokens
    assert a["gen_ai.response.finish_reasons"] == [out.choices[0].finish_reason]
    assert a["gen_ai.request.max_tokens"] == 64 and a["gen_ai.request.temperature"] == 0.5
    assert a["llm_gateway.key_alias"] == "team-key" and a["llm_gateway.team"] == "squad"
    assert a["llm_gateway.attempts"] == 1 and a["llm_gateway.fallback"] is False
    assert a["http.response.status_code"] == 200
    # Content stays out unless turn_off_message_logging is false.
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    # The provider call is the gateway span's child.
    got = traced.only_request("anthropic")["headers"]
    assert got["traceparent"] == f"00-{PARENT_TRACE}-{span.span_id.hex()}-01"
    # The resource names the service.
    _, _, export = rx.exports[-1]
    res = {kv.key: kv.value.string_value for kv in export.resource_spans[0].resource.attributes}
    assert res["service.name"] == "gw-under-test"


def test_stream_span_ends_with_the_stream_and_its_usage(traced, rx):
    traced.reset()
    stream = sdk(traced).chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "stream please"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    usage = chunks[-1].usage
    span = rx.wait_span(lambda a: a.get("gen_ai.response.id") == chunks[0].id)
    a = attrs(span)
    assert a["llm_gateway.stream"] is True and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert "llm_gateway.time_to_first_token_ms" in a
    # No client traceparent: a new trace, the gateway's span is its root.
    assert span.parent_span_id == b"" and len(span.trace_id) == 16


def test_failed_over_request_shows_its_attempts(traced, rx):
    traced.reset()
    out = sdk(traced).chat.completions.create(model="flaky", messages=[{"role": "user", "content": "hi"}])
    a = attrs(rx.wait_span(lambda a: a.get("gen_ai.response.id") == out.id))
    assert a["gen_ai.request.model"] == "flaky" and a["llm_gateway.model_alias"] == "gpt"
    assert a["llm_gateway.attempts"] == 2 and a["llm_gateway.fallback"] is True


def test_refused_requests_have_error_spans(traced, rx):
    with pytest.raises(openai.APIStatusError) as e:
        sdk(traced, ZERO_KEY).chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    a = attrs(rx.wait_span(lambda a: a.get("llm_gateway.key_alias") == "zero-key"))
    assert a["http.response.status_code"] == e.value.status_code and a["error.type"] == str(e.value.status_code)
    span = rx.wait_span(lambda a: a.get("llm_gateway.key_alias") == "zero-key")
    assert span.status.code == 2
    # Unknown model: refused before any routing, still one span.
    with pytest.raises(openai.NotFoundError):
        sdk(traced).chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    a = attrs(rx.wait_span(lambda a: a.get("gen_ai.request.model") == "no-such-model"
                           or (a.get("http.response.status_code") == 404)))
    assert a["http.response.status_code"] == 404
    stats = gateway_stats(traced, "llm_gateway.otel")
    assert stats.get("wasmcustom.llm_gateway.otel.spans_exported", 0) >= 4


def test_content_is_logged_when_enabled_and_after_masking(start_gateway, mocks, rx):
    cfg = traced_config(mocks, rx.port, turn_off_message_logging=False)
    cfg["guardrails"] = [{"guardrail_name": "pii", "litellm_params": {
        "guardrail": "litellm_content_filter", "mode": "pre_call", "default_on": True,
        "patterns": [{"pattern_type": "prebuilt", "pattern_name": "email", "action": "MASK"}]}}]
    env = {**ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{rx.port}"}
    with start_gateway(cfg, extra_clusters={"otel_rx": rx.port}, env=env, name="traces-content") as gw:
        out = sdk(gw).chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "mail me at jane@example.com"}])
        a = attrs(rx.wait_span(lambda a: a.get("gen_ai.response.id") == out.id))
    assert "jane@example.com" not in a["gen_ai.input.messages"]
    assert "mail me at" in a["gen_ai.input.messages"]
    assert out.choices[0].message.content in a["gen_ai.output.messages"]
    assert a["llm_gateway.guardrails"] == ["pii"]


def test_langfuse_gets_basic_auth_at_its_otel_path_and_only_successes(start_gateway, mocks):
    lf = OtlpReceiver()
    try:
        cfg = traced_config(mocks, lf.port)
        cfg["litellm_settings"] = {"success_callback": ["langfuse"]}
        env = {**ENV, "LANGFUSE_HOST": f"http://127.0.0.1:{lf.port}",
               "LANGFUSE_PUBLIC_KEY": "pk-lf-test", "LANGFUSE_SECRET_KEY": "sk-lf-test"}
        with start_gateway(cfg, extra_clusters={"otel_rx": lf.port}, env=env, name="traces-langfuse") as gw:
            with pytest.raises(openai.APIStatusError):
                sdk(gw, ZERO_KEY).chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
            out = sdk(gw).chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
            lf.wait_span(lambda a: a.get("gen_ai.response.id") == out.id)
            time.sleep(1.5)  # one more export period: the refused one would have arrived
        paths = {p for p, _, _ in lf.exports}
        assert paths == {"/api/public/otel/v1/traces"}
        want = "Basic " + base64.b64encode(b"pk-lf-test:sk-lf-test").decode()
        assert all(h["authorization"] == want for _, h, _ in lf.exports)
        assert all(attrs(s).get("llm_gateway.key_alias") != "zero-key" for s in lf.spans()), \
            "success_callback exports successes only"
    finally:
        lf.close()


def test_dead_collector_loses_spans_never_requests(start_gateway, mocks):
    port = dead_port()
    cfg = traced_config(mocks, port)
    env = {**ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    with start_gateway(cfg, extra_clusters={"otel_rx": port}, env=env, name="traces-dead") as gw:
        for i in range(5):
            out = sdk(gw).chat.completions.create(model="gpt", messages=[{"role": "user", "content": f"q{i}"}])
            assert out.choices[0].message.content
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stats = gateway_stats(gw, "llm_gateway.otel")
            if stats.get("wasmcustom.llm_gateway.otel.spans_dropped", 0) >= 5:
                break
            time.sleep(0.2)
        assert stats.get("wasmcustom.llm_gateway.otel.spans_dropped", 0) >= 5, stats
        assert stats.get("wasmcustom.llm_gateway.otel.spans_exported", 0) == 0
