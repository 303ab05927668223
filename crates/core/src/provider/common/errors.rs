//! Errors every translator words the same way: the 400 for a parameter a
//! provider cannot take, the 502 for an answer the gateway cannot read, the
//! error event that ends a broken stream, and the excerpt of a body quoted
//! in a message.

use crate::api::error::{ErrorKind, GatewayError};

/// The 400 for parameter `param` that `provider` (serving `model`) cannot
/// take. `what` says what is refused: `parameter`, `unknown parameter`,
/// `value false of parameter`, ... The message names the way out
/// (`drop_params`), as LiteLLM's `UnsupportedParamsError` does.
pub fn unsupported_param(provider: &str, model: &str, param: &str, what: &str) -> GatewayError {
    GatewayError::bad_param(
        param,
        format!(
            "{what} `{param}` is not supported by provider {provider} (model {model}); remove it, \
             or set `litellm_settings.drop_params: true` to drop unsupported parameters"
        ),
    )
    .with_code("unsupported_parameter")
}

/// The OpenAI SSE error event a stream ends with when something broke after
/// bytes reached the client (OpenAI's own streams do the same).
pub fn stream_error_event(err: &GatewayError, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&err.to_body());
    out.extend_from_slice(b"\n\n");
}

/// A 502 for an answer from `provider` the gateway cannot read.
pub fn invalid_response(provider: &str, detail: impl std::fmt::Display) -> GatewayError {
    GatewayError::new(
        502,
        ErrorKind::Upstream,
        format!("{provider} returned a response the gateway could not read: {detail}"),
    )
    .with_code("upstream_invalid_response")
}

/// At most 300 characters of a non-JSON error body, for the message.
pub fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}
