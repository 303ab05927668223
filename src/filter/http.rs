//! Per-request HTTP context: gather, decide (pipeline), apply.
//!
//! The first attempt travels through Envoy's router like any request. If its
//! answer is a retryable failure (5xx, 429, 408, or the router's own 503/504
//! for a refused connection, a reset before headers, or a timeout) and
//! nothing has reached the client yet, the failed response is held and the
//! next deployment is tried with `dispatch_http_call`; its complete answer is
//! translated and sent as the reply.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use log::{debug, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::host;
use crate::config::Config;
use crate::error::{ErrorKind, GatewayError};
use crate::openai::ParsedRequest;
use crate::pipeline::{self, Endpoint, Exchange};

/// Request headers a client may send that must never reach a provider: the
/// client's own credentials (the gateway holds the provider's), and OpenAI
/// account headers that would not match the gateway's key.
const CLIENT_CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "openai-organization",
    "openai-project",
];

/// Timeout of a dispatched retry attempt when the deployment names none.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(600);

pub struct GatewayHttp {
    cfg: Rc<Config>,
    /// A local reply was sent: response callbacks see our own reply, leave it.
    replied: bool,
    exchange: Option<Exchange>,
    buffer_response: bool,
    /// The client's request, kept to translate later attempts.
    parsed: Option<ParsedRequest>,
    id: String,
    created: u64,
    /// Deployment indices still to try, in order.
    remaining: VecDeque<usize>,
    /// Index of the deployment of the current attempt.
    current: usize,
    attempts: u32,
    /// A retry is in flight: hold the failed response.
    retrying: bool,
    last_error: Option<GatewayError>,
}

impl GatewayHttp {
    pub fn new(cfg: Rc<Config>) -> Self {
        GatewayHttp {
            cfg,
            replied: false,
            exchange: None,
            buffer_response: false,
            parsed: None,
            id: String::new(),
            created: 0,
            remaining: VecDeque::new(),
            current: 0,
            attempts: 0,
            retrying: false,
            last_error: None,
        }
    }

    fn reply_error(&mut self, err: &GatewayError) -> Action {
        debug!("llm-gateway: refusing request: {err}");
        self.replied = true;
        host::send_error(err, &self.served_headers());
        Action::Pause
    }

    fn index_of(&self, dep: &crate::config::Deployment) -> usize {
        self.cfg
            .deployments
            .iter()
            .position(|d| std::ptr::eq(d, dep))
            .unwrap_or(0)
    }

    /// Headers that tell the client what happened.
    fn served_headers(&self) -> Vec<(String, String)> {
        if self.attempts == 0 {
            return Vec::new();
        }
        let mut h = vec![(
            "x-llm-gateway-attempts".to_string(),
            self.attempts.to_string(),
        )];
        if let Some(d) = self.cfg.deployments.get(self.current) {
            h.push((
                "x-llm-gateway-deployment".to_string(),
                pipeline::deployment_label(d),
            ));
        }
        h
    }

    fn route_chat(&mut self, body: &[u8]) -> Result<(), GatewayError> {
        let cfg = Rc::clone(&self.cfg);
        let rand = u64::from_le_bytes(host::random_bytes::<8>());
        self.id = format!("chatcmpl-{}", hex(&host::random_bytes::<12>()));
        self.created = host::now_unix();
        let plan = pipeline::plan_chat(&cfg, body, rand, self.id.clone(), self.created)?;
        let first = plan.first;
        self.current = self.index_of(first.deployment);
        self.remaining = pipeline::retry_order(&cfg, first.deployment)
            .into_iter()
            .map(|d| self.index_of(d))
            .collect();
        self.attempts = 1;
        let up = &first.upstream;
        for h in CLIENT_CREDENTIAL_HEADERS {
            host::remove_request_header(h);
        }
        // The provider must answer uncompressed: translation reads the bytes.
        host::remove_request_header("accept-encoding");
        host::set_request_header(":path", &up.path);
        host::set_request_header(":authority", &first.deployment.api_base.authority);
        for (k, v) in &up.headers {
            host::set_request_header(k, v);
        }
        host::set_request_header("content-length", &up.body.len().to_string());
        host::set_request_header(&cfg.cluster_header, &first.deployment.cluster);
        host::replace_body(BufferType::HttpRequestBody, body.len(), &up.body);
        host::clear_route_cache();
        debug!(
            "llm-gateway: routed to {}",
            pipeline::describe(first.deployment)
        );
        self.exchange = Some(first.exchange);
        self.parsed = Some(plan.parsed);
        Ok(())
    }

    /// Try the next deployment with an out-of-band call. Returns false when
    /// there is none left (or none could be dispatched).
    fn dispatch_next(&mut self) -> bool {
        let cfg = Rc::clone(&self.cfg);
        let Some(parsed) = self.parsed.as_ref() else {
            return false;
        };
        while let Some(idx) = self.remaining.pop_front() {
            let Some(dep) = cfg.deployments.get(idx) else {
                continue;
            };
            let attempt = match pipeline::attempt(&cfg, parsed, dep, &self.id, self.created) {
                Ok(a) => a,
                Err(e) => {
                    // This deployment cannot take the request (e.g. a parameter its
                    // provider lacks): remember why, try the next one.
                    self.last_error = Some(e);
                    continue;
                }
            };
            let up = &attempt.upstream;
            let mut headers: Vec<(&str, &str)> = vec![
                (":method", "POST"),
                (":path", &up.path),
                (":authority", &dep.api_base.authority),
            ];
            for (k, v) in &up.headers {
                headers.push((k.as_str(), v.as_str()));
            }
            match hostcalls::dispatch_http_call(
                &dep.cluster,
                headers,
                Some(&up.body),
                vec![],
                DEFAULT_ATTEMPT_TIMEOUT,
            ) {
                Ok(_) => {
                    self.attempts += 1;
                    self.current = idx;
                    self.exchange = Some(attempt.exchange);
                    debug!("llm-gateway: retrying on {}", pipeline::describe(dep));
                    return true;
                }
                Err(s) => {
                    warn!(
                        "llm-gateway: cannot dispatch to cluster {}: {s:?}",
                        dep.cluster
                    );
                }
            }
        }
        false
    }

