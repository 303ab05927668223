//! The request pipeline: everything the gateway decides about a request,
//! with no host calls.
//!
//! - [`flow`]: [`RequestFlow`], one request's state and every decision, one
//!   method per proxy-wasm callback, over the [`Host`] seam ([`host`]).
//! - [`telemetry`]: metric names and access-log keys.
//! - [`usage_sink`]: settled usage events, batched per worker for the
//!   counter service; [`fleet_calls`]: the fleet counters' webdis calls.
//! - This module: endpoint classification, per-attempt translation
//!   ([`attempt`]), and [`Exchange`], the response half of one attempt
//!   (translate a whole answer or a stream, read its usage).
//!
//! `src/filter/` implements [`Host`] for proxy-wasm and forwards each
//! callback here, so the whole request path is tested natively.

mod attempt;
pub mod counter_service;
pub mod fleet_calls;
pub mod flow;
pub mod hooks;
pub mod host;
pub mod ingress;
pub mod load;
pub mod record;
pub mod spend_endpoints;
pub mod spend_fleet;
mod stream_events;
pub mod telemetry;
pub mod timing;
pub mod trace_sink;
pub mod usage_sink;

pub use attempt::{attempt, attempt_with, call_headers, Attempt};
pub use flow::RequestFlow;
pub use host::{Action, HeaderMap, Host, MetricKind, Part, Span};
pub use load::load_config;

use serde_json::json;

use crate::api::error::{upstream_status_kind, ErrorKind, GatewayError};
use crate::api::openai::Usage;
use crate::api::overrides::Overrides;
use crate::api::request::ClientRequest;
use crate::config::{Config, Deployment};
use crate::provider::{Operation, ResponseMeta, StreamTranslator, Translator};

pub use spend_endpoints::{spend_answer, SpendEndpoint};
use stream_events::{ends_answered, find_event_end, generated_text_bytes};

/// What the client asked for, from method and path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions` (or `/chat/completions`).
    ChatCompletions,
    /// `GET /v1/models` (or `/models`).
    Models,
    /// `GET /key/info` (LiteLLM's key status endpoint).
    KeyInfo,
    /// `POST /v1/embeddings` (or `/embeddings`).
    Embeddings,
    /// `POST /v1/messages` (Anthropic's Messages API).
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `POST /v1/completions` (OpenAI's legacy completions).
    Completions,
    /// `GET /v1/models/{id}`.
    ModelInfo,
    /// `GET /team/info`, `/global/spend/report`, `/spend/logs` (LiteLLM's).
    Spend(SpendEndpoint),
    /// A path the gateway serves, with the wrong method.
    MethodNotAllowed,
    /// Anything else.
    Unknown,
}

/// Classify a request by method and path (query string ignored).
pub fn classify(method: &str, path: &str) -> Endpoint {
    let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    let path = path.strip_prefix("/v1").unwrap_or(path);
    // LiteLLM also serves `/openai/deployments/{d}/chat/completions` style paths; not here yet.
    match (method, path) {
        ("POST", "/chat/completions") => Endpoint::ChatCompletions,
        ("GET", "/models") => Endpoint::Models,
        ("GET", "/key/info") => Endpoint::KeyInfo,
        ("POST", "/embeddings") => Endpoint::Embeddings,
        ("POST", "/messages") => Endpoint::Messages,
        ("POST", "/messages/count_tokens") => Endpoint::CountTokens,
        ("POST", "/completions") => Endpoint::Completions,
        ("GET", p) if p.len() > 8 && p.starts_with("/models/") => Endpoint::ModelInfo,
        ("GET", "/team/info") => Endpoint::Spend(SpendEndpoint::TeamInfo),
        ("GET", "/global/spend/report") => Endpoint::Spend(SpendEndpoint::Report),
        ("GET", "/spend/logs") => Endpoint::Spend(SpendEndpoint::Logs),
        (_, "/chat/completions")
        | (_, "/models")
        | (_, "/key/info")
        | (_, "/embeddings")
        | (_, "/messages")
        | (_, "/messages/count_tokens")
        | (_, "/completions")
        | (_, "/team/info")
        | (_, "/global/spend/report")
        | (_, "/spend/logs") => Endpoint::MethodNotAllowed,
        _ => Endpoint::Unknown,
    }
}

