//! Tracing at its hook points: one OpenTelemetry span per request, with the
//! GenAI semantic conventions' attributes and the gateway's own, handed to
//! the worker's exporter queue when the request is over (`finished`: a
//! stream's span ends when the stream ends or the client leaves).
//!
//! Prompt and answer text go in only with `turn_off_message_logging:
//! false`, and then as the provider saw them: the prompt after the
//! guardrails masked or rewrote it (taken when admission let it through),
//! the answer as the client got it.

use super::Cx;
use crate::accounting::metering::CallerId;
use crate::api::request::ClientRequest;
use crate::cache::assemble::Assembler;
use crate::otlp::{self as trace, SpanData, Value};
use crate::pipeline::record::Outcome;
use crate::pipeline::trace_sink as sink;

/// The request's open span.
struct Open {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    flags: u8,
    start_ms: u64,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    input: Option<String>,
    output: Option<String>,
    finish_reasons: Vec<String>,
    ttft_ms: Option<u64>,
    /// A stream put together, for its text (content logging only).
    assembler: Option<Assembler>,
}

/// The trace hook's per-request state.
#[derive(Default)]
pub struct TraceHook {
    open: Option<Box<Open>>,
}

impl TraceHook {
    /// The body is parsed (`traceparent`: the client's).
    pub fn request_accepted(
        &mut self,
        cx: &mut Cx<'_>,
        req: &ClientRequest,
        traceparent: Option<&str>,
    ) {
        self.start(cx, traceparent);
        let h = &req.head;
        if let Some(o) = self.open.as_mut() {
            o.max_tokens = h.max_completion_tokens.or(h.max_tokens);
            // (`head` holds only what routing reads: these are members.)
            let number = |k: &str| req.member(k).and_then(|v| v.trim().parse::<f64>().ok());
            o.temperature = number("temperature");
            o.top_p = number("top_p");
        }
    }

    /// Open the span (at the latest when the request ends: one refused
    /// before its body was read has a span too).
    pub fn start(&mut self, cx: &mut Cx<'_>, traceparent: Option<&str>) {
        if cx.cfg.traces.is_none() || self.open.is_some() || !cx.record.api_request {
            return;
        }
        let start_ms = cx.record.started_ms;
        let mut ids = [0u8; 24];
        cx.host.random_bytes(&mut ids);
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        trace_id.copy_from_slice(&ids[..16]);
        span_id.copy_from_slice(&ids[16..]);
        let (parent, flags) = match traceparent.and_then(trace::parse_traceparent) {
            Some((t, s, f)) => {
                trace_id = t;
                (Some(s), f)
            }
            None => (None, 1),
        };
        self.open = Some(Box::new(Open {
            trace_id,
            span_id,
            parent,
            flags,
            start_ms,
            max_tokens: None,
            temperature: None,
            top_p: None,
            input: None,
            output: None,
            finish_reasons: Vec::new(),
            ttft_ms: None,
            assembler: None,
        }));
    }

    /// Admission let the request through: the prompt as the provider will see it.
    pub fn admitted(&mut self, cx: &Cx<'_>, req: &ClientRequest) {
        let (Some(open), Some(t)) = (self.open.as_mut(), cx.cfg.traces.as_ref()) else {
            return;
        };
        if t.log_content {
            open.input = req
                .member("messages")
                .or_else(|| req.member("input"))
                .map(str::to_string);
            if cx.record.stream {
                open.assembler = Some(Assembler::default());
            }
        }
    }

    /// The `traceparent` the provider call carries (this span as parent).
    pub fn upstream_traceparent(&self) -> Option<String> {
        self.open
            .as_ref()
            .map(|o| trace::traceparent(&o.trace_id, &o.span_id, o.flags))
    }

    pub fn attempt_succeeded(&mut self, ttft_ms: Option<u64>) {
        if let Some(o) = self.open.as_mut() {
            o.ttft_ms = ttft_ms;
        }
    }

    /// A chunk the client was sent (`since_start_ms`: read for the first
    /// one only; the attempt's own figure replaces it when the stream ends,
    /// and stands if the client hangs up at `[DONE]` before it does).
    pub fn chunk(&mut self, out: &[u8], since_start_ms: impl FnOnce() -> u64) {
        let Some(o) = self.open.as_mut() else { return };
        if o.ttft_ms.is_none() && !out.is_empty() {
            o.ttft_ms = Some(since_start_ms());
        }
        if let Some(a) = o.assembler.as_mut() {
            a.feed(out);
        }
        crate::codec::json_in::string_values(out, b"\"finish_reason\"", &mut o.finish_reasons);
    }

