//! The client's request headers the flow reads, gathered in one pass.

use super::super::OVERRIDE_HEADERS;
use super::reply::LOCAL_REPLY_MARKER;

/// Request headers a client may send that must never reach a provider: the
/// client's own credentials (the gateway holds the provider's), and OpenAI
/// account headers that would not match the gateway's key.
const CLIENT_CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "x-litellm-api-key",
    "openai-organization",
    "openai-project",
    "x-goog-api-key",
    "cookie",
    "proxy-authorization",
];

/// Query parameters whose values are secrets (LiteLLM's `/key/info?key=`,
/// tokens some clients put in URLs): never written to a log.
const SECRET_QUERY_PARAMS: &[&str] = &[
    "key",
    "api_key",
    "api-key",
    "apikey",
    "token",
    "access_token",
    "secret",
    "password",
];

/// `path` with the values of secret query parameters replaced by
/// `REDACTED`, when it has any: what logs may show of it.
pub(super) fn without_secrets(path: &str) -> Option<String> {
    let (base, query) = path.split_once('?')?;
    let secret = |name: &str| {
        SECRET_QUERY_PARAMS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(name))
    };
    let mut out = String::with_capacity(path.len());
    out.push_str(base);
    let mut redacted = false;
    for (i, p) in query.split('&').enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        match p.split_once('=') {
            Some((name, _)) if secret(name) => {
                out.push_str(name);
                out.push_str("=REDACTED");
                redacted = true;
            }
            _ => out.push_str(p),
        }
    }
    redacted.then_some(out)
}

/// The client's request headers the flow reads, from one host call (instead
/// of one call per header), and the names it must strip that are actually
/// present (so absent ones cost no `remove` call).
#[derive(Debug, Default)]
pub(super) struct ClientHeaders {
    pub method: String,
    pub path: String,
    /// [`without_secrets`] of `path`, when it differs: the path logs show.
    pub log_path: Option<String>,
    pub authorization: Option<String>,
    pub x_api_key: Option<String>,
    pub content_length: Option<String>,
    pub content_type: Option<String>,
    /// `cache-control`: the response cache's per-request controls.
    pub cache_control: Option<String>,
    /// W3C `traceparent` (the span the gateway's joins).
    pub traceparent: Option<String>,
    /// `anthropic-version` and `anthropic-beta`, for a Messages passthrough.
    pub anthropic: Vec<(String, String)>,
    /// `OVERRIDE_HEADERS` present, with their values.
    pub overrides: Vec<(&'static str, String)>,
    /// Present headers to remove before the request goes upstream: client
    /// credentials, `accept-encoding`, the routing overrides.
    pub strip: Vec<&'static str>,
    /// The flow's local-reply marker came from the client.
    pub has_local_reply_marker: bool,
}

impl ClientHeaders {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> ClientHeaders {
        let mut h = ClientHeaders::default();
        for (name, value) in pairs {
            let strip = CLIENT_CREDENTIAL_HEADERS
                .iter()
                .chain(std::iter::once(&"accept-encoding"))
                .find(|s| **s == name);
            if let Some(s) = strip {
                if !h.strip.contains(s) {
                    h.strip.push(s);
                }
            }
            if let Some((o, _)) = OVERRIDE_HEADERS.iter().find(|(o, _)| *o == name) {
                if !h.strip.contains(o) {
                    h.strip.push(o);
                    h.overrides.push((o, value.clone()));
                }
            }
            // The first value of a repeated header, as Envoy's single-value read gives.
            match name.as_str() {
                ":method" if h.method.is_empty() => h.method = value,
                ":path" if h.path.is_empty() => h.path = value,
                "authorization" if h.authorization.is_none() => h.authorization = Some(value),
                "x-api-key" if h.x_api_key.is_none() => h.x_api_key = Some(value),
                "content-length" if h.content_length.is_none() => h.content_length = Some(value),
                "content-type" if h.content_type.is_none() => h.content_type = Some(value),
                "cache-control" if h.cache_control.is_none() => h.cache_control = Some(value),
                "traceparent" if h.traceparent.is_none() => h.traceparent = Some(value),
                "anthropic-version" | "anthropic-beta" => h.anthropic.push((name, value)),
                n if n == LOCAL_REPLY_MARKER => h.has_local_reply_marker = true,
                _ => {}
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_values_are_redacted() {
        assert_eq!(
            without_secrets("/key/info?key=sk-abc&x=1").as_deref(),
            Some("/key/info?key=REDACTED&x=1")
        );
        assert_eq!(
            without_secrets("/v1/x?API_KEY=s&token=t").as_deref(),
            Some("/v1/x?API_KEY=REDACTED&token=REDACTED")
        );
        assert_eq!(without_secrets("/key/info?keys=1"), None);
        assert_eq!(without_secrets("/v1/chat/completions"), None);
    }

    #[test]
    fn client_credentials_and_cookies_are_stripped() {
        let h = ClientHeaders::from_pairs(vec![
            ("cookie".into(), "session=1".into()),
            ("proxy-authorization".into(), "Basic x".into()),
            ("x-litellm-api-key".into(), "sk-1".into()),
            ("x-other".into(), "keep".into()),
        ]);
        assert_eq!(
            h.strip,
            vec!["cookie", "proxy-authorization", "x-litellm-api-key"]
        );
    }
}
