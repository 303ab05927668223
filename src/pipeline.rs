//! The per-request decisions, as data.
//!
//! The filter gathers what the host knows (method, path, body bytes, status,
//! a random draw, the time), calls these functions and applies what they
//! return. Nothing here calls the host, so the whole request path is tested
//! natively.

use serde_json::json;

use crate::config::{Config, Deployment};
use crate::error::{upstream_status_kind, ErrorKind, GatewayError};
use crate::openai::{parse_chat_request, ParsedRequest, Usage};
use crate::provider::{translator, ResponseMeta, StreamTranslator, Translator, UpstreamRequest};
use crate::routing;

/// What the client asked for, from method and path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions` (or `/chat/completions`).
    ChatCompletions,
    /// `GET /v1/models` (or `/models`).
    Models,
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
        (_, "/chat/completions") | (_, "/models") => Endpoint::MethodNotAllowed,
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
            "{method} {path} is not served by this gateway; it serves POST /v1/chat/completions \
             and GET /v1/models"
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

/// One attempt of a chat request on one deployment.
pub struct Attempt<'a> {
    /// The deployment tried.
    pub deployment: &'a Deployment,
    /// The native request to send.
    pub upstream: UpstreamRequest,
    /// How the response must be handled.
    pub exchange: Exchange,
}

/// Translate the request for one deployment. Called again for each retry or
/// fallback: `parsed` is never changed, so every attempt starts from the
/// client's original request, in its own provider's format.
pub fn attempt<'a>(
    cfg: &Config,
    parsed: &ParsedRequest,
    deployment: &'a Deployment,
    id: &str,
    now: u64,
) -> Result<Attempt<'a>, GatewayError> {
    let t = translator(deployment.provider);
    let upstream = t.request(parsed, deployment, cfg.drop_params)?;
    let meta = ResponseMeta {
        id: id.to_string(),
        created: now,
        model: deployment.model.clone(),
        include_usage: parsed.chat.include_usage(),
    };
    Ok(Attempt {
        deployment,
        upstream,
        exchange: Exchange::new(t, meta, parsed.chat.is_stream()),
    })
}

/// A chat request resolved to its first attempt.
pub struct Plan<'a> {
    /// The parsed client request, kept for later attempts.
    pub parsed: ParsedRequest,
    /// The first attempt.
    pub first: Attempt<'a>,
}

/// Parse the body, resolve the alias, choose a deployment, translate.
///
/// `rand` drives weighted choice; `id` and `now` become the response's `id`
/// and `created`.
pub fn plan_chat<'a>(
    cfg: &'a Config,
    body: &[u8],
    rand: u64,
    id: String,
    now: u64,
) -> Result<Plan<'a>, GatewayError> {
    let parsed = parse_chat_request(body)?;
    let deployment = routing::choose(cfg, &parsed.chat.model, rand)?;
    let first = attempt(cfg, &parsed, deployment, &id, now)?;
    Ok(Plan { parsed, first })
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
    /// Forward as is.
    Passthrough,
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
        }
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Usage the provider reported (after the body is processed).
    pub fn usage(&self) -> Option<Usage> {
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
        if self.translator.passes_response_through() {
            self.mode = Mode::Passthrough;
            return HeaderEdits {
                status: None,
                content_type: None,
                remove_content_length: false,
                buffer_body: false,
            };
        }
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
    pub fn complete_body(&mut self, body: &[u8]) -> Option<(Vec<u8>, Option<u16>)> {
        match &self.mode {
            Mode::Translate => match self.translator.response(body, &self.meta) {
                Ok(t) => {
                    self.usage = t.usage;
                    Some((t.body, None))
                }
                Err(e) => Some((e.to_body(), Some(e.status))),
            },
            Mode::Error(status) => Some((self.translator.error(*status, body).to_body(), None)),
            _ => None,
        }
    }

    /// A stream chunk; returns the bytes to forward instead. At
    /// `end_of_stream` the closing events are appended.
    pub fn stream_chunk(&mut self, chunk: &[u8], end_of_stream: bool) -> Option<Vec<u8>> {
        let Mode::Stream(s) = &mut self.mode else {
            return None;
        };
        let mut out = Vec::with_capacity(chunk.len() + 64);
        s.feed(chunk, &mut out);
        if end_of_stream && !self.finished {
            self.finished = true;
            s.finish(&mut out);
        }
        Some(out)
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

    /// Whether the response is being streamed and translated chunk by chunk.
    pub fn is_streaming_response(&self) -> bool {
        matches!(self.mode, Mode::Stream(_))
    }
}

/// Deployments to try after `first` fails, in order: the other deployments
/// of the same alias, in config order.
pub fn retry_order<'a>(cfg: &'a Config, first: &Deployment) -> Vec<&'a Deployment> {
    cfg.deployments_for(&first.alias)
        .into_iter()
        .filter(|d| !std::ptr::eq(*d, first))
        .collect()
}

/// Whether an upstream status is worth another attempt: server errors, rate
/// limits and timeouts (including the router's own 503 for a refused
/// connection or a reset before headers, and 504 for a timeout); never a
/// client error, which another deployment would refuse the same way.
pub fn is_retryable(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

/// How the `x-llm-gateway-deployment` header names a deployment: alias and
/// provider model, never a key.
pub fn deployment_label(dep: &Deployment) -> String {
    format!("{}:{}", dep.alias, dep.litellm_model)
}

/// A short label for logs: never the key, only alias and provider model.
pub fn describe(dep: &Deployment) -> String {
    format!("{} -> {} ({})", dep.alias, dep.litellm_model, dep.cluster)
}

#[cfg(test)]
mod tests {
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
        assert_eq!(classify("POST", "/v1/embeddings"), Endpoint::Unknown);
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
        assert_eq!(plan.first.upstream.path, "/v1/chat/completions");
        assert!(plan
            .first
            .upstream
            .headers
            .contains(&("authorization".into(), "Bearer sk-up".into())));
        let body: serde_json::Value = serde_json::from_slice(&plan.first.upstream.body).unwrap();
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
        let h = plan.first.exchange.response_headers(529);
        assert_eq!(h.status, Some(503));
        assert!(h.buffer_body);
        let (body, _) = plan
            .first
            .exchange
            .complete_body(br#"{"error":{"message":"busy"}}"#)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["message"], "busy");
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
