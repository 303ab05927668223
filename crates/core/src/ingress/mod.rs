//! Ingress: the client APIs other than OpenAI chat, each turned into the one
//! request every hook and translator works on (an OpenAI chat request) and
//! each answer turned back, so a Messages or legacy-completions request goes
//! through the same routing, keys, budgets, cache and guardrails as chat.
//!
//! One place per protocol pair:
//!
//! | client API | request | answer | stream | errors |
//! |---|---|---|---|---|
//! | OpenAI chat (`/v1/chat/completions`) | as sent | as translated | as translated | OpenAI |
//! | Anthropic Messages (`/v1/messages`) | [`messages::request`] | [`messages::response`] | [`messages::stream`] | Anthropic ([`messages::error_body`]) |
//! | OpenAI completions (`/v1/completions`) | [`completions`] | [`completions`] | [`completions`] | OpenAI |
//!
//! A request whose client API is the deployment's own (Messages to an
//! Anthropic deployment, completions to an OpenAI-compatible server) is
//! passed through: the client's body with only `model` rewritten
//! ([`with_model`]), and the answer as the provider gave it. The translated
//! chat request still exists beside it, for the hooks (cache key, guardrails,
//! budget estimate) and for a fallback to a deployment of another kind.
//! Whatever the answer's way, the hooks see it in OpenAI shape: the
//! conversion to the client's API is the last step before the client.

pub mod completions;
pub mod messages;

use crate::api::error::GatewayError;
use crate::codec::json_in;
use crate::codec::json_out;

/// The API the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ingress {
    /// OpenAI chat completions (and embeddings): nothing to convert.
    #[default]
    Chat,
    /// Anthropic Messages (`POST /v1/messages`).
    Messages,
    /// OpenAI legacy completions (`POST /v1/completions`).
    Completions,
}

/// A client request in its own API, kept for a passthrough attempt.
#[derive(Debug, Clone)]
pub struct NativeRequest {
    /// The client's API.
    pub ingress: Ingress,
    /// The client's body as it came.
    pub body: Vec<u8>,
    /// Client headers a passthrough forwards (`anthropic-version`,
    /// `anthropic-beta`).
    pub headers: Vec<(String, String)>,
    /// Why the request cannot be translated for another provider (an
    /// Anthropic server tool, a document kind chat has no part for): the
    /// error a translated attempt gets; a passthrough one goes.
    pub untranslatable: Option<GatewayError>,
    /// A passthrough may still be made: no hook rewrote the request (a
    /// guardrail's masking is in the chat request only).
    pub pass: bool,
}

/// The chat request an ingress request becomes, and what a passthrough needs.
pub struct Converted {
    /// The OpenAI chat body.
    pub chat: Vec<u8>,
    /// The native request, for a passthrough.
    pub native: NativeRequest,
}

impl Ingress {
    /// Turn the client's body (in this API, not chat's) into a chat
    /// request. `headers` are the client's request headers a passthrough
    /// may forward.
    pub fn to_chat(
        self,
        body: Vec<u8>,
        headers: &[(String, String)],
    ) -> Result<Converted, GatewayError> {
        let (chat, untranslatable) = match self {
            Ingress::Messages => messages::request::to_chat(&body)?,
            Ingress::Completions => completions::to_chat(&body)?,
            Ingress::Chat => (body.clone(), None),
        };
        Ok(Converted {
            chat,
            native: NativeRequest {
                ingress: self,
                headers: headers.to_vec(),
                body,
                untranslatable,
                pass: true,
            },
        })
    }

    /// An error in the client's API's shape.
    pub fn error_body(self, e: &GatewayError) -> Vec<u8> {
        match self {
            Ingress::Messages => messages::error_body(e),
            _ => e.to_body(),
        }
    }

    /// A whole OpenAI answer (chat completion, or an OpenAI error when
    /// `status >= 400`) in the client's API; `None`: unchanged.
    pub fn answer(self, status: u16, body: &[u8]) -> Option<Vec<u8>> {
        match self {
            Ingress::Chat => None,
            Ingress::Messages if status >= 400 => {
                Some(messages::error_body(&openai_error(status, body)))
            }
            Ingress::Messages => Some(messages::response::from_chat(body)),
            Ingress::Completions if status >= 400 => None,
            Ingress::Completions => Some(completions::from_chat(body)),
        }
    }

