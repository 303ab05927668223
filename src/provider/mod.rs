//! Provider translators: OpenAI request in, native request out; native
//! response (JSON or stream) in, OpenAI response out.
//!
//! A translator answers four questions (see `../shared/DESIGN.md`):
//! what native request an OpenAI request becomes for a deployment
//! ([`Translator::request`]), what OpenAI body a native response becomes
//! ([`Translator::response`]), how a native stream becomes OpenAI chunks
//! ([`Translator::stream`], a stateful decoder fed arbitrary byte slices), and
//! how a native error becomes an OpenAI error ([`Translator::error`]).
//! Translators never touch the host: ids and timestamps come in through
//! [`ResponseMeta`], so their output is a pure function of their input.
//!
//! Adding a provider is one file here plus one entry in [`PREFIXES`] and
//! [`translator`].

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod chunk;
pub mod cohere;
pub mod embedding;
pub mod gemini;
pub mod ollama;
pub mod openai_compat;

use crate::api::error::GatewayError;
use crate::api::openai::Usage;
use crate::api::request::ClientRequest;
use crate::config::Deployment;

/// The wire-format family of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI and every server that speaks its Chat Completions API.
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini API (`generativelanguage.googleapis.com`).
    Gemini,
    /// Google Vertex AI: the Gemini body on the Vertex path.
    VertexAi,
    /// AWS Bedrock Converse API, SigV4-signed.
    Bedrock,
    /// Cohere v2 chat.
    Cohere,
    /// Azure OpenAI deployments.
    Azure,
    /// Ollama's native `/api/chat`.
    Ollama,
}

impl ProviderKind {
    /// Name used in logs and as a `gateway.clusters` key.
    pub fn family_name(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::VertexAi => "vertex_ai",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Cohere => "cohere",
            ProviderKind::Azure => "azure",
            ProviderKind::Ollama => "ollama",
        }
    }
}

/// What a LiteLLM model prefix (`groq/`, `anthropic/` ...) means.
#[derive(Debug, Clone, Copy)]
pub struct ProviderSpec {
    /// Wire format.
    pub kind: ProviderKind,
    /// The public endpoint, when the provider has one (LiteLLM's defaults).
    pub default_base: Option<&'static str>,
    /// Environment variable LiteLLM reads the key from when `api_key` is absent.
    pub key_env: Option<&'static str>,
}

const fn spec(
    kind: ProviderKind,
    base: Option<&'static str>,
    key: Option<&'static str>,
) -> ProviderSpec {
    ProviderSpec {
        kind,
        default_base: base,
        key_env: key,
    }
}

