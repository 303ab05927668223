//! Provider translators: OpenAI request in, native request out; native
//! response (JSON or stream) in, OpenAI response out.
//!
//! A translator answers four questions (the contract is [`Translator`]):
//! what native request an OpenAI request becomes for a deployment
//! ([`Translator::request`]), what OpenAI body a native response becomes
//! ([`Translator::response`]), how a native stream becomes OpenAI chunks
//! ([`Translator::stream`], a stateful decoder fed arbitrary byte slices), and
//! how a native error becomes an OpenAI error ([`Translator::error`]).
//! Translators never touch the host: ids and timestamps come in through
//! [`ResponseMeta`], so their output is a pure function of their input.
//!
//! Adding a provider is one folder or file here, one entry in
//! [`PREFIXES`] (`crate::config::providers`, which LiteLLM prefix means
//! which family) and one in [`translator`]; see `docs/architecture.md`.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod cohere;
pub mod common;
pub mod gemini;
pub mod ollama;
pub mod openai_compat;

use crate::api::error::GatewayError;
use crate::api::openai::Usage;
use crate::api::request::ClientRequest;
use crate::config::Deployment;

pub use crate::config::providers::{
    infer_prefix, spec_for_prefix, supported_prefixes, ProviderKind, ProviderSpec, PREFIXES,
};
pub use common::errors::{invalid_response, stream_error_event};

/// What a translation may depend on besides the request and deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestContext {
    /// LiteLLM's `drop_params`: drop unsupported parameters instead of a 400.
    pub drop_params: bool,
    /// Unix milliseconds (request signing needs the time).
    pub now_ms: u64,
}

pub use crate::api::openai::Operation;

/// The native request for one attempt: everything the filter must set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// `:path`, with query string when the provider needs one.
    pub path: String,
    /// Headers to set (credentials, versions, content type). The filter removes
    /// the client's own credentials before applying these.
    pub headers: Vec<(String, String)>,
    /// The native body.
    pub body: Vec<u8>,
}

/// What a translator needs to build OpenAI responses: injected so output is
/// deterministic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMeta {
    /// `chatcmpl-...` id used when the provider's id is not reused.
    pub id: String,
    /// Unix seconds for `created`.
    pub created: u64,
    /// The provider model id of the deployment (fallback for `model`).
    pub model: String,
    /// `stream_options.include_usage` was set.
    pub include_usage: bool,
}

/// A translated non-streaming response.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The OpenAI JSON body.
    pub body: Vec<u8>,
    /// Token usage the provider reported.
    pub usage: Option<Usage>,
}

