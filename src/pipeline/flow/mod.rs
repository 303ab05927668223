//! The request flow: one request's state and every decision about it, from
//! the client's headers to the access log, over the [`Host`] seam.
//!
//! Each proxy-wasm callback in `src/filter/` is one call here
//! (`flow.on_request_body(size, end_of_stream, &mut host) -> Action`); the
//! flow asks the host for what Envoy knows and tells it what to do.
//!
//! The first attempt travels through Envoy's router like any request, to the
//! cluster of the deployment the routing strategy put first. If its answer is
//! a retryable failure (5xx, 429, 408, or the router's own 503/504 for a
//! refused connection, a reset before headers, or a timeout) and nothing has
//! reached the client yet, the failed response is held and the next attempt of
//! the plan (another deployment of the alias, then the fallback aliases) is
//! made with `dispatch_http_call`, translated for its own provider; its
//! complete answer is translated back and sent as the reply.
//!
//! The parts: `client_headers` (what the client sent), `attempts` (route,
//! retry, fall back), [`reply`] (local replies). Budgets, metering and the
//! features to come act at the hook points of [`super::hooks`], on the
//! [`ExchangeRecord`].

mod answers;
mod attempts;
mod client_headers;
mod count_tokens;
mod local;
pub mod reply;

use std::collections::VecDeque;
use std::rc::Rc;

use log::debug;

use super::hooks::{Cx, Hooks};
use super::host::{Action, HeaderMap, Host, Span};
use super::record::ExchangeRecord;
use super::{Endpoint, Exchange};
use crate::accounting::metering::{self, CallerId};
use crate::api::error::GatewayError;
use crate::api::overrides::Overrides;
use crate::api::request::ClientRequest;
use crate::config::Config;
use crate::provider::Operation;
use crate::routing::{self, FailureKind};
use client_headers::ClientHeaders;

/// One planned attempt.
#[derive(Debug, Clone, Copy)]
struct Try {
    /// Index into `Config::deployments`.
    idx: usize,
    /// The deployment belongs to a fallback alias.
    fallback: bool,
    /// Planned although cooled down (`use_cooled_down_when_all_cooled`).
    cooled_down: bool,
    timeout_ms: u64,
}

/// One request's state, from its headers to its access-log line.
pub struct RequestFlow {
    cfg: Rc<Config>,
    /// What is known about the request, for the hooks.
    record: ExchangeRecord,
    /// The features acting at hook points (budgets, metering).
    hooks: Hooks,
    /// A local reply was sent: response callbacks see our own reply, leave it.
    replied: bool,
    /// A fleet-wide spend report's Redis read in the air, with its query.
    spend_read: Option<(u32, String)>,
    /// The current attempt's response half (translation, usage).
    exchange: Option<Exchange>,
    buffer_response: bool,
    /// The failed attempt's `Retry-After` (seconds, as the provider said):
    /// its cooldown lasts at least that long, and a 429 or 503 passed to the
    /// client from a retried attempt carries it.
    provider_wait_s: Option<u64>,
    /// The client's request, kept to translate later attempts.
    parsed: Option<ClientRequest>,
    overrides: Overrides,
    /// Attempts still to make, in order.
    remaining: VecDeque<Try>,
    /// A retry is in flight: hold the failed response.
    retrying: bool,
    /// Deployment whose in-flight count this request holds.
    in_flight: Option<usize>,
    attempt_started_ms: u64,
    first_byte_ms: Option<u64>,
    /// Context-window / content-policy fallbacks were already planned.
    error_fallbacks_planned: bool,
    last_error: Option<GatewayError>,
    /// Usage must be read from every answer.
    need_usage: bool,
    /// Waiting for a hook's out-of-band call (a fleet lease) before routing.
    waiting: bool,
    /// The client's request headers.
    client: ClientHeaders,
    /// The client's API: answers and errors leave in it.
    edge: super::ingress::Edge,
    /// The request as the client wrote it, when its API is not chat (for
    /// passthrough attempts), and the chat request's fingerprint before
    /// the hooks could rewrite it.
    native: Option<(crate::ingress::NativeRequest, u64)>,
    /// `POST /v1/messages/count_tokens`.
    count_tokens: bool,
}