/// LiteLLM prefixes this gateway serves, with their endpoints and key
/// variables. The OpenAI-compatible family is a table entry each.
pub const PREFIXES: &[(&str, ProviderSpec)] = {
    use ProviderKind::*;
    &[
        (
            "openai",
            spec(
                OpenAi,
                Some("https://api.openai.com/v1"),
                Some("OPENAI_API_KEY"),
            ),
        ),
        (
            "anthropic",
            spec(
                Anthropic,
                Some("https://api.anthropic.com"),
                Some("ANTHROPIC_API_KEY"),
            ),
        ),
        (
            "groq",
            spec(
                OpenAi,
                Some("https://api.groq.com/openai/v1"),
                Some("GROQ_API_KEY"),
            ),
        ),
        (
            "together_ai",
            spec(
                OpenAi,
                Some("https://api.together.xyz/v1"),
                Some("TOGETHERAI_API_KEY"),
            ),
        ),
        (
            "fireworks_ai",
            spec(
                OpenAi,
                Some("https://api.fireworks.ai/inference/v1"),
                Some("FIREWORKS_AI_API_KEY"),
            ),
        ),
        (
            "deepseek",
            spec(
                OpenAi,
                Some("https://api.deepseek.com/v1"),
                Some("DEEPSEEK_API_KEY"),
            ),
        ),
        (
            "mistral",
            spec(
                OpenAi,
                Some("https://api.mistral.ai/v1"),
                Some("MISTRAL_API_KEY"),
            ),
        ),
        (
            "openrouter",
            spec(
                OpenAi,
                Some("https://openrouter.ai/api/v1"),
                Some("OPENROUTER_API_KEY"),
            ),
        ),
        (
            "perplexity",
            spec(
                OpenAi,
                Some("https://api.perplexity.ai"),
                Some("PERPLEXITYAI_API_KEY"),
            ),
        ),
        (
            "xai",
            spec(OpenAi, Some("https://api.x.ai/v1"), Some("XAI_API_KEY")),
        ),
        (
            "hosted_vllm",
            spec(OpenAi, None, Some("HOSTED_VLLM_API_KEY")),
        ),
        (
            "lm_studio",
            spec(
                OpenAi,
                Some("http://localhost:1234/v1"),
                Some("LM_STUDIO_API_KEY"),
            ),
        ),
        (
            "llamafile",
            spec(
                OpenAi,
                Some("http://127.0.0.1:8080/v1"),
                Some("LLAMAFILE_API_KEY"),
            ),
        ),
        ("openai_like", spec(OpenAi, None, None)),
        (
            "gemini",
            spec(
                Gemini,
                Some("https://generativelanguage.googleapis.com"),
                Some("GEMINI_API_KEY"),
            ),
        ),
        // Vertex: the base is regional; the translator derives it from
        // vertex_location when api_base is absent (see gemini.rs).
        (
            "vertex_ai",
            spec(
                VertexAi,
                Some("https://aiplatform.googleapis.com"),
                Some("VERTEXAI_ACCESS_TOKEN"),
            ),
        ),
        // Bedrock: the base is regional (bedrock-runtime.<region>.amazonaws.com);
        // the translator checks that api_base matches aws_region_name.
        ("bedrock", spec(Bedrock, None, None)),
        (
            "cohere",
            spec(
                Cohere,
                Some("https://api.cohere.com"),
                Some("COHERE_API_KEY"),
            ),
        ),
        (
            "cohere_chat",
            spec(
                Cohere,
                Some("https://api.cohere.com"),
                Some("COHERE_API_KEY"),
            ),
        ),
        ("azure", spec(Azure, None, Some("AZURE_API_KEY"))),
        ("ollama", spec(Ollama, Some("http://localhost:11434"), None)),
        (
            "ollama_chat",
            spec(Ollama, Some("http://localhost:11434"), None),
        ),
    ]
};

/// The spec for a prefix, if served.
pub fn spec_for_prefix(prefix: &str) -> Option<ProviderSpec> {
    PREFIXES.iter().find(|(p, _)| *p == prefix).map(|(_, s)| *s)
}

/// All served prefixes, for error messages.
pub fn supported_prefixes() -> Vec<&'static str> {
    PREFIXES.iter().map(|(p, _)| *p).collect()
}

/// The provider of a model written without a prefix, as LiteLLM infers it for
/// the common cases: `claude-*` is Anthropic, everything else OpenAI.
pub fn infer_prefix(model: &str) -> &'static str {
    if model.starts_with("claude") {
        "anthropic"
    } else {
        "openai"
    }
}

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

/// One provider family's translation.
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

    /// Whether a successful non-streaming body is already in OpenAI shape, so
    /// the filter need not buffer it.
    fn passes_response_through(&self) -> bool {
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
pub fn translator(kind: ProviderKind) -> &'static dyn Translator {
    match kind {
        ProviderKind::OpenAi => &openai_compat::OpenAiCompat,
        ProviderKind::Anthropic => &anthropic::Anthropic,
        ProviderKind::Gemini => &gemini::Gemini,
        ProviderKind::VertexAi => &gemini::VertexAi,
        ProviderKind::Bedrock => &bedrock::Bedrock,
        ProviderKind::Cohere => &cohere::Cohere,
        ProviderKind::Azure => &azure::Azure,
        ProviderKind::Ollama => &ollama::Ollama,
    }
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
        crate::api::error::ErrorKind::Upstream,
        format!("{provider} returned a response the gateway could not read: {detail}"),
    )
    .with_code("upstream_invalid_response")
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
