//! Which LiteLLM model prefix means which provider family: the family, its
//! public endpoint and its key variable. Configuration knowledge (the
//! translators themselves are in `crate::provider`, which re-exports these).

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
        // Databricks: the workspace's `https://<host>/serving-endpoints` as
        // api_base (LiteLLM reads DATABRICKS_API_BASE; write
        // `api_base: os.environ/DATABRICKS_API_BASE`).
        ("databricks", spec(OpenAi, None, Some("DATABRICKS_API_KEY"))),
        (
            "cerebras",
            spec(
                OpenAi,
                Some("https://api.cerebras.ai/v1"),
                Some("CEREBRAS_API_KEY"),
            ),
        ),
        (
            "hosted_vllm",
            spec(OpenAi, None, Some("HOSTED_VLLM_API_KEY")),
        ),
        // Hugging Face: the Inference Providers router by default; a TGI or
        // Inference Endpoints URL as api_base (`/v1` added when missing).
        (
            "huggingface",
            spec(
                OpenAi,
                Some("https://router.huggingface.co/v1"),
                Some("HUGGINGFACE_API_KEY"),
            ),
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
        // vertex_location when api_base is absent (see provider/gemini/endpoint.rs).
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

/// LiteLLM prefixes users route to that this gateway refuses, and what is
/// missing: said at load rather than "unknown prefix".
const NOT_SERVED: &[(&str, &str)] = &[
    (
        "watsonx",
        "IBM watsonx.ai needs a bearer token exchanged from the API key at IBM Cloud IAM \
         (iam.cloud.ibm.com, refreshed hourly), which the filter does not do yet",
    ),
    (
        "watsonx_text",
        "see `watsonx/`: the same IAM token exchange is missing",
    ),
];

/// Why a known LiteLLM prefix is not served, if it is one of [`NOT_SERVED`].
pub fn not_served(prefix: &str) -> Option<&'static str> {
    NOT_SERVED
        .iter()
        .find(|(p, _)| *p == prefix)
        .map(|(_, why)| *why)
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

#[cfg(test)]
mod tests {
    #[test]
    fn watsonx_is_refused_naming_what_is_missing() {
        let cfg = serde_json::json!({"model_list": [{"model_name": "w", "litellm_params": {
            "model": "watsonx/ibm/granite-13b-chat-v2", "api_key": "k"}}]});
        let e = crate::config::parse(cfg.to_string().as_bytes(), &|_| None).unwrap_err();
        assert_eq!(e.field, "model_list[0].litellm_params.model");
        assert!(
            e.reason.contains("`watsonx/` is not served") && e.reason.contains("IAM"),
            "{}",
            e.reason
        );
    }
}