/// The error for [`Endpoint::Unknown`].
pub fn unknown_endpoint(method: &str, path: &str) -> GatewayError {
    let path = path.split('?').next().unwrap_or(path);
    GatewayError::new(
        404,
        ErrorKind::NotFound,
        format!(
            "{method} {path} is not served by this gateway; it serves POST /v1/chat/completions, \
             POST /v1/messages, POST /v1/messages/count_tokens, POST /v1/completions, \
             POST /v1/embeddings, GET /v1/models, GET /v1/models/{{id}} and GET /key/info"
        ),
    )
    .with_code("unknown_url")
}

/// The error for [`Endpoint::MethodNotAllowed`].
pub fn method_not_allowed(method: &str, path: &str) -> GatewayError {
    let path = path.split('?').next().unwrap_or(path);
    GatewayError::new(
        405,
        ErrorKind::InvalidRequest,
        format!("{method} is not allowed on {path}"),
    )
    .with_code("method_not_allowed")
}

/// The 413 for a body over the limit.
pub fn body_too_large(limit: usize) -> GatewayError {
    GatewayError::new(
        413,
        ErrorKind::TooLarge,
        format!("request body exceeds the gateway limit of {limit} bytes"),
    )
    .with_code("request_too_large")
}

/// A request body declared as something other than JSON (`text/plain`,
/// curl's default `application/x-www-form-urlencoded`, multipart): 415, as
/// OpenAI's API refuses it, before the body is read. No `Content-Type` at
/// all is read as JSON. (LiteLLM reads any body as JSON; README.)
pub fn not_json(content_type: Option<&str>) -> Option<GatewayError> {
    let media = content_type?.split(';').next().unwrap_or("").trim();
    let json = media.eq_ignore_ascii_case("application/json")
        || media
            .as_bytes()
            .rsplit(|b| *b == b'+')
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case(b"json") && media.len() > 5);
    (!json && !media.is_empty()).then(|| {
        GatewayError::new(
            415,
            ErrorKind::InvalidRequest,
            format!(
                "request Content-Type is `{media}`; send the body as JSON with \
                 `Content-Type: application/json`"
            ),
        )
        .with_code("unsupported_media_type")
    })
}

/// An upstream's whole answer larger than the filter reads
/// (`general_settings.max_response_size_mb`): the upstream's failure to give
/// a usable answer, so a 502 (LiteLLM answers 400, as if the client had
/// asked for too much; README).
pub fn answer_too_large(limit: usize) -> GatewayError {
    GatewayError::new(
        502,
        ErrorKind::Upstream,
        format!("the upstream's answer exceeds the gateway limit of {limit} bytes"),
    )
    .with_code("upstream_response_too_large")
}

/// `GET /v1/models`: the configured aliases in OpenAI's list shape.
pub fn models_body(cfg: &Config, created: u64) -> Vec<u8> {
    let data: Vec<_> = cfg
        .aliases()
        .into_iter()
        .map(|a| json!({"id": a, "object": "model", "created": created, "owned_by": "llm-gateway"}))
        .collect();
    json!({"object": "list", "data": data})
        .to_string()
        .into_bytes()
}

/// Ask OpenAI-compatible providers for usage in streams
/// (`stream_options.include_usage`) so the request can be charged; the
/// client's own choice stays in the typed view and decides whether it sees
/// the usage chunk.
pub fn request_stream_usage(req: &mut ClientRequest) {
    req.request_stream_usage();
}

/// Request headers that carry LiteLLM's per-request routing overrides, and
/// the body key each stands for. They are removed before the provider sees
/// the request.
pub const OVERRIDE_HEADERS: &[(&str, &str)] = &[
    ("x-litellm-num-retries", "num_retries"),
    ("x-litellm-timeout", "timeout"),
];