/// One provider family's translation, and the contract every translator
/// keeps.
///
/// # Rules
///
/// - **Pure.** A translator never calls the host, reads a clock or draws a
///   random number: ids and timestamps come in [`ResponseMeta`], the signing
///   time in [`RequestContext::now_ms`]. The same input gives the same bytes;
///   the fixtures under `tests/fixtures/` hold every translator to that.
/// - **The request is borrowed, never changed.** A later attempt (a retry,
///   a fallback to another provider) translates from the same original.
/// - **Every parameter is mapped, passed through, ignored or refused.** A
///   native translator keeps one [`common::params::ParamPolicy`] table and
///   refuses what it cannot take with a 400 naming the parameter
///   ([`common::errors::unsupported_param`]) unless `ctx.drop_params` is set.
///   A parameter that would change the answer is never dropped silently.
/// - **Every failure is an OpenAI error, never a panic** (a panic kills the
///   Envoy worker's VM): bad client input is a 400 naming the `param`; an
///   answer the translator cannot read is a 502 ([`invalid_response`]); a
///   native error answer goes through [`Translator::error`], which keeps the
///   provider's status and message in OpenAI shape.
/// - **Streams are incremental and bounded.** [`Translator::stream`] returns
///   a decoder fed bytes split anywhere. It holds at most the one
///   unfinished line or frame, writes each OpenAI chunk as soon as the
///   native event that makes it is complete, and writes nothing after
///   `data: [DONE]`. A native error event, or an upstream that ends before
///   its own end marker, ends the client stream with one error event
///   ([`stream_error_event`]) and `[DONE]`, never a clean finish.
/// - **Usage is always reported** ([`Translated::usage`],
///   [`StreamTranslator::usage`]), whether or not the client asked for the
///   usage chunk: budgets and metering charge it. `prompt_tokens` counts
///   cached and cache-write tokens too ([`common::usage`]).
/// - **Shared rules live in [`common`]**, not in a translator: parameter
///   policy, `data:` URLs, usage shapes, chunk writing, Claude reasoning
///   budgets, error wording.
///
/// An OpenAI-compatible provider is not a translator of its own but a row
/// in [`PREFIXES`] served by [`openai_compat::Dialect`].
pub trait Translator: Sync {
    /// The native request for `req` served by `dep`.
    ///
    /// `req` is borrowed and never changed, so a later attempt on another
    /// provider translates from the same original. It is the client's bytes,
    /// indexed: a translator that rebuilds the body reads the members it
    /// needs ([`ClientRequest::member`]) or the whole request parsed once
    /// ([`ClientRequest::parsed`]).
    fn request(
        &self,
        req: &ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError>;

    /// Check at config load that a deployment has what this provider needs
    /// (region, project, api_version ...): an error names the missing
    /// `litellm_params` field and the plugin refuses to start.
    fn validate(&self, _dep: &Deployment) -> Result<(), String> {
        Ok(())
    }

    /// The native request for `POST /v1/embeddings` (`req.embeddings` is
    /// set). Providers without embeddings answer 400 naming themselves.
    fn embeddings_request(
        &self,
        _req: &ClientRequest,
        dep: &Deployment,
        _ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        Err(GatewayError::bad_param(
            "model",
            format!(
                "provider `{}` has no embeddings API in this gateway",
                dep.provider.family_name()
            ),
        )
        .with_code("unsupported_operation"))
    }

    /// A successful native embeddings answer as an OpenAI `list` of
    /// `embedding` objects (with `usage`).
    fn embeddings_response(
        &self,
        body: &[u8],
        _meta: &ResponseMeta,
    ) -> Result<Translated, GatewayError> {
        let _ = body;
        Err(GatewayError::new(
            500,
            crate::api::error::ErrorKind::Internal,
            "embeddings not supported",
        ))
    }

    /// Whether a successful embeddings answer is already in OpenAI shape.
    fn passes_embeddings_through(&self) -> bool {
        false
    }

    /// A successful (2xx) native JSON body as an OpenAI `chat.completion`.
    fn response(&self, body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError>;

    /// A decoder for a successful native stream.
    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator>;

    /// A native error answer (status >= 400) as an OpenAI error.
    fn error(&self, status: u16, body: &[u8]) -> GatewayError;
}

/// Turns a native stream into OpenAI `chat.completion.chunk` SSE, incrementally.
pub trait StreamTranslator {
    /// Feed the next upstream bytes (any split); append OpenAI SSE bytes to `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>);

    /// The upstream stream ended. Append what must close the OpenAI stream: the
    /// usage chunk if asked for, an error event if the upstream ended before its
    /// own end marker, and `data: [DONE]`.
    fn finish(&mut self, out: &mut Vec<u8>);

    /// Usage reported by the provider so far.
    fn usage(&self) -> Option<Usage>;
}

/// The translator for a provider family.
pub fn translator(dep: &Deployment) -> &'static dyn Translator {
    match dep.provider {
        ProviderKind::OpenAi => openai_compat::for_deployment(dep),
        ProviderKind::Anthropic => &anthropic::Anthropic,
        ProviderKind::Gemini => &gemini::GEMINI,
        // Claude on Vertex takes Anthropic's body at Google's endpoint.
        ProviderKind::VertexAi if dep.model.starts_with("claude") => {
            &anthropic::vertex::VertexClaude
        }
        ProviderKind::VertexAi => &gemini::VERTEX_AI,
        // Claude's Messages body through InvokeModel (LiteLLM's `invoke/` route).
        ProviderKind::Bedrock if dep.model.starts_with("invoke/") => &bedrock::invoke::InvokeClaude,
        ProviderKind::Bedrock => &bedrock::Bedrock,
        ProviderKind::Cohere => &cohere::Cohere,
        ProviderKind::Azure => &azure::Azure,
        ProviderKind::Ollama => &ollama::Ollama,
    }
}

/// Parse and validate a plugin configuration (JSON bytes), then check each
/// deployment against its translator's own requirements: every entry point
/// loads through this (`pipeline::load_config` adds the fleet checks).
pub fn parse_config(
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<crate::config::Config, crate::config::ConfigError> {
    let cfg = crate::config::parse(bytes, env)?;
    for (i, dep) in cfg.deployments.iter().enumerate() {
        translator(dep)
            .validate(dep)
            .map_err(|reason| crate::config::ConfigError {
                field: format!("model_list[{i}].litellm_params"),
                reason,
            })?;
    }
    Ok(cfg)
}

/// The input schema of the forced tool that emulates `response_format`
/// (JSON mode) for providers without a native JSON mode (Anthropic, Bedrock
/// Converse), as LiteLLM does: an open object for `json_object`, the given
/// schema for `json_schema`, nothing for `text`.
pub fn json_mode_schema(
    format: Option<&serde_json::Value>,
    provider: &str,
) -> Result<Option<serde_json::Value>, GatewayError> {
    use serde_json::{json, Value};
    let open_object =
        || json!({ "type": "object", "properties": {}, "additionalProperties": true });
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(open_object())),
        Some("json_schema") => match format.get("json_schema").and_then(|j| j.get("schema")) {
            Some(Value::Object(o)) => Ok(Some(Value::Object(o.clone()))),
            None | Some(Value::Null) => Ok(Some(open_object())),
            Some(_) => Err(GatewayError::bad_param(
                "response_format",
                "response_format.json_schema.schema must be a JSON Schema object",
            )),
        },
        _ => Err(GatewayError::bad_param(
            "response_format",
            format!(
                "response_format must have type `text`, `json_object` or `json_schema` for \
                 provider {provider}"
            ),
        )),
    }
}

/// Join an api_base path and an endpoint path, unless the base already ends
/// with the endpoint (LiteLLM accepts both forms of `api_base`).
pub fn endpoint_path(base_path: &str, endpoint: &str) -> String {
    if base_path.ends_with(endpoint) {
        base_path.to_string()
    } else {
        format!("{base_path}{endpoint}")
    }
}

/// The native body with the deployment's `extra_body` members set over what
/// the translator wrote (the OpenAI SDK's `extra_body` merge). Bedrock calls
/// it before signing; the pipeline calls it for every other provider.
pub fn with_extra_body(body: Vec<u8>, dep: &Deployment) -> Vec<u8> {
    let extra = &dep.defaults.extra_body;
    if extra.is_empty() {
        return body;
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut native)) => {
            for (k, v) in extra {
                native.insert(k.clone(), v.clone());
            }
            serde_json::to_vec(&native).unwrap_or(body)
        }
        _ => body,
    }
}
