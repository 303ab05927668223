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
    "openai-organization",
    "openai-project",
    "x-goog-api-key",
];

/// The client's request headers the flow reads, from one host call (instead
/// of one call per header), and the names it must strip that are actually
/// present (so absent ones cost no `remove` call).
#[derive(Debug, Default)]
pub(super) struct ClientHeaders {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub x_api_key: Option<String>,
    pub content_length: Option<String>,
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
                n if n == LOCAL_REPLY_MARKER => h.has_local_reply_marker = true,
                _ => {}
            }
        }
        h
    }
}
