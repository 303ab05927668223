//! Per-request HTTP context: gather, decide (pipeline), apply.

use std::rc::Rc;

use log::debug;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType};

use super::host;
use crate::config::Config;
use crate::error::GatewayError;
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

pub struct GatewayHttp {
    cfg: Rc<Config>,
    /// A local reply was sent: response callbacks see our own reply, leave it.
    replied: bool,
    exchange: Option<Exchange>,
    buffer_response: bool,
}

impl GatewayHttp {
    pub fn new(cfg: Rc<Config>) -> Self {
        GatewayHttp {
            cfg,
            replied: false,
            exchange: None,
            buffer_response: false,
        }
    }

    fn reply_error(&mut self, err: &GatewayError) -> Action {
        debug!("llm-gateway: refusing request: {err}");
        self.replied = true;
        host::send_error(err);
        Action::Pause
    }

    fn route_chat(&mut self, body: &[u8]) -> Result<(), GatewayError> {
        let rand = u64::from_le_bytes(host::random_bytes::<8>());
        let id_bytes = host::random_bytes::<12>();
        let id = format!("chatcmpl-{}", hex(&id_bytes));
        let plan = pipeline::plan_chat(&self.cfg, body, rand, id, host::now_unix())?;
        let up = &plan.upstream;
        for h in CLIENT_CREDENTIAL_HEADERS {
            host::remove_request_header(h);
        }
        // The provider must answer uncompressed: translation reads the bytes.
        host::remove_request_header("accept-encoding");
        host::set_request_header(":path", &up.path);
        host::set_request_header(":authority", &plan.deployment.api_base.authority);
        for (k, v) in &up.headers {
            host::set_request_header(k, v);
        }
        host::set_request_header("content-length", &up.body.len().to_string());
        host::set_request_header(&self.cfg.cluster_header, &plan.deployment.cluster);
        host::replace_body(BufferType::HttpRequestBody, body.len(), &up.body);
        host::clear_route_cache();
        debug!(
            "llm-gateway: routed to {}",
            pipeline::describe(plan.deployment)
        );
        self.exchange = Some(plan.exchange);
        Ok(())
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

impl Context for GatewayHttp {}

impl HttpContext for GatewayHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let method = host::request_header(":method").unwrap_or_default();
        let path = host::request_header(":path").unwrap_or_default();
        match pipeline::classify(&method, &path) {
            Endpoint::Models => {
                self.replied = true;
                let body = pipeline::models_body(&self.cfg, host::now_unix());
                host::send_json(200, &body, &[]);
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
        if self.replied {
            return Action::Continue;
        }
        let Some(exchange) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        let status = host::response_header(":status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(502);
        let edits = exchange.response_headers(status);
        if end_of_stream && edits.buffer_body {
            // No body will come: answer now with the translated (empty-body) result.
            let body = exchange
                .complete_body(b"")
                .map(|(b, _)| b)
                .unwrap_or_default();
            self.replied = true;
            host::send_json(edits.status.unwrap_or(status), &body, &[]);
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