/// Check and index a chat request, taking out the routing overrides
/// (`num_retries`, `fallbacks`, `timeout` ... in the body, or the
/// [`OVERRIDE_HEADERS`]; the body wins) so no provider receives them.
pub fn prepare_chat(
    body: Vec<u8>,
    header_overrides: &[(&str, String)],
) -> Result<(ClientRequest, Overrides), GatewayError> {
    prepare(Operation::Chat, body, header_overrides)
}

/// [`prepare_chat`] for either API. Only the top-level fields routing and
/// admission need are decoded here (see [`ClientRequest`]); each translator
/// reads what it needs of the rest.
pub fn prepare(
    op: Operation,
    body: Vec<u8>,
    header_overrides: &[(&str, String)],
) -> Result<(ClientRequest, Overrides), GatewayError> {
    let req = ClientRequest::parse(op, body)?;
    let mut raw = req.overrides()?;
    for (header, value) in header_overrides {
        let Some((_, key)) = OVERRIDE_HEADERS.iter().find(|(h, _)| h == header) else {
            continue;
        };
        if raw.contains_key(*key) {
            continue;
        }
        let v: serde_json::Value = value
            .trim()
            .parse::<f64>()
            .map(serde_json::Value::from)
            .map_err(|_| GatewayError::bad_request(format!("header {header} must be a number")))?;
        let v = match v.as_f64() {
            Some(f) if *key == "num_retries" && f.fract() == 0.0 && f >= 0.0 => {
                serde_json::Value::from(f as u64)
            }
            _ => v,
        };
        raw.insert((*key).to_string(), v);
    }
    let overrides = crate::api::overrides::overrides_from_request(&raw)?;
    Ok((req, overrides))
}

/// A whole upstream answer, translated at once (used for attempts made with
/// `dispatch_http_call`, whose answer arrives complete): status, content type
/// and body for the client.
pub struct WholeResponse {
    /// Status for the client.
    pub status: u16,
    /// `content-type` for the client.
    pub content_type: &'static str,
    /// Body for the client.
    pub body: Vec<u8>,
}

/// What to do with the upstream response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Replace `:status`.
    pub status: Option<u16>,
    /// Set `content-type`.
    pub content_type: Option<&'static str>,
    /// Remove `content-length` because the body changes.
    pub remove_content_length: bool,
    /// Hold the headers and the whole body before forwarding (translation
    /// needs all of it, and may still change the status).
    pub buffer_body: bool,
}

enum Mode {
    /// Not yet decided (before response headers).
    Pending,
    /// Buffer, then translate a success body.
    Translate,
    /// Buffer, then translate an error body with the upstream status.
    Error(u16),
    /// Translate a stream chunk by chunk.
    Stream(Box<dyn StreamTranslator>),
}

/// The response half of one attempt.
pub struct Exchange {
    translator: &'static dyn Translator,
    meta: ResponseMeta,
    stream: bool,
    mode: Mode,
    usage: Option<Usage>,
    finished: bool,
    /// The client's stream ended with `[DONE]` after a whole answer, before
    /// the provider's stream reached its end (translators write `[DONE]` at
    /// the provider's own end marker). The OpenAI SDKs hang up on reading it,
    /// so the answer is complete here, not at an end of stream that may
    /// never be delivered.
    answered: bool,
    /// The request is charged: usage must be read even from answers that
    /// could pass through untouched.
    need_usage: bool,
    /// Bytes of translated stream sent on (for an estimate when a stream
    /// ends without usage).
    streamed_bytes: usize,
    /// Mid-stream budget enforcement, when on.
    limit: Option<MidStreamLimit>,
    /// Which API the answer is for.
    op: Operation,
    /// Embeddings requested with `encoding_format: "base64"`.
    base64_embeddings: bool,
    /// Generated text seen so far (content, reasoning, tool arguments), in bytes.
    generated_bytes: usize,
    /// The stream was ended at the budget; the usage it was charged with.
    cut_usage: Option<Usage>,
    /// `post_call` guardrails over the answer, when any run.
    output_guard: Option<crate::guardrails::output::OutputGuard>,
    /// A guardrail service checks the whole answer: never pass it through.
    hold_answer: bool,
    /// The deployment's credentials: a provider error that quotes one
    /// (some echo the `Authorization` they got) reaches the client without it.
    secrets: Vec<String>,
    /// The success answer could not be read (empty, not JSON, wrong shape):
    /// the client got a 502 and the attempt counts as the deployment's failure.
    unreadable: bool,
    /// The request went in the client's own API (a passthrough): the
    /// answer is translated for the hooks, the client gets the provider's.
    passthrough: Option<crate::ingress::Ingress>,
}