    /// The end of a passed-through stream: when the translation the hooks
    /// read ended with an error event (the provider's stream stopped before
    /// its end marker) that the provider's own bytes (`native`, the last
    /// chunk) do not carry, the error event to append in the client's API,
    /// so that the client never sees a cut stream as a finished one.
    pub fn native_stream_end(self, openai: &[u8], native: &[u8]) -> Option<Vec<u8>> {
        let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).rposition(|w| w == needle);
        let at = find(openai, b"data: {\"error\"")?;
        match self {
            Ingress::Chat => None,
            Ingress::Messages if find(native, b"event: error").is_none() => {
                let event = &openai[at + 6..];
                let end = event
                    .iter()
                    .position(|b| *b == b'\n')
                    .unwrap_or(event.len());
                let e = openai_error(500, &event[..end]);
                let mut out = b"event: error\ndata: ".to_vec();
                out.extend_from_slice(&messages::error_body(&e));
                out.extend_from_slice(b"\n\n");
                Some(out)
            }
            Ingress::Completions if find(native, b"data: {\"error\"").is_none() => {
                Some(openai[at..].to_vec())
            }
            _ => None,
        }
    }

    /// A converter for an OpenAI chunk stream into the client's API.
    pub fn stream(self) -> Option<Box<dyn ClientStream>> {
        match self {
            Ingress::Chat => None,
            Ingress::Messages => Some(Box::new(messages::stream::MessagesStream::default())),
            Ingress::Completions => Some(Box::new(completions::CompletionStream::default())),
        }
    }
}

/// Re-encodes an OpenAI `chat.completion.chunk` SSE stream, fed in any
/// split, as the client's API's stream.
pub trait ClientStream {
    /// The next OpenAI stream bytes; the client's bytes appended to `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>);
    /// The OpenAI stream ended: close the client's.
    fn finish(&mut self, out: &mut Vec<u8>);
}

/// An OpenAI error body (the gateway's own, or a provider's passed on) read
/// back into the error it says, to be written in another API's shape.
/// A client's request body as a JSON object, or the 400 saying why not.
pub(crate) fn json_object(
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, GatewayError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::bad_request(format!("request body is not valid JSON: {e}"))
            .with_code("invalid_json")
    })?;
    match v {
        serde_json::Value::Object(req) => Ok(req),
        _ => Err(GatewayError::bad_request(
            "request body must be a JSON object",
        )),
    }
}

fn openai_error(status: u16, body: &[u8]) -> GatewayError {
    use crate::api::error::{upstream_status_kind, ErrorKind};
    let text = std::str::from_utf8(body).unwrap_or("");
    let err = json_in::first(text, "error").filter(|e| json_in::is_object(e));
    let field = |k: &str| {
        err.and_then(|e| json_in::string(json_in::first(e, k)))
            .map(|s| s.text().into_owned())
    };
    let kind = match field("type").as_deref() {
        Some("insufficient_quota") => ErrorKind::InsufficientQuota,
        _ => upstream_status_kind(status).1,
    };
    let message = field("message")
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    let mut e = GatewayError::new(status, kind, message);
    e.code = field("code");
    e.param = field("param");
    e
}

/// A JSON object's text with its top-level `model` member's value replaced
/// by `model` and everything else byte for byte as it was (a passthrough
/// body). `None` when `body` is not a JSON object.
pub fn with_model(body: &[u8], model: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find('{')?;
    let mut out = Vec::with_capacity(body.len() + model.len());
    let mut copied = 0;
    let mut replaced = false;
    let mut it = json_in::members_at(text, start);
    while let Some(key) = it.key() {
        let value_start = it.value_start();
        let value = it.value();
        if key.is("model") {
            out.extend_from_slice(&body[copied..value_start]);
            json_out::str(&mut out, model);
            copied = value_start + value.len();
            replaced = true;
        }
    }
    if !replaced {
        return None;
    }
    out.extend_from_slice(&body[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_input_never_panics() {
        let odd: [&[u8]; 12] = [
            b"", b"{", b"[]", b"null", b"\"x\"", b"{\"error\":", b"{\"error\":5}",
            b"{\"choices\":[{\"message\":7,\"finish_reason\":[]}],\"usage\":\"x\"}",
            b"{\"model\":1,\"messages\":{}}", b"\xff\xfe", b"data: {\"choices\":[{\"delta\":[1]}]}\n\n",
            b"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":7},{\"type\":\"tool_result\",\"content\":[5]}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"input\":3}]}],\"tools\":[7],\"system\":[1]}",
        ];
        for ingress in [Ingress::Messages, Ingress::Completions] {
            for body in odd {
                let _ = ingress.to_chat(body.to_vec(), &[]);
                for status in [200, 400, 503] {
                    let _ = ingress.answer(status, body);
                }
                let mut s = ingress.stream().unwrap();
                let mut out = Vec::new();
                s.feed(body, &mut out);
                s.feed(b"data: {\"error\":{\"message\":3}}\n\n", &mut out);
                s.finish(&mut out);
                let _ = ingress.native_stream_end(body, b"");
                let _ = ingress.error_body(&GatewayError::bad_request("x"));
            }
        }
        let _ = with_model(b"{\"model\":", "m");
    }

    #[test]
    fn only_the_model_is_rewritten() {
        let body = br#"{ "a" : [1, {"model":"x"}],"model" :  "alias" , "z":"\u00e9"}"#;
        let out = with_model(body, "claude-3").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{ "a" : [1, {"model":"x"}],"model" :  "claude-3" , "z":"\u00e9"}"#
        );
        assert!(with_model(b"[1]", "m").is_none());
        assert!(with_model(br#"{"a":1}"#, "m").is_none());
    }
}
