//! LiteLLM's own request-level keys: what a client sends in the body for
//! LiteLLM (the proxy or the SDK), not for the model. LiteLLM consumes them
//! (`litellm.types.utils.all_litellm_params` and the `completion()`
//! arguments) and never sends one to a provider; neither does this gateway,
//! for any provider. Each is one of:
//!
//! - honoured here: the routing overrides (`crate::api::overrides`),
//!   `drop_params`, `additional_drop_params`, `guardrails` (and `metadata`,
//!   where LiteLLM also reads them);
//! - consumed and not sent: the rest of LiteLLM's bookkeeping (logging,
//!   tags, cache controls, prompt templates, client options);
//! - refused (400): what LiteLLM's proxy refuses in a body
//!   (`is_request_body_safe`: endpoints, credentials, callback destinations,
//!   prices), and LiteLLM's mock responses, which this gateway does not
//!   serve (the request would reach the provider and be paid for).

/// What the gateway does with one of LiteLLM's request keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteLlmKey {
    /// Read (or not) by the gateway; never forwarded.
    Consumed,
    /// A 400 naming the key, for the reason given.
    Refused(&'static str),
}

/// Why an endpoint, credential or price is refused (LiteLLM's proxy refuses
/// these the same way unless its operator opts in to client credentials).
const NOT_FROM_A_REQUEST: &str = "is not allowed in the request body: this gateway takes no \
     endpoint, credential, callback destination or price from a request";

const MOCK: &str = "is LiteLLM's mock response, which this gateway does not serve: the request \
     would reach the provider";

/// Refused by exact name (the security list of LiteLLM's proxy).
const REFUSED: &[&str] = &[
    // A client-side provider key: LiteLLM would call the provider with it;
    // this gateway never does, and dropping it would bill the deployment's
    // key while the client believes its own pays.
    "api_key",
    "api_base",
    "base_url",
    "user_config",
    "model_list",
    "vertex_credentials",
    "vertex_ai_credentials",
    "azure_ad_token",
    "azure_ad_token_provider",
    "azure_username",
    "azure_password",
    "azure_scope",
    "tenant_id",
    "client_id",
    "client_secret",
    "sagemaker_base_url",
    "deployment_url",
    "wandb_api_key",
    "weave_project_id",
    "humanloop_api_key",
    "user_api_key_auth_metadata",
    "workspace_id",
    "bedrock_tags",
    "tiered_pricing",
];

/// Refused by prefix: provider credentials and endpoints, observability
/// destinations.
const REFUSED_PREFIXES: &[&str] = &[
    "aws_",
    "s3_",
    "gcs_",
    "langfuse_",
    "langsmith_",
    "arize_",
    "dd_",
    "posthog_",
    "newrelic_",
    "signoz_",
    "github_copilot_",
    "anthropic_workspace",
    "token_exchange_",
];

/// Consumed by exact name.
const CONSUMED: &[&str] = &[
    "drop_params",
    "additional_drop_params",
    "guardrails",
    "metadata",
    "tags",
    "cache",
    "caching",
    "ttl",
    "cache_key",
    "preset_cache_key",
    "no-log",
    "api_version",
    "custom_llm_provider",
    "headers",
    "extra_headers",
    "max_retries",
    "stream_timeout",
    "request_timeout",
    "force_timeout",
    "max_fallbacks",
    "context_window_fallback_dict",
    "retry_policy",
    "retry_strategy",
    "cooldown_time",
    "model_info",
    "proxy_server_request",
    "secret_fields",
    "turn_off_message_logging",
    "prompt_id",
    "prompt_variables",
    "prompt_version",
    "prompt_label",
    "prompt_environment",
    "allowed_openai_params",
    "merge_reasoning_content_in_choices",
    "user_continue_message",
    "assistant_continue_message",
    "ensure_alternating_roles",
    "supports_system_message",
    "initial_prompt_value",
    "final_prompt_value",
    "bos_token",
    "eos_token",
    "roles",
    "custom_prompt_dict",
    "model_alias_map",
    "base_model",
    "hf_model_name",
    "region_name",
    "logger_fn",
    "verbose",
    "acompletion",
    "aembedding",
    "atext_completion",
    "text_completion",
    "async_call",
    "use_client",
    "stream_chunk_size",
    "budget_duration",
    "max_budget",
    "max_parallel_requests",
    "silent_model",
    "fastest_response",
    "enable_json_schema_validation",
    "disable_add_transform_inline_image_block",
    "thought_signature_in_tool_call_id",
    "use_in_pass_through",
    "use_litellm_proxy",
    "complete_response",
    "completion_call_id",
    "provider_specific_header",
];

/// Consumed by prefix: LiteLLM's internal and per-call bookkeeping.
const CONSUMED_PREFIXES: &[&str] = &["litellm_", "_"];

/// Whether `key` is LiteLLM's rather than the model's, and what to do.
pub fn litellm_key(key: &str) -> Option<LiteLlmKey> {
    // The model's usual parameters first: every member of every request
    // passes here.
    if matches!(
        key,
        "model"
            | "messages"
            | "stream"
            | "stream_options"
            | "temperature"
            | "top_p"
            | "max_tokens"
            | "max_completion_tokens"
            | "tools"
            | "tool_choice"
            | "n"
            | "stop"
            | "user"
            | "seed"
            | "response_format"
            | "input"
            | "encoding_format"
            | "dimensions"
    ) {
        return None;
    }
    if key.starts_with("mock_") {
        return Some(LiteLlmKey::Refused(MOCK));
    }
    if REFUSED.contains(&key)
        || REFUSED_PREFIXES.iter().any(|p| key.starts_with(p))
        || is_price(key)
    {
        return Some(LiteLlmKey::Refused(NOT_FROM_A_REQUEST));
    }
    if CONSUMED.contains(&key) || CONSUMED_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return Some(LiteLlmKey::Consumed);
    }
    None
}

/// LiteLLM's custom pricing keys (`input_cost_per_token`,
/// `cache_read_input_token_cost_above_200k_tokens`, ...).
fn is_price(key: &str) -> bool {
    key.contains("cost_per_") || key.ends_with("_token_cost") || key.contains("_token_cost_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_litellms_keys_and_leaves_the_models_alone() {
        for k in [
            "drop_params",
            "metadata",
            "tags",
            "litellm_session_id",
            "_router_weights",
        ] {
            assert_eq!(litellm_key(k), Some(LiteLlmKey::Consumed), "{k}");
        }
        for k in [
            "api_base",
            "aws_role_name",
            "langfuse_host",
            "input_cost_per_token",
            "cache_read_input_token_cost",
            "mock_response",
        ] {
            assert!(
                matches!(litellm_key(k), Some(LiteLlmKey::Refused(_))),
                "{k}"
            );
        }
        for k in [
            "temperature",
            "user",
            "tools",
            "top_k",
            "safe_prompt",
            "response_format",
            "seed",
            "reasoning_effort",
        ] {
            assert_eq!(litellm_key(k), None, "{k}");
        }
    }
}
