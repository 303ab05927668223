//! Local replies: the flow answers the client itself.

use super::super::host::Host;
use crate::api::error::{ErrorKind, GatewayError};

/// Request header set just before the flow's own local replies. It marks the
/// reply as the gateway's own, so the listener's `local_reply_config` (which
/// rewrites Envoy's upstream-failure replies) leaves it alone even when an
/// earlier attempt set an upstream failure flag. A client's copy is removed.
pub const LOCAL_REPLY_MARKER: &str = "x-llm-gateway-local-reply";

/// Answer the client with an error in its API's shape (OpenAI's, or
/// Anthropic's on `/v1/messages`).
pub fn send_error(
    host: &mut dyn Host,
    err: &GatewayError,
    ingress: crate::ingress::Ingress,
    extra: &[(String, String)],
) {
    let body = ingress.error_body(err);
    send_json_with(host, err.status, "application/json", &body, extra);
}

/// Answer the client directly (a local reply replaces any upstream response
/// not yet sent).
pub fn send_json_with(
    host: &mut dyn Host,
    status: u16,
    content_type: &str,
    body: &[u8],
    extra: &[(String, String)],
) {
    // Envoy may refuse it once a provider's answer is under way (a reply
    // that replaces a good answer has no upstream failure flag to be
    // rewritten for); the filter logs that refusal quietly.
    host.set_request_header(LOCAL_REPLY_MARKER, "1");
    let mut headers = vec![("content-type", content_type)];
    headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    host.send_local_reply(status, &headers, body);
}

impl super::RequestFlow {
    /// Reply with a translated whole answer.
    pub(super) fn reply_whole(&mut self, status: u16, body: &[u8], host: &mut dyn Host) {
        let served = self.served_headers();
        let native;
        let reply = match self.exchange.as_mut() {
            Some(ex) => {
                native = ex.native_answer();
                ex.whole_response(status, body)
            }
            None => {
                let err = self.last_error.clone().unwrap_or_else(|| {
                    GatewayError::new(
                        502,
                        ErrorKind::Upstream,
                        "no deployment could serve the request",
                    )
                });
                self.replied = true;
                send_error(host, &err, self.edge.ingress, &served);
                let (hooks, mut cx) = self.hook_cx(host);
                hooks.failed(&mut cx);
                return;
            }
        };
        let mut served = served;
        served.extend(self.response_complete(host, Some((reply.status, &reply.body))));
        if let Some(s) = self.provider_wait_s.filter(|_| matches!(status, 429 | 503)) {
            served.push(("retry-after".to_string(), s.to_string()));
        }
        self.replied = true;
        let client = if native && reply.status < 400 {
            body.to_vec()
        } else {
            self.for_client(reply.status, reply.content_type, reply.body)
        };
        self.record.read_client_id(&client);
        send_json_with(host, reply.status, reply.content_type, &client, &served);
    }
}