impl RequestFlow {
    pub fn new(cfg: Rc<Config>) -> Self {
        RequestFlow {
            cfg,
            record: ExchangeRecord::default(),
            hooks: Hooks::default(),
            replied: false,
            spend_read: None,
            exchange: None,
            buffer_response: false,
            parsed: None,
            overrides: Overrides::default(),
            remaining: VecDeque::new(),
            retrying: false,
            in_flight: None,
            attempt_started_ms: 0,
            first_byte_ms: None,
            error_fallbacks_planned: false,
            last_error: None,
            provider_wait_s: None,
            need_usage: false,
            waiting: false,
            client: ClientHeaders::default(),
            edge: super::ingress::Edge::default(),
            native: None,
            count_tokens: false,
        }
    }

    /// The hooks and what they act on, borrowed apart from the flow's
    /// routing state.
    fn hook_cx<'a>(&'a mut self, host: &'a mut dyn Host) -> (&'a mut Hooks, Cx<'a>) {
        (
            &mut self.hooks,
            Cx {
                cfg: &self.cfg,
                record: &mut self.record,
                exchange: self.exchange.as_ref(),
                host,
            },
        )
    }

    /// The client's request headers: classify the endpoint, authenticate,
    /// answer the gateway's own endpoints, check the declared body size.
    pub fn on_request_headers(&mut self, end_of_stream: bool, host: &mut dyn Host) -> Action {
        let started = host.span_start();
        let action = self.request_headers(end_of_stream, host);
        host.span_stop(Span::RequestHeaders, started);
        action
    }

    /// The client's request body, `body_size` bytes buffered so far.
    pub fn on_request_body(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
        host: &mut dyn Host,
    ) -> Action {
        let started = host.span_start();
        let action = self.request_body(body_size, end_of_stream, host);
        host.span_stop(Span::RequestBody, started);
        action
    }

    /// The first attempt's response headers (through Envoy's router).
    pub fn on_response_headers(&mut self, end_of_stream: bool, host: &mut dyn Host) -> Action {
        let started = host.span_start();
        let action = self.response_headers(end_of_stream, host);
        host.span_stop(Span::ResponseHeaders, started);
        action
    }

    /// A chunk of the response body (`body_size` bytes; all of it when buffered).
    pub fn on_response_body(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
        host: &mut dyn Host,
    ) -> Action {
        let started = host.span_start();
        let action = self.response_body(body_size, end_of_stream, host);
        host.span_stop(Span::ResponseBody, started);
        action
    }

    /// An out-of-band call answered: a fleet lease, or a retried attempt.
    pub fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        host: &mut dyn Host,
    ) {
        if self.spend_read.as_ref().is_some_and(|(t, _)| *t == token) {
            self.spend_read_answered(num_headers, body_size, host);
            return;
        }
        if self
            .hooks
            .call_answered(token, num_headers, body_size, host)
        {
            if self.hooks.checking_answer() {
                self.answer_check_answered(host);
            } else {
                self.admission_answered(host);
            }
            return;
        }
        let (status, body) = host.call_response(num_headers, body_size);
        // No headers at all: the call failed to connect, was reset or timed out.
        let (status, kind) = match status {
            Some(s) => (s, FailureKind::Status(s)),
            None => (503, FailureKind::ConnectFailure),
        };
        self.first_byte_ms = Some(host.now_ms());
        if routing::is_retryable(status) {
            self.provider_wait_s =
                routing::retry_after_s(status, host.call_response_header("retry-after"));
            self.attempt_failed(kind, host);
            if self.dispatch_next(host) {
                return;
            }
            self.reply_whole(status, &body, host);
            return;
        }
        if status >= 400 {
            self.end_in_flight(host);
            if self.try_error_fallbacks(status, &body, host) {
                return;
            }
            self.reply_whole(status, &body, host);
            return;
        }
        let served = self.served_headers();
        let Some(ex) = self.exchange.as_mut() else {
            self.reply_whole(502, &body, host);
            return;
        };
        let w = ex.whole_response(status, &body);
        let native = ex.native_answer() && w.status < 400;
        self.attempt_succeeded(host);
        if w.status < 400 && self.hooks.checks_answers() {
            let (hooks, mut cx) = self.hook_cx(host);
            match hooks.answer_ready(&mut cx, w.body) {
                Ok(b) => self.send_checked_answer(&b, host),
                Err(step) => {
                    let _: Action = self.answer_step(step, host);
                }
            }
            return;
        }
        let mut served = served;
        served.extend(self.response_complete(host, Some((w.status, &w.body))));
        self.replied = true;
        let client = if native {
            body
        } else {
            self.for_client(w.status, w.content_type, w.body)
        };
        self.record.read_client_id(&client);
        reply::send_json_with(host, w.status, w.content_type, &client, &served);
    }

    /// The request is over, however it ended (the client gone, the upstream
    /// reset mid-stream, or any ending not seen above): release and settle.
    pub fn on_log(&mut self, host: &mut dyn Host) {
        let started = host.span_start();
        self.end_in_flight(host);
        let status = response_status(host).unwrap_or(0);
        let traceparent = self.client.traceparent.take();
        let (hooks, mut cx) = self.hook_cx(host);
        hooks.finished(&mut cx, status, traceparent.as_deref());
        host.span_stop(Span::Log, started);
    }

    fn request_headers(&mut self, end_of_stream: bool, host: &mut dyn Host) -> Action {
        self.client = ClientHeaders::from_pairs(host.request_headers());
        if self.cfg.traces.is_some() {
            self.record.started_ms = host.now_ms();
        }
        if self.client.has_local_reply_marker {
            host.remove_request_header(reply::LOCAL_REPLY_MARKER);
        }
        // A secret in the query (`/key/info?key=sk-...`) never reaches a log:
        // access logs read `x-envoy-original-path` or `:path`, and a request
        // the filter answers or routes needs neither as the client wrote it.
        self.client.log_path = client_headers::without_secrets(&self.client.path);
        if let Some(safe) = &self.client.log_path {
            host.set_request_header(":path", safe);
            host.set_request_header("x-envoy-original-path", safe);
        }
        let method = self.client.method.clone();
        let path = self.client.path.clone();
        let endpoint = super::classify(&method, &path);
        self.edge = super::ingress::Edge::new(match endpoint {
            Endpoint::Messages | Endpoint::CountTokens => crate::ingress::Ingress::Messages,
            Endpoint::Completions => crate::ingress::Ingress::Completions,
            _ => crate::ingress::Ingress::Chat,
        });
        self.record.ingress = self.edge.ingress;
        self.record.api_request = matches!(
            endpoint,
            Endpoint::ChatCompletions
                | Endpoint::Embeddings
                | Endpoint::Messages
                | Endpoint::Completions
                | Endpoint::CountTokens
        );
        if matches!(
            endpoint,
            Endpoint::Models
                | Endpoint::ModelInfo
                | Endpoint::KeyInfo
                | Endpoint::ChatCompletions
                | Endpoint::Embeddings
                | Endpoint::Messages
                | Endpoint::CountTokens
                | Endpoint::Completions
                | Endpoint::Spend(_)
        ) {
            if let Err(e) = self.authenticate(host) {
                return self.reply_error(&e, host);
            }
        }
        match endpoint {
            Endpoint::Models | Endpoint::ModelInfo | Endpoint::KeyInfo | Endpoint::Spend(_) => {
                self.gateway_endpoint(endpoint, &path, host)
            }
            Endpoint::Unknown => self.reply_error(&super::unknown_endpoint(&method, &path), host),
            Endpoint::MethodNotAllowed => {
                self.reply_error(&super::method_not_allowed(&method, &path), host)
            }
            Endpoint::ChatCompletions
            | Endpoint::Embeddings
            | Endpoint::Messages
            | Endpoint::CountTokens
            | Endpoint::Completions => {
                self.count_tokens = endpoint == Endpoint::CountTokens;
                if endpoint == Endpoint::Embeddings {
                    self.record.op = Operation::Embeddings;
                }
                let declared = self
                    .client
                    .content_length
                    .as_deref()
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if declared.is_some_and(|n| n > self.cfg.max_body_bytes) {
                    return self.reply_error(&super::body_too_large(self.cfg.max_body_bytes), host);
                }
                if let Some(e) = super::not_json(self.client.content_type.as_deref()) {
                    return self.reply_error(&e, host);
                }
                if end_of_stream {
                    return self.reply_error(
                        &GatewayError::bad_request(
                            "request body is empty; send a JSON chat completion request",
                        ),
                        host,
                    );
                }
                // Hold the headers until the body names the model (needs
                // `allow_on_headers_stop_iteration: true` in the plugin config).
                Action::Pause
            }
        }
    }

    /// Who is calling: a virtual key, the master key, a workload identity.
    fn authenticate(&mut self, host: &mut dyn Host) -> Result<(), GatewayError> {
        let authorization = self.client.authorization.take();
        let x_api_key = self.client.x_api_key.take();
        // The mTLS peer identity, for keys bound to workloads.
        // Istio exposes it as `source.principal`; plain Envoy as the peer
        // certificate's URI SAN (`connection.uri_san_peer_certificate`).
        let principal = if metering::uses_principals(&self.cfg) {
            [
                ["source", "principal"],
                ["connection", "uri_san_peer_certificate"],
            ]
            .into_iter()
            .find_map(|path| {
                host.property(&path)
                    .filter(|b| !b.is_empty())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
        } else {
            None
        };
        let started = host.span_start();
        let who = CallerId::authenticate(
            &self.cfg,
            authorization.as_deref(),
            x_api_key.as_deref(),
            principal.as_deref(),
        );
        host.span_stop(Span::Authenticate, started);
        self.record.caller = who?;
        Ok(())
    }

    fn request_body(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
        host: &mut dyn Host,
    ) -> Action {
        if self.replied {
            return Action::Pause;
        }
        if body_size > self.cfg.max_body_bytes {
            return self.reply_error(&super::body_too_large(self.cfg.max_body_bytes), host);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = host.request_body(body_size);
        match self.route_chat(body, host) {
            // Waiting for a fleet lease: resumed when it arrives (or answered
            // from the cache).
            Ok(()) if self.waiting || self.replied => Action::Pause,
            Ok(()) => Action::Continue,
            Err(e) => self.reply_error(&e, host),
        }
    }

    fn response_headers(&mut self, end_of_stream: bool, host: &mut dyn Host) -> Action {
        if self.replied || self.exchange.is_none() {
            return Action::Continue;
        }
        self.first_byte_ms = Some(host.now_ms());
        let status = response_status(host).unwrap_or(502);
        if routing::is_retryable(status) {
            self.provider_wait_s =
                routing::retry_after_s(status, host.response_header("retry-after"));
            self.attempt_failed(FailureKind::Status(status), host);
            if self.dispatch_next(host) {
                // Hold the failed answer; the next attempt's answer replaces it.
                self.retrying = true;
                return Action::Pause;
            }
        }
        let served = self.served_headers();
        let Some(exchange) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        let edits = exchange.response_headers(status);
        if status < 400 && !edits.buffer_body {
            // A stream is being forwarded: no other attempt can follow, so
            // the client's request (as large as its body) is not kept for the
            // life of the stream. (A whole answer keeps it until it is read:
            // an unreadable one is retried.)
            self.parsed = None;
        }
        if end_of_stream {
            // No body will come: answer now with what an empty body means (an
            // error for a success, the closing error event for a stream).
            let (status, content_type, body) = if let Some(out) = exchange.stream_chunk(b"", true) {
                (status, "text/event-stream", out)
            } else {
                let (body, new_status) = exchange.complete_body(b"").unwrap_or_default();
                (
                    new_status.or(edits.status).unwrap_or(status),
                    "application/json",
                    body,
                )
            };
            if status < 400 || exchange.answer_unreadable() {
                self.attempt_failed(FailureKind::Unreadable, host);
            } else {
                self.end_in_flight(host);
            }
            self.replied = true;
            let body = self.for_client(status, content_type, body);
            self.record.read_client_id(&body);
            reply::send_json_with(host, status, content_type, &body, &served);
            return Action::Pause;
        }
        let status_text = edits.status.map(|s| s.to_string());
        let mut set: Vec<(&str, &str)> = Vec::with_capacity(served.len() + 2);
        if let Some(s) = &status_text {
            set.push((":status", s));
        }
        if let Some(ct) = edits.content_type {
            set.push(("content-type", ct));
        }
        set.extend(served.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let remove: &[&str] = if edits.remove_content_length {
            &["content-length"]
        } else {
            &[]
        };
        host.edit_headers(HeaderMap::Response, remove, &set);
        self.buffer_response = edits.buffer_body;
        if end_of_stream && status < 400 {
            self.attempt_succeeded(host);
        }
        if edits.buffer_body {
            // Held until the body is translated, so the status can still change.
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn response_body(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
        host: &mut dyn Host,
    ) -> Action {
        if self.replied {
            return Action::Continue;
        }
        if self.retrying {
            return Action::Pause;
        }
        if self.exchange.is_none() {
            return Action::Continue;
        }
        if self.buffer_response {
            if body_size > self.cfg.max_response_bytes {
                // Answered before Envoy's own buffer limit would (a plain 500).
                self.buffer_response = false;
                self.end_in_flight(host);
                return self
                    .reply_error(&super::answer_too_large(self.cfg.max_response_bytes), host);
            }
            if !end_of_stream {
                return Action::Pause;
            }
            return self.buffered_response_body(body_size, host);
        }
        let Some(exchange) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        if exchange.is_streaming_response() {
            let chunk = if body_size > 0 {
                host.response_body(body_size)
            } else {
                Vec::new()
            };
            let native = exchange.native_answer();
            let sent = match exchange.stream_chunk(&chunk, end_of_stream) {
                Some(out) => {
                    if out != chunk && !native && self.edge.ingress == crate::ingress::Ingress::Chat
                    {
                        host.replace_response_body(body_size, &out);
                    }
                    out
                }
                None => chunk.clone(),
            };
            if !native {
                // The client's API: the OpenAI chunks re-encoded.
                if let Some(client) = self.edge.chunk(&sent, end_of_stream) {
                    self.record.read_client_id(&client);
                    host.replace_response_body(body_size, &client);
                }
            } else {
                self.record.read_client_id(&chunk);
            }
            if native && end_of_stream {
                // A passthrough cut short: the client is told, in its API.
                if let Some(tail) = self.edge.ingress.native_stream_end(&sent, &chunk) {
                    let mut client = chunk;
                    client.extend_from_slice(&tail);
                    host.replace_response_body(body_size, &client);
                }
            }
            let (hooks, mut cx) = self.hook_cx(host);
            hooks.chunk(&mut cx, &sent);
            if !end_of_stream && self.exchange.as_ref().is_some_and(Exchange::answered) {
                // The client has its whole answer (and may hang up before
                // the provider's end of stream is delivered).
                self.stream_completed(host);
            }
        }
        if end_of_stream {
            self.stream_completed(host);
        }
        Action::Continue
    }

    /// A forwarded stream's answer is complete: at its `[DONE]` or at the
    /// provider's end of stream, whichever comes first (once).
    fn stream_completed(&mut self, host: &mut dyn Host) {
        if self.record.outcome == super::record::Outcome::Completed {
            return;
        }
        self.attempt_succeeded(host);
        self.response_complete(host, None);
    }

    /// The whole (buffered) answer of the first attempt: translate it, or
    /// try the error fallbacks.
    fn buffered_response_body(&mut self, body_size: usize, host: &mut dyn Host) -> Action {
        let body = host.response_body(body_size);
        let status = response_status(host);
        let upstream_status = self.exchange.as_ref().and_then(|e| e.error_status());
        if let Some(up) = upstream_status {
            self.end_in_flight(host);
            if self.try_error_fallbacks(up, &body, host) {
                self.retrying = true;
                return Action::Pause;
            }
        }
        let Some(exchange) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        // `checked`: the answer was read as a success (translated, or
        // OpenAI-shaped and left as it came: `None`), so the answer's
        // guardrail services see it.
        let mut checked = true;
        let mut out = None;
        let mut answer_status = status.unwrap_or(200);
        if let Some((translated, new_status)) = exchange.complete_body(&body) {
            answer_status = new_status.unwrap_or(answer_status);
            if let Some(s) = new_status.filter(|s| Some(*s) != status) {
                host.set_response_header(":status", &s.to_string());
            }
            checked = new_status.is_none();
            out = Some(translated);
        }
        if self
            .exchange
            .as_ref()
            .is_some_and(Exchange::answer_unreadable)
        {
            // The deployment's failure, retried on the next attempt as a 5xx
            // would be (LiteLLM retries an unreadable answer too).
            self.attempt_failed(FailureKind::Unreadable, host);
            if self.dispatch_next(host) {
                self.retrying = true;
                return Action::Pause;
            }
        } else if upstream_status.is_none() {
            self.attempt_succeeded(host);
        }
        if checked && upstream_status.is_none() && self.hooks.checks_answers() {
            // A guardrail service reads the answer first; it goes out as our
            // own reply when the check is done.
            let answer = out.unwrap_or(body);
            let (hooks, mut cx) = self.hook_cx(host);
            return match hooks.answer_ready(&mut cx, answer) {
                Ok(b) => {
                    self.send_checked_answer(&b, host);
                    Action::Pause
                }
                Err(step) => self.answer_step(step, host),
            };
        }
        let native = self
            .exchange
            .as_ref()
            .is_some_and(|e| e.native_answer() && upstream_status.is_none() && checked);
        let complete = match &out {
            Some(out) => self.response_complete(host, Some((answer_status, out))),
            None => self.response_complete(host, Some((answer_status, &body))),
        };
        // The client's API (the provider's own bytes for a passthrough).
        let openai = out.as_deref().unwrap_or(&body);
        let client = if native {
            None
        } else {
            self.edge.whole(answer_status, "application/json", openai)
        };
        self.record.read_client_id(
            client
                .as_deref()
                .unwrap_or(if native { &body } else { &[] }),
        );
        match (client, out) {
            (Some(c), _) => host.replace_response_body(body_size, &c),
            (None, Some(out)) if !native => host.replace_response_body(body_size, &out),
            _ => {}
        }
        // The headers are still held: the cost can go in them.
        if !complete.is_empty() {
            let set: Vec<(&str, &str)> = complete
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            host.edit_headers(HeaderMap::Response, &[], &set);
        }
        Action::Continue
    }

    fn reply_error(&mut self, err: &GatewayError, host: &mut dyn Host) -> Action {
        debug!(
            "llm-gateway: refusing request from {}: {err}",
            self.record.caller.label()
        );
        self.replied = true;
        let mut headers = self.served_headers();
        if let Some(s) = err.retry_after.or(self.record.retry_after) {
            headers.push(("retry-after".to_string(), s.to_string()));
        }
        reply::send_error(host, err, self.edge.ingress, &headers);
        let (hooks, mut cx) = self.hook_cx(host);
        hooks.failed(&mut cx);
        Action::Pause
    }

    /// The answer is complete: settle, store it in the cache, and the
    /// headers saying what it cost.
    fn response_complete(
        &mut self,
        host: &mut dyn Host,
        whole: Option<(u16, &[u8])>,
    ) -> Vec<(String, String)> {
        let (hooks, mut cx) = self.hook_cx(host);
        hooks.response_complete(&mut cx, whole)
    }
}

/// The response's `:status`.
fn response_status(host: &dyn Host) -> Option<u16> {
    host.response_header(":status")
        .and_then(|s| s.parse::<u16>().ok())
}