/// `gateway.enforce_mid_stream`: end a stream cleanly once its running cost,
/// estimated from the text streamed so far, reaches what its budget has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MidStreamLimit {
    /// Prompt tokens (estimated from the request body).
    pub prompt_tokens: u64,
    /// The serving deployment's prices.
    pub price: Option<crate::config::pricing::ModelPrice>,
    /// What this request may spend, micro-USD.
    pub limit_micro: u64,
}

impl Exchange {
    /// A new exchange for a translator and a request.
    pub fn new(translator: &'static dyn Translator, meta: ResponseMeta, stream: bool) -> Self {
        Exchange {
            translator,
            meta,
            stream,
            mode: Mode::Pending,
            usage: None,
            finished: false,
            answered: false,
            need_usage: false,
            streamed_bytes: 0,
            limit: None,
            op: Operation::Chat,
            base64_embeddings: false,
            generated_bytes: 0,
            cut_usage: None,
            output_guard: None,
            hold_answer: false,
            secrets: Vec::new(),
            unreadable: false,
            passthrough: None,
        }
    }

    /// The client gets the provider's own answer bytes: a passthrough that
    /// no answer guard or mid-stream limit may rewrite (those act on the
    /// translation, which then goes back to the client's API).
    ///
    /// A completions passthrough's answer is a `text_completion`, which the
    /// hooks read only for its usage (the flow passes no such request
    /// through when a guardrail would rewrite the answer; the cache does
    /// not store it: [`Self::answer_is_chat`]).
    pub fn native_answer(&self) -> bool {
        match self.passthrough {
            None => false,
            Some(crate::ingress::Ingress::Completions) => true,
            Some(_) => self.output_guard.is_none() && self.limit.is_none() && !self.hold_answer,
        }
    }

    /// Whether the answer the hooks see is a chat answer (every one but a
    /// completions passthrough's).
    pub fn answer_is_chat(&self) -> bool {
        self.passthrough != Some(crate::ingress::Ingress::Completions)
    }

    /// Whether the success answer turned out unreadable (see [`Self::complete_body`]).
    pub fn answer_unreadable(&self) -> bool {
        self.unreadable
    }

    /// Buffer the whole answer for a check before the client sees it.
    pub fn hold_answer(&mut self) {
        self.hold_answer = true;
    }

    /// Check the answer with `post_call` guardrails before the client sees it.
    pub fn set_output_guard(&mut self, guard: crate::guardrails::output::OutputGuard) {
        self.output_guard = Some(guard);
    }

    /// The answer's guard, to read what it did.
    pub fn output_guard(&self) -> Option<&crate::guardrails::output::OutputGuard> {
        self.output_guard.as_ref()
    }

    /// Turn on mid-stream enforcement for this attempt.
    pub fn set_mid_stream_limit(&mut self, limit: MidStreamLimit) {
        self.limit = Some(limit);
    }

    /// Whether the stream was ended at the budget.
    pub fn was_cut(&self) -> bool {
        self.cut_usage.is_some()
    }

    /// Whether the answer was received whole (a stream to its end, or a
    /// buffered body).
    pub fn is_complete(&self) -> bool {
        match self.mode {
            Mode::Stream(_) => self.finished || self.answered || self.cut_usage.is_some(),
            Mode::Pending => false,
            _ => true,
        }
    }

    /// Read usage from every answer (the request is charged).
    pub fn require_usage(&mut self) {
        self.need_usage = true;
    }

