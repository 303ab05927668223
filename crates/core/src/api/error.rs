//! The one error type every refusal becomes, and its OpenAI wire shape.
//!
//! Clients speak the OpenAI API, so whatever goes wrong (a bad body, an unknown
//! model, a provider's own error format) reaches them as
//! `{"error": {"message", "type", "param", "code"}}` with a fitting HTTP status.
//! Provider errors are mapped here, never passed through raw.

use serde_json::{json, Value};

/// OpenAI's `error.type` values, plus the gateway's upstream ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or a field is wrong.
    InvalidRequest,
    /// 401: missing or unknown credentials.
    Authentication,
    /// 403: the credentials may not use this model.
    Permission,
    /// 404: unknown model alias or endpoint.
    NotFound,
    /// 413: request body over the configured limit.
    TooLarge,
    /// 429: rate limited (by the gateway or the provider).
    RateLimit,
    /// 429 with `code: insufficient_quota`: a budget is spent.
    InsufficientQuota,
    /// 5xx from the provider or no upstream answer.
    Upstream,
    /// 503: the provider is overloaded (Anthropic 529) or unavailable.
    Unavailable,
    /// 504: the provider did not answer in time.
    Timeout,
    /// 500: the gateway itself failed (a translation it could not make).
    Internal,
}

impl ErrorKind {
    /// The OpenAI `error.type` string for this kind.
    pub fn type_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::TooLarge => {
                "invalid_request_error"
            }
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::InsufficientQuota => "insufficient_quota",
            ErrorKind::Upstream | ErrorKind::Unavailable | ErrorKind::Timeout => "api_error",
            ErrorKind::Internal => "server_error",
        }
    }
}

/// A refusal or failure, ready to become an OpenAI error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    /// HTTP status the client receives.
    pub status: u16,
    /// Category; decides `error.type`.
    pub kind: ErrorKind,
    /// Human-readable reason. Never contains a secret.
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `insufficient_quota` ...).
    pub code: Option<String>,
    /// Seconds the client should wait before trying again (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl GatewayError {
    /// A new error with no `param` and no `code`.
    pub fn new(status: u16, kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// Tell the client when to try again (the reply's `Retry-After`).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 about a specific request field.
    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        GatewayError::new(400, ErrorKind::InvalidRequest, message).with_param(param)
    }

    /// 400 without a field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        GatewayError::new(400, ErrorKind::InvalidRequest, message)
    }

    /// Attach the offending request field.
    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    /// Attach a machine-readable code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    /// The `{"error": {...}}` object.
    pub fn to_value(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind.type_str(),
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// The error body as bytes, for a local reply or a replaced upstream body.
    /// Written directly (byte for byte what serialising [`to_value`] gives):
    /// refusals are the cheap path and should stay cheap.
    ///
    /// [`to_value`]: GatewayError::to_value
    pub fn to_body(&self) -> Vec<u8> {
        use crate::codec::json_out::str as string;
        let opt = |out: &mut Vec<u8>, v: &Option<String>| match v {
            Some(s) => string(out, s),
            None => out.extend_from_slice(b"null"),
        };
        let mut out = Vec::with_capacity(self.message.len() + 96);
        out.extend_from_slice(br#"{"error":{"code":"#);
        opt(&mut out, &self.code);
        out.extend_from_slice(br#","message":"#);
        string(&mut out, &self.message);
        out.extend_from_slice(br#","param":"#);
        opt(&mut out, &self.param);
        out.extend_from_slice(br#","type":"#);
        string(&mut out, self.kind.type_str());
        out.extend_from_slice(b"}}");
        out
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            self.kind.type_str(),
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}

/// The status and kind a provider's HTTP error status becomes, shared by all
/// translators so that the table in the README holds for every provider.
///
/// 529 (Anthropic "overloaded") becomes 503, as OpenAI clients retry 503;
/// other statuses keep their meaning.
pub fn upstream_status_kind(status: u16) -> (u16, ErrorKind) {
    match status {
        400 | 422 => (400, ErrorKind::InvalidRequest),
        401 => (401, ErrorKind::Authentication),
        403 => (403, ErrorKind::Permission),
        404 => (404, ErrorKind::NotFound),
        408 => (504, ErrorKind::Timeout),
        413 => (413, ErrorKind::TooLarge),
        429 => (429, ErrorKind::RateLimit),
        500 => (500, ErrorKind::Upstream),
        502 => (502, ErrorKind::Upstream),
        503 | 529 => (503, ErrorKind::Unavailable),
        504 => (504, ErrorKind::Timeout),
        s if (400..500).contains(&s) => (s, ErrorKind::InvalidRequest),
        _ => (502, ErrorKind::Upstream),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_openai_shape() {
        let e = GatewayError::bad_param("model", "missing").with_code("missing_field");
        let v = e.to_value();
        assert_eq!(v["error"]["message"], "missing");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["code"], "missing_field");
    }

    #[test]
    fn body_is_the_serialised_value() {
        for e in [
            GatewayError::bad_param("messages[0]", "bad \"quote\" \u{1}").with_code("x"),
            GatewayError::new(429, ErrorKind::InsufficientQuota, "Budget exceeded: $0.01"),
        ] {
            assert_eq!(e.to_body(), e.to_value().to_string().into_bytes());
        }
    }

    #[test]
    fn overloaded_becomes_503() {
        assert_eq!(upstream_status_kind(529), (503, ErrorKind::Unavailable));
        assert_eq!(upstream_status_kind(599).0, 502);
    }

    #[test]
    fn error_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<GatewayError>();
    }
}
