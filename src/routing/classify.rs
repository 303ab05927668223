//! Failure classification: which answers are retried, which cool a deployment down, which go to the context-window or content-policy fallbacks.

#[allow(unused_imports)]
use super::*;

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The provider answered with this HTTP status.
    Status(u16),
    /// No connection (refused, DNS, TLS, no healthy upstream).
    ConnectFailure,
    /// No answer (or no first byte, for streams) within the attempt's timeout.
    Timeout,
    /// The connection was reset before the response completed.
    Reset,
    /// A success status whose answer could not be read (empty, not JSON,
    /// not the provider's shape): the deployment's failure, as a 5xx is.
    Unreadable,
}

impl FailureKind {
    /// The `kind` label of `llm_gateway.failures_by_kind` (`http_503`,
    /// `connect`, `timeout`, `reset`, `unreadable`).
    pub fn label(self) -> String {
        match self {
            FailureKind::Status(s) => format!("http_{s}"),
            FailureKind::ConnectFailure => "connect".to_string(),
            FailureKind::Timeout => "timeout".to_string(),
            FailureKind::Reset => "reset".to_string(),
            FailureKind::Unreadable => "unreadable".to_string(),
        }
    }
}

impl FailureKind {
    /// Whether another deployment should be tried after this failure.
    pub fn is_retryable(self) -> bool {
        match self {
            FailureKind::Status(s) => is_retryable(s),
            FailureKind::ConnectFailure
            | FailureKind::Timeout
            | FailureKind::Reset
            | FailureKind::Unreadable => true,
        }
    }
}

/// The longest provider `Retry-After` honoured, seconds: a cooldown never
/// outlasts an hour on one answer's word.
pub const MAX_PROVIDER_WAIT_S: u64 = 3600;

/// A 429's or 503's `Retry-After` as whole seconds (rounded up; at most
/// [`MAX_PROVIDER_WAIT_S`]). Seconds only: an HTTP-date (rare from LLM
/// providers) is not read, and the deployment's own cooldown applies.
pub fn retry_after_s(status: u16, value: Option<String>) -> Option<u64> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    let value = value?;
    let (whole, fraction) = value.trim().split_once('.').unwrap_or((value.trim(), ""));
    let whole: u64 = whole.parse().ok()?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let up = u64::from(fraction.bytes().any(|b| b != b'0'));
    Some(whole.saturating_add(up).min(MAX_PROVIDER_WAIT_S))
}

/// Whether a provider status is worth another deployment: 5xx, 429 (rate
/// limited there, maybe not elsewhere) and 408. Other 4xx are the request's
/// fault and would fail the same everywhere.
pub fn is_retryable(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

/// What a failure does to a deployment's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CooldownEffect {
    /// Not the deployment's fault (a bad request): no effect.
    None,
    /// Counts toward `allowed_fails`.
    Count,
    /// Cools down at once.
    Immediate,
}

/// LiteLLM's `_is_cooldown_required` (`router_utils/cooldown_handlers.py`):
/// 429 cools down at once (as its v2 logic does for a multi-deployment
/// group); 401, 404, 408 and every 5xx count; other 4xx never do.
/// Unlike LiteLLM, connection failures, timeouts and resets count too: here
/// they are the upstream's failures, not the client library's.
pub(super) fn cooldown_effect(kind: FailureKind) -> CooldownEffect {
    match kind {
        FailureKind::Status(429) => CooldownEffect::Immediate,
        FailureKind::Status(401 | 404 | 408) => CooldownEffect::Count,
        FailureKind::Status(s) if s >= 500 => CooldownEffect::Count,
        FailureKind::Status(_) => CooldownEffect::None,
        FailureKind::ConnectFailure
        | FailureKind::Timeout
        | FailureKind::Reset
        | FailureKind::Unreadable => CooldownEffect::Count,
    }
}

/// The kind of provider error, for the special fallback lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The prompt is longer than the model's context window:
    /// `context_window_fallbacks` apply (a bigger model may take it).
    ContextWindow,
    /// The provider refused on content policy: `content_policy_fallbacks` apply.
    ContentPolicy,
    /// Anything else: the generic rules (retry if retryable, `fallbacks`).
    Other,
}