    /// Bytes of translated stream sent on so far.
    pub fn streamed_bytes(&self) -> usize {
        self.streamed_bytes
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Usage the provider reported (after the body is processed).
    pub fn usage(&self) -> Option<Usage> {
        if let Some(u) = self.cut_usage {
            return Some(u);
        }
        match &self.mode {
            Mode::Stream(s) => s.usage(),
            _ => self.usage,
        }
    }

    /// Decide on the upstream response headers.
    pub fn response_headers(&mut self, status: u16) -> HeaderEdits {
        if status >= 400 {
            let (mapped, _) = upstream_status_kind(status);
            self.mode = Mode::Error(status);
            return HeaderEdits {
                status: (mapped != status).then_some(mapped),
                content_type: Some("application/json"),
                remove_content_length: true,
                buffer_body: true,
            };
        }
        if self.stream {
            self.mode = Mode::Stream(self.translator.stream(self.meta.clone()));
            return HeaderEdits {
                status: None,
                content_type: Some("text/event-stream"),
                remove_content_length: true,
                buffer_body: false,
            };
        }
        // Every success answer is held whole and read before the client
        // gets it, OpenAI-shaped ones too: an upstream's 200 with an empty,
        // cut or unreadable body must become a 502, and the status can only
        // change while the headers are held.
        self.mode = Mode::Translate;
        HeaderEdits {
            status: None,
            content_type: Some("application/json"),
            remove_content_length: true,
            buffer_body: true,
        }
    }

    /// A whole buffered body (translate and error modes): the body to send,
    /// and a new status when the body turned out to be unreadable. Returns
    /// `None` when the body passes unchanged.
    ///
    /// A success body that cannot be translated becomes a 502 error: the
    /// filter holds the response headers while it buffers, so the status can
    /// still change.
    pub fn complete_body(&mut self, upstream: &[u8]) -> Option<(Vec<u8>, Option<u16>)> {
        match &self.mode {
            Mode::Translate => match match self.op {
                Operation::Chat => self.translator.response(upstream, &self.meta),
                Operation::Embeddings => self.translator.embeddings_response(upstream, &self.meta),
            } {
                Ok(t) => {
                    self.usage = t.usage;
                    // The client asked for base64 vectors; a translated answer
                    // carries floats (passthrough answers were asked for base64
                    // upstream already).
                    let body =
                        if self.base64_embeddings && !self.translator.passes_embeddings_through() {
                            crate::provider::common::embedding::reencode_base64(&t.body)
                                .unwrap_or(t.body)
                        } else {
                            t.body
                        };
                    match self.output_guard.as_mut().map(|g| g.check_body(&body)) {
                        Some(Err(e)) => Some((e.to_body(), Some(e.status))),
                        Some(Ok(Some(guarded))) => Some((guarded, None)),
                        // An OpenAI-shaped answer read and left as it came.
                        _ if body == upstream => None,
                        _ => Some((body, None)),
                    }
                }
                Err(e) => {
                    self.unreadable = true;
                    Some((e.to_body(), Some(e.status)))
                }
            },
            Mode::Error(status) => {
                let mut e = self.translator.error(*status, upstream);
                for s in &self.secrets {
                    e.message = e.message.replace(s.as_str(), "[REDACTED]");
                }
                // A 500 that is not the provider's own JSON error (a proxy's or
                // load balancer's HTML page) is a bad gateway; the provider's
                // JSON 500 stays a 500, as LiteLLM answers it.
                let foreign = *status == 500
                    && !std::str::from_utf8(upstream)
                        .is_ok_and(|t| crate::codec::json_in::check(t).is_ok());
                Some((e.to_body(), foreign.then_some(502)))
            }
            _ => None,
        }
    }

    /// A stream chunk; returns the bytes to forward instead. At
    /// `end_of_stream` the closing events are appended.
    pub fn stream_chunk(&mut self, chunk: &[u8], end_of_stream: bool) -> Option<Vec<u8>> {
        let Mode::Stream(s) = &mut self.mode else {
            return None;
        };
        if self.cut_usage.is_some() {
            // Ended at the budget: the rest of the provider's stream is dropped.
            return Some(Vec::new());
        }
        // Translated events are larger than the provider's (each OpenAI chunk
        // repeats id, created and model): room for that, so the buffer is
        // not grown (copied) while writing.
        let mut out = Vec::with_capacity(chunk.len() + chunk.len() / 2 + 256);
        s.feed(chunk, &mut out);
        if end_of_stream && !self.finished {
            self.finished = true;
            s.finish(&mut out);
        }
        if let Some(guard) = self.output_guard.as_mut() {
            out = guard.feed_stream(&out, end_of_stream);
        }
        if let Some(limit) = self.limit.clone() {
            let reported = s.usage();
            if let Some(cut) = self.enforce(&limit, reported, &mut out) {
                self.cut_usage = Some(cut);
            }
        }
        self.streamed_bytes += out.len();
        if !end_of_stream && !self.answered && self.cut_usage.is_none() {
            self.answered = ends_answered(&out);
        }
        Some(out)
    }

    /// The client has its whole streamed answer (see `answered`).
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Count the generated text in `out` event by event; at the first event
    /// whose running cost reaches the limit, drop what follows it and close the
    /// stream: a final chunk with `finish_reason: "length"` and the usage the
    /// request is charged with, then `[DONE]`.
    fn enforce(
        &mut self,
        limit: &MidStreamLimit,
        reported: Option<Usage>,
        out: &mut Vec<u8>,
    ) -> Option<Usage> {
        // The provider's prompt count when it gave one (Anthropic does at the start).
        let prompt = reported
            .map(|u| u.prompt_tokens)
            .filter(|p| *p > 0)
            .unwrap_or(limit.prompt_tokens);
        let mut pos = 0;
        while let Some(rel) = find_event_end(&out[pos..]) {
            let end = pos + rel;
            self.generated_bytes += generated_text_bytes(&out[pos..end]);
            pos = end;
            let completion = (self.generated_bytes as u64).div_ceil(4);
            let cost =
                crate::config::pricing::max_cost_micro(limit.price.as_ref(), prompt, completion);
            if cost >= limit.limit_micro {
                out.truncate(pos);
                let usage = Usage::new(prompt, completion);
                let chunk = json!({
                    "id": self.meta.id, "object": "chat.completion.chunk", "created": self.meta.created,
                    "model": self.meta.model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                    "usage": usage,
                });
                crate::codec::sse::write_data(out, &chunk.to_string());
                crate::codec::sse::write_done(out);
                return Some(usage);
            }
        }
        None
    }

    /// Translate a complete upstream answer in one go.
    pub fn whole_response(&mut self, status: u16, body: &[u8]) -> WholeResponse {
        let edits = self.response_headers(status);
        let mut status_out = edits.status.unwrap_or(status);
        let content_type = edits.content_type.unwrap_or("application/json");
        let body = if let Some(out) = self.stream_chunk(body, true) {
            out
        } else if let Some((out, s)) = self.complete_body(body) {
            if let Some(s) = s {
                status_out = s;
            }
            out
        } else {
            body.to_vec()
        };
        WholeResponse {
            status: status_out,
            content_type,
            body,
        }
    }

    /// The upstream status when the response is an error being buffered.
    pub fn error_status(&self) -> Option<u16> {
        match self.mode {
            Mode::Error(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the response is being streamed and translated chunk by chunk.
    pub fn is_streaming_response(&self) -> bool {
        matches!(self.mode, Mode::Stream(_))
    }
}

/// How the `x-llm-gateway-deployment` header and metrics name a deployment:
/// `<alias>#<index in model_list>`, never a key.
pub fn deployment_label(dep: &Deployment) -> String {
    dep.id.clone()
}

/// A short label for logs: never the key, only alias and provider model.
pub fn describe(dep: &Deployment) -> String {
    format!("{} -> {} ({})", dep.alias, dep.litellm_model, dep.cluster)
}

#[cfg(test)]
mod tests {
    /// Parse the body, pick a deployment by weight (no shared state), translate:
    /// the first attempt as the simplest router would make it. A test helper
    /// for the translation half; the flow itself plans with
    /// `routing::plan_attempts` (tested through `tests/request_flow.rs`).
    pub(super) fn plan_chat<'a>(
        cfg: &'a Config,
        body: &[u8],
        rand: u64,
        id: String,
        now: u64,
    ) -> Result<Attempt<'a>, GatewayError> {
        let (parsed, overrides) = prepare_chat(body.to_vec(), &[])?;
        let deployment = crate::routing::choose(cfg, &parsed.head.model, rand)?;
        attempt(cfg, &parsed, deployment, &id, now, &overrides)
    }

    use super::*;

    #[test]
    fn classifies_paths() {
        assert_eq!(
            classify("POST", "/v1/chat/completions"),
            Endpoint::ChatCompletions
        );
        assert_eq!(
            classify("POST", "/chat/completions?x=1"),
            Endpoint::ChatCompletions
        );
        assert_eq!(classify("GET", "/v1/models"), Endpoint::Models);
        assert_eq!(
            classify("GET", "/v1/chat/completions"),
            Endpoint::MethodNotAllowed
        );
        assert_eq!(classify("POST", "/v1/embeddings"), Endpoint::Embeddings);
        assert_eq!(classify("POST", "/v1/audio/speech"), Endpoint::Unknown);
    }

    fn cfg() -> Config {
        crate::config::parse(
            br#"{"model_list":[{"model_name":"fast","litellm_params":{"model":"openai/gpt-x","api_base":"http://127.0.0.1:9/v1","api_key":"sk-up"}}],
                 "gateway":{"clusters":{"openai":"mock"}}}"#,
            &|_| None,
        )
        .unwrap()
    }

    #[test]
    fn plans_openai_passthrough() {
        let c = cfg();
        let plan = plan_chat(
            &c,
            br#"{"model":"fast","messages":[{"role":"user","content":"hi"}],"seed":1}"#,
            0,
            "chatcmpl-1".into(),
            5,
        )
        .unwrap();
        assert_eq!(plan.upstream.path, "/v1/chat/completions");
        assert!(plan
            .upstream
            .headers
            .contains(&("authorization".into(), "Bearer sk-up".into())));
        let body: serde_json::Value = serde_json::from_slice(&plan.upstream.body).unwrap();
        assert_eq!(body["model"], "gpt-x");
        assert_eq!(body["seed"], 1);
    }

    #[test]
    fn error_status_is_mapped_and_body_translated() {
        let c = cfg();
        let mut plan = plan_chat(
            &c,
            br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#,
            0,
            "x".into(),
            5,
        )
        .unwrap();
        let h = plan.exchange.response_headers(529);
        assert_eq!(h.status, Some(503));
        assert!(h.buffer_body);
        let (body, _) = plan
            .exchange
            .complete_body(br#"{"error":{"message":"busy"}}"#)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["message"], "busy");
    }

    #[test]
    fn overrides_are_taken_out_of_the_body_and_headers() {
        let (parsed, o) = prepare_chat(
            br#"{"model":"fast","messages":[{"role":"user","content":"hi"}],"num_retries":1,"fallbacks":["b"]}"#.to_vec(),
            &[("x-litellm-timeout", "2.5".to_string()), ("x-litellm-num-retries", "4".to_string())],
        )
        .unwrap();
        assert_eq!(o.num_retries, Some(1), "the body wins over the header");
        assert_eq!(o.timeout_ms, Some(2500));
        assert!(o.fallbacks.is_some());
        for k in ["num_retries", "fallbacks", "timeout"] {
            assert!(parsed.member(k).is_none(), "{k} reached the provider body");
            assert!(!parsed.parsed().unwrap().raw.contains_key(k));
            assert!(!parsed.parsed().unwrap().chat.extra.contains_key(k));
            assert!(!String::from_utf8(parsed.openai_body("x"))
                .unwrap()
                .contains(k));
        }
        let e = prepare_chat(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#.to_vec(),
            &[("x-litellm-timeout", "soon".to_string())],
        )
        .err()
        .unwrap();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn unknown_model_is_404() {
        let c = cfg();
        let e = plan_chat(
            &c,
            br#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#,
            0,
            "x".into(),
            5,
        )
        .err()
        .unwrap();
        assert_eq!(e.status, 404);
    }
}
#[cfg(test)]
mod usage_tests {
    use super::tests::plan_chat;
    use super::*;

    #[test]
    fn mid_stream_limit_cuts_at_the_budget_with_a_clean_end() {
        let c = crate::config::parse(
            br#"{"model_list":[{"model_name":"fast","litellm_params":{"model":"openai/gpt-x","api_base":"http://127.0.0.1:9/v1",
                "input_cost_per_token":0.000001,"output_cost_per_token":0.00001}}],"gateway":{"clusters":{"openai":"mock"}}}"#,
            &|_| None,
        ).unwrap();
        let mut a = plan_chat(
            &c,
            br#"{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            0,
            "x".into(),
            5,
        )
        .unwrap();
        // 10 prompt tokens = 10 micro-USD; each 40-byte delta = 10 tokens = 100 micro-USD.
        a.exchange.set_mid_stream_limit(MidStreamLimit {
            prompt_tokens: 10,
            price: c.deployments[0].price,
            limit_micro: 250,
        });
        a.exchange.response_headers(200);
        let delta = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
            "y".repeat(40)
        );
        let mut out = a
            .exchange
            .stream_chunk(format!("{delta}{delta}").as_bytes(), false)
            .unwrap();
        assert!(!a.exchange.was_cut(), "210 micro-USD < 250");
        out.extend(
            a.exchange
                .stream_chunk(format!("{delta}{delta}").as_bytes(), false)
                .unwrap(),
        );
        assert!(a.exchange.was_cut());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.matches("\"content\"").count(),
            3,
            "the event that reached the limit is the last one: {text}"
        );
        assert!(text.contains("\"finish_reason\":\"length\""));
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert_eq!(a.exchange.usage(), Some(Usage::new(10, 30)));
        assert_eq!(
            a.exchange.stream_chunk(delta.as_bytes(), true),
            Some(Vec::new()),
            "the rest is dropped"
        );
    }
    #[test]
    fn passthrough_reads_usage_when_required() {
        let c = crate::config::parse(
            br#"{"model_list":[{"model_name":"fast","litellm_params":{"model":"openai/gpt-x","api_base":"http://127.0.0.1:9/v1"}}],"gateway":{"clusters":{"openai":"mock"}}}"#,
            &|_| None,
        ).unwrap();
        let mut a = plan_chat(
            &c,
            br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#,
            0,
            "x".into(),
            5,
        )
        .unwrap();
        a.exchange.require_usage();
        let h = a.exchange.response_headers(200);
        assert!(h.buffer_body);
        let out = a.exchange.complete_body(br#"{"id":"c","object":"chat.completion","choices":[],"usage":{"prompt_tokens":4000,"completion_tokens":1000,"total_tokens":5000,"prompt_tokens_details":{"cached_tokens":0}}}"#);
        assert!(out.is_none(), "read and left as it came");
        assert_eq!(a.exchange.usage().map(|u| u.total_tokens), Some(5000));
    }
}

