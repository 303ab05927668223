//! The client's API at the pipeline's two edges (the pure conversions are
//! `crate::ingress`): which attempts are passthroughs and what they send,
//! and [`Edge`], which turns each answer the hooks saw in OpenAI shape into
//! what the client gets.

use crate::api::error::GatewayError;
use crate::config::providers::ProviderKind;
use crate::config::Deployment;
use crate::ingress::{with_model, ClientStream, Ingress, NativeRequest};
use crate::provider::{endpoint_path, UpstreamRequest};

/// The upstream request for a passthrough attempt: the client's API is the
/// deployment's own. `None`: the attempt is translated. `translated` makes
/// the chat translation, whose path and credentials an OpenAI-compatible
/// passthrough reuses.
pub fn passthrough(
    native: &NativeRequest,
    dep: &Deployment,
    stream_usage: bool,
    translated: &dyn Fn() -> Result<UpstreamRequest, GatewayError>,
) -> Option<Result<UpstreamRequest, GatewayError>> {
    if !native.pass {
        return None;
    }
    match (native.ingress, dep.provider) {
        (Ingress::Messages, ProviderKind::Anthropic) => {
            let body = with_model(&native.body, &dep.model)?;
            let header = |name: &str| {
                native
                    .headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            let version = header("anthropic-version")
                .or_else(|| dep.api_version.clone())
                .unwrap_or_else(|| crate::provider::anthropic::DEFAULT_API_VERSION.to_string());
            let mut headers = vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("anthropic-version".to_string(), version),
            ];
            if let Some(beta) = header("anthropic-beta") {
                headers.push(("anthropic-beta".to_string(), beta));
            }
            if let Some(key) = &dep.api_key {
                headers.push(("x-api-key".to_string(), key.clone()));
            }
            Some(Ok(UpstreamRequest {
                path: endpoint_path(&dep.api_base.path, "/v1/messages"),
                headers,
                body,
            }))
        }
        (Ingress::Completions, ProviderKind::OpenAi) => {
            let mut up = match translated() {
                Ok(up) => up,
                Err(e) => return Some(Err(e)),
            };
            let (path, query) = up.path.split_once('?').unwrap_or((&up.path, ""));
            let base = path.strip_suffix("/chat/completions")?;
            let text = std::str::from_utf8(&up.body).ok()?;
            let model = crate::codec::json_in::string(crate::codec::json_in::first(text, "model"))?
                .text()
                .into_owned();
            let mut body = with_model(&native.body, &model)?;
            if stream_usage && !native.body.windows(16).any(|w| w == b"\"stream_options\"") {
                // Charged: the stream must end with its usage.
                let at = body.iter().position(|b| *b == b'{')? + 1;
                body.splice(
                    at..at,
                    br#""stream_options":{"include_usage":true},"#.iter().copied(),
                );
            }
            up.path = if query.is_empty() {
                format!("{base}/completions")
            } else {
                format!("{base}/completions?{query}")
            };
            up.body = body;
            Some(Ok(up))
        }
        _ => None,
    }
}

/// A Messages request's `thinking` for a deployment whose translator does
/// not read it (OpenAI-compatible, Azure, Cohere, Ollama): LiteLLM's
/// `reasoning_effort` for the budget instead (`translate_thinking_for_model`:
/// Claude models keep `thinking`; here the Anthropic, Gemini, Vertex and
/// Bedrock translators read it). `None`: the request goes as it is.
pub fn thinking_as_effort(
    native: &NativeRequest,
    parsed: &crate::api::request::ClientRequest,
    dep: &Deployment,
) -> Option<crate::api::request::ClientRequest> {
    if native.ingress != Ingress::Messages
        || matches!(
            dep.provider,
            ProviderKind::Anthropic
                | ProviderKind::Gemini
                | ProviderKind::VertexAi
                | ProviderKind::Bedrock
        )
    {
        return None;
    }
    let thinking = parsed.member("thinking")?;
    let without = parsed.without(&["thinking".to_string()]);
    let Some(effort) = crate::ingress::messages::reasoning_effort(thinking) else {
        return Some(without);
    };
    let effort = ("reasoning_effort".to_string(), format!("\"{effort}\""));
    Some(without.with_defaults(&[effort]).unwrap_or(without))
}

/// The answer on its way to the client, in the client's API.
#[derive(Default)]
pub struct Edge {
    /// The client's API.
    pub ingress: Ingress,
    /// The forwarded stream's converter, made at its first chunk.
    stream: Option<Box<dyn ClientStream>>,
}

impl Edge {
    /// An edge for a client speaking `ingress`.
    pub fn new(ingress: Ingress) -> Self {
        Edge {
            ingress,
            stream: None,
        }
    }

    /// A gateway error in the client's API.
    pub fn error_body(&self, e: &GatewayError) -> Vec<u8> {
        self.ingress.error_body(e)
    }

    /// A whole answer (a JSON body or a whole OpenAI stream): `None` when
    /// the client gets it as it is.
    pub fn whole(&self, status: u16, content_type: &str, body: &[u8]) -> Option<Vec<u8>> {
        if self.ingress == Ingress::Chat {
            return None;
        }
        if status < 400 && content_type.starts_with("text/event-stream") {
            let mut s = self.ingress.stream()?;
            let mut out = Vec::with_capacity(body.len() + 512);
            s.feed(body, &mut out);
            s.finish(&mut out);
            return Some(out);
        }
        self.ingress.answer(status, body)
    }

    /// A chunk of the forwarded OpenAI stream; `None`: passed on as it is.
    pub fn chunk(&mut self, openai: &[u8], end_of_stream: bool) -> Option<Vec<u8>> {
        if self.ingress == Ingress::Chat {
            return None;
        }
        if self.stream.is_none() {
            self.stream = self.ingress.stream();
        }
        let s = self.stream.as_mut()?;
        let mut out = Vec::with_capacity(openai.len() + openai.len() / 2 + 128);
        s.feed(openai, &mut out);
        if end_of_stream {
            s.finish(&mut out);
        }
        Some(out)
    }
}