    /// Reply with the best error we have after the last attempt failed.
    fn reply_exhausted(&mut self, status: u16, body: &[u8]) {
        let err = match self.exchange.as_mut() {
            Some(ex) if status >= 400 => {
                let w = ex.whole_response(status, body);
                self.replied = true;
                host::send_json_with(w.status, w.content_type, &w.body, &self.served_headers());
                return;
            }
            _ => self.last_error.clone().unwrap_or_else(|| {
                GatewayError::new(
                    502,
                    ErrorKind::Upstream,
                    "no deployment could serve the request",
                )
            }),
        };
        self.replied = true;
        host::send_error(&err, &self.served_headers());
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

impl Context for GatewayHttp {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let headers = if num_headers > 0 {
            hostcalls::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default()
        } else {
            Vec::new()
        };
        // No headers at all: the call failed to connect or was reset.
        let status = headers
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.parse::<u16>().ok())
            .unwrap_or(503);
        let body = if body_size > 0 {
            host::body(BufferType::HttpCallResponseBody, body_size)
        } else {
            Vec::new()
        };
        if pipeline::is_retryable(status) && self.dispatch_next() {
            return;
        }
        if status >= 400 {
            self.reply_exhausted(status, &body);
            return;
        }
        let Some(ex) = self.exchange.as_mut() else {
            self.reply_exhausted(502, &body);
            return;
        };
        let w = ex.whole_response(status, &body);
        self.replied = true;
        host::send_json_with(w.status, w.content_type, &w.body, &self.served_headers());
    }
}

impl HttpContext for GatewayHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        host::remove_request_header(host::LOCAL_REPLY_MARKER);
        let method = host::request_header(":method").unwrap_or_default();
        let path = host::request_header(":path").unwrap_or_default();
        match pipeline::classify(&method, &path) {
            Endpoint::Models => {
                self.replied = true;
                let body = pipeline::models_body(&self.cfg, host::now_unix());
                host::send_json_with(200, "application/json", &body, &[]);
                Action::Pause
            }
            Endpoint::Unknown => self.reply_error(&pipeline::unknown_endpoint(&method, &path)),
            Endpoint::MethodNotAllowed => {
                self.reply_error(&pipeline::method_not_allowed(&method, &path))
            }
            Endpoint::ChatCompletions => {
                let declared = host::request_header("content-length")
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if declared.is_some_and(|n| n > self.cfg.max_body_bytes) {
                    return self.reply_error(&pipeline::body_too_large(self.cfg.max_body_bytes));
                }
                if end_of_stream {
                    return self.reply_error(&GatewayError::bad_request(
                        "request body is empty; send a JSON chat completion request",
                    ));
                }
                // Hold the headers until the body names the model (needs
                // `allow_on_headers_stop_iteration: true` in the plugin config).
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Pause;
        }
        if body_size > self.cfg.max_body_bytes {
            return self.reply_error(&pipeline::body_too_large(self.cfg.max_body_bytes));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = host::body(BufferType::HttpRequestBody, body_size);
        match self.route_chat(&body) {
            Ok(()) => Action::Continue,
            Err(e) => self.reply_error(&e),
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.replied || self.exchange.is_none() {
            return Action::Continue;
        }
        let status = host::response_header(":status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(502);
        if pipeline::is_retryable(status) && self.dispatch_next() {
            // Hold the failed answer; the retry's answer replaces it.
            self.retrying = true;
            return Action::Pause;
        }
        let served = self.served_headers();
        let Some(exchange) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        let edits = exchange.response_headers(status);
        if end_of_stream && edits.buffer_body {
            // No body will come: answer now with the translated (empty-body) result.
            let body = exchange
                .complete_body(b"")
                .map(|(b, _)| b)
                .unwrap_or_default();
            self.replied = true;
            host::send_json_with(
                edits.status.unwrap_or(status),
                "application/json",
                &body,
                &served,
            );
            return Action::Pause;
        }
        if let Some(s) = edits.status {
            host::set_response_header(":status", &s.to_string());
        }
        if let Some(ct) = edits.content_type {
            host::set_response_header("content-type", ct);
        }
        if edits.remove_content_length {
            host::remove_response_header("content-length");
        }
        for (k, v) in &served {
            host::set_response_header(k, v);
        }
        self.buffer_response = edits.buffer_body;
        if edits.buffer_body {
            // Held until the body is translated, so the status can still change.
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        if self.retrying {
            return Action::Pause;
        }
        let Some(exchange) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        if self.buffer_response {
            if !end_of_stream {
                return Action::Pause;
            }
            let body = host::body(BufferType::HttpResponseBody, body_size);
            if let Some((out, status)) = exchange.complete_body(&body) {
                if let Some(s) = status {
                    host::set_response_header(":status", &s.to_string());
                }
                host::replace_body(BufferType::HttpResponseBody, body_size, &out);
            }
            return Action::Continue;
        }
        if exchange.is_streaming_response() {
            let chunk = if body_size > 0 {
                host::body(BufferType::HttpResponseBody, body_size)
            } else {
                Vec::new()
            };
            if let Some(out) = exchange.stream_chunk(&chunk, end_of_stream) {
                if out != chunk {
                    host::replace_body(BufferType::HttpResponseBody, body_size, &out);
                }
            }
        }
        Action::Continue
    }
}