    /// The answer is complete (`whole`: a whole answer as the client got it).
    pub fn response_complete(&mut self, cx: &Cx<'_>, whole: Option<(u16, &[u8])>) {
        let Some(o) = self.open.as_mut() else { return };
        let log = cx.cfg.traces.as_ref().is_some_and(|t| t.log_content);
        let body = match whole {
            Some((_, b)) => Some(b.to_vec()),
            None => o.assembler.take().and_then(Assembler::finish),
        };
        let Some(body) = body else { return };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return;
        };
        let choices = v.get("choices").and_then(|c| c.as_array());
        if whole.is_some() {
            o.finish_reasons = choices
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("finish_reason")?.as_str().map(str::to_string))
                .collect();
        }
        if log {
            let out: Vec<serde_json::Value> = choices
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("message").cloned())
                .collect();
            if !out.is_empty() {
                o.output = Some(serde_json::Value::Array(out).to_string());
            }
        }
    }

    /// The request is over: the span is finished and queued for export.
    pub fn finished(
        &mut self,
        cx: &mut Cx<'_>,
        status: u16,
        cache: Option<&'static str>,
        guardrails: &[String],
    ) {
        let (Some(o), Some(t)) = (self.open.take(), cx.cfg.traces.as_ref()) else {
            return;
        };
        let failed = status >= 400 || status == 0 || cx.record.outcome == Outcome::Failed;
        if !t
            .exporters
            .iter()
            .any(|e| if failed { e.on_failure } else { e.on_success })
        {
            return;
        }
        let span = build(cx, &o, status, failed, cache, guardrails);
        let encoded = trace::encode_span(&span);
        for (i, e) in t.exporters.iter().enumerate() {
            if (failed && e.on_failure) || (!failed && e.on_success) {
                sink::push(cx.host, i, encoded.clone());
            }
        }
    }
}

fn build(
    cx: &mut Cx<'_>,
    o: &Open,
    status: u16,
    failed: bool,
    cache: Option<&'static str>,
    guardrails: &[String],
) -> SpanData {
    let now = cx.host.now_ms();
    let rec = &*cx.record;
    let dep = rec.deployment.and_then(|i| cx.cfg.deployments.get(i));
    let op = match rec.op {
        crate::provider::Operation::Chat => "chat",
        crate::provider::Operation::Embeddings => "embeddings",
    };
    let requested = rec.requested_alias.clone().unwrap_or_default();
    let mut a: Vec<(&'static str, Value)> = vec![
        ("gen_ai.operation.name", Value::Str(op.into())),
        ("gen_ai.request.model", Value::Str(requested.clone())),
        (
            "gen_ai.response.id",
            Value::Str(rec.answer_id().to_string()),
        ),
        ("http.response.status_code", Value::Int(i64::from(status))),
        ("llm_gateway.attempts", Value::Int(i64::from(rec.attempts))),
        ("llm_gateway.fallback", Value::Bool(rec.fallback)),
        ("llm_gateway.stream", Value::Bool(rec.stream)),
    ];
    if let Some(d) = dep {
        let family = d
            .litellm_model
            .split_once('/')
            .map_or(d.provider.family_name(), |(p, _)| p);
        a.push((
            "gen_ai.provider.name",
            Value::Str(trace::provider_name(family).into()),
        ));
        a.push(("gen_ai.response.model", Value::Str(d.model.clone())));
        a.push(("llm_gateway.model_alias", Value::Str(d.alias.clone())));
        a.push(("llm_gateway.deployment", Value::Str(d.id.clone())));
    }
    if let Some(u) = cx.exchange.and_then(|e| e.usage()) {
        a.push((
            "gen_ai.usage.input_tokens",
            Value::Int(u.prompt_tokens as i64),
        ));
        a.push((
            "gen_ai.usage.output_tokens",
            Value::Int(u.completion_tokens as i64),
        ));
    }
    if !o.finish_reasons.is_empty() {
        a.push((
            "gen_ai.response.finish_reasons",
            Value::Strs(o.finish_reasons.clone()),
        ));
    }
    if let Some(m) = o.max_tokens {
        a.push(("gen_ai.request.max_tokens", Value::Int(m as i64)));
    }
    if let Some(x) = o.temperature {
        a.push(("gen_ai.request.temperature", Value::Double(x)));
    }
    if let Some(x) = o.top_p {
        a.push(("gen_ai.request.top_p", Value::Double(x)));
    }
    if let Some(ms) = o.ttft_ms {
        a.push(("llm_gateway.time_to_first_token_ms", Value::Int(ms as i64)));
    }
    if let CallerId::Key(alias) = &rec.caller {
        a.push(("llm_gateway.key_alias", Value::Str(alias.clone())));
        if let Some(team) = rec.caller.caller(cx.cfg).key().and_then(|k| k.team.clone()) {
            a.push(("llm_gateway.team", Value::Str(team)));
        }
    }
    if let Some(c) = rec.cost_micro {
        a.push(("llm_gateway.cost_usd", Value::Double(c as f64 / 1e6)));
    }
    if let Some(c) = cache {
        a.push(("llm_gateway.cache", Value::Str(c.into())));
    }
    if !guardrails.is_empty() {
        a.push(("llm_gateway.guardrails", Value::Strs(guardrails.to_vec())));
    }
    if let Some(i) = &o.input {
        a.push(("gen_ai.input.messages", Value::Str(i.clone())));
    }
    if let Some(out) = &o.output {
        a.push(("gen_ai.output.messages", Value::Str(out.clone())));
    }
    if failed {
        a.push((
            "error.type",
            Value::Str(if status == 0 {
                "client_closed".into()
            } else {
                status.to_string()
            }),
        ));
    }
    SpanData {
        trace_id: o.trace_id,
        span_id: o.span_id,
        parent_span_id: o.parent,
        flags: o.flags,
        name: format!("{op} {requested}"),
        start_ns: o.start_ms.saturating_mul(1_000_000),
        end_ns: now.max(o.start_ms).saturating_mul(1_000_000),
        attributes: a,
        error: failed.then(|| format!("HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finish_reasons_are_read_from_chunks() {
        let mut out = Vec::new();
        crate::codec::json_in::string_values(
            b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"finish_reason\": \"stop\"}]}\n\n",
            b"\"finish_reason\"",
            &mut out,
        );
        assert_eq!(out, ["stop"]);
    }
}