#[cfg(test)]
mod tail_tests {
    use super::*;

    #[test]
    fn generated_text_is_counted_as_a_value_parse_would() {
        let reference = |event: &str| -> usize {
            let v: serde_json::Value =
                serde_json::from_str(event.strip_prefix("data: ").unwrap().trim_end()).unwrap();
            let mut n = 0;
            for c in v["choices"].as_array().unwrap() {
                for k in ["content", "reasoning_content"] {
                    n += c["delta"][k].as_str().map_or(0, str::len);
                }
                for call in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
                    n += call["function"]["arguments"].as_str().map_or(0, str::len);
                }
            }
            n
        };
        for event in [
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"caf\\u00e9 \\\"q\\\"\\n\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"hm\",\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n",
        ] {
            assert_eq!(generated_text_bytes(event.as_bytes()), reference(event), "{event}");
        }
        assert_eq!(generated_text_bytes(b"data: [DONE]\n\n"), 0);
    }
}

#[cfg(test)]
mod content_type_tests {
    use super::not_json;

    #[test]
    fn only_json_bodies_are_read() {
        for ok in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/vnd.api+json"),
            Some(""),
        ] {
            assert!(not_json(ok).is_none(), "{ok:?}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "json",
            "+json",
            "é+jsoné",
            "ééééé",
        ] {
            let e = not_json(Some(bad)).unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(e.status, 415);
        }
    }
}