/// Phrases providers use for a prompt over the context window (lowercase):
/// OpenAI `code: context_length_exceeded` / "maximum context length";
/// Anthropic "prompt is too long" and "input length and `max_tokens` exceed
/// context limit"; vLLM and others "context length" / "context window".
pub(super) const CONTEXT_WINDOW_MARKERS: &[&str] = &[
    "context_length_exceeded",
    "prompt is too long",
    "maximum context length",
    "exceed context limit",
    "exceeds the context window",
    "context window",
    "context length",
    "input is too long",
    // Gemini: "The input token count (N) exceeds the maximum number of tokens allowed (M)."
    "exceeds the maximum number of tokens allowed",
];

/// Phrases for content-policy refusals (lowercase): OpenAI
/// `code: content_policy_violation`; Azure `code: content_filter` /
/// `ResponsibleAIPolicyViolation`; Anthropic "Output blocked by content
/// filtering policy".
pub(super) const CONTENT_POLICY_MARKERS: &[&str] = &[
    "content_policy_violation",
    "content_filter",
    "responsibleaipolicyviolation",
    "content management policy",
    "blocked by content filtering",
];

/// Classify a provider's native error answer (status and raw body) for the
/// special fallbacks. Also recognises an Anthropic refusal
/// (`"stop_reason": "refusal"`, which arrives with 200) as content policy.
/// Rate limits (429) and timeouts (408) are never context-window errors,
/// however their message reads.
pub fn classify_error(status: u16, body: &[u8]) -> ErrorClass {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(v) = &json {
        if v.get("stop_reason").and_then(Value::as_str) == Some("refusal") {
            return ErrorClass::ContentPolicy;
        }
    }
    if !(400..500).contains(&status) || status == 429 || status == 408 {
        return ErrorClass::Other;
    }
    // ASCII lowercase: the markers are ASCII, and Unicode case tables would
    // add 18 KB to the .wasm.
    let text = match &json {
        Some(v) => {
            let mut parts = Vec::new();
            collect_error_text(v, 0, &mut parts);
            parts.join(" ").to_ascii_lowercase()
        }
        None => String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase(),
    };
    if CONTENT_POLICY_MARKERS.iter().any(|m| text.contains(m)) {
        ErrorClass::ContentPolicy
    } else if CONTEXT_WINDOW_MARKERS.iter().any(|m| text.contains(m)) {
        ErrorClass::ContextWindow
    } else {
        ErrorClass::Other
    }
}

/// The `code`, `type` and `message` strings of an error body, however nested
/// (`error.innererror.code` in Azure, `error.message` in Anthropic and OpenAI).
pub(super) fn collect_error_text<'a>(v: &'a Value, depth: usize, out: &mut Vec<&'a str>) {
    if depth > 4 {
        return;
    }
    if let Value::Object(m) = v {
        for (k, v) in m {
            match v {
                Value::String(s)
                    if matches!(k.as_str(), "code" | "type" | "message" | "detail") =>
                {
                    out.push(s)
                }
                Value::Object(_) => collect_error_text(v, depth + 1, out),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod retry_after_tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_rounded_up_and_capped() {
        let read = |s: u16, v: &str| retry_after_s(s, Some(v.to_string()));
        assert_eq!(read(429, "7"), Some(7));
        assert_eq!(read(503, " 2.5 "), Some(3));
        assert_eq!(read(429, "3.000"), Some(3));
        assert_eq!(read(429, "999999"), Some(MAX_PROVIDER_WAIT_S));
        assert_eq!(
            read(500, "7"),
            None,
            "only 429 and 503 say when to come back"
        );
        for bad in [
            "",
            "-1",
            "soon",
            "Wed, 21 Oct 2026 07:28:00 GMT",
            "1.5x",
            "1e3",
        ] {
            assert_eq!(read(429, bad), None, "{bad}");
        }
        assert_eq!(retry_after_s(429, None), None);
    }
}
