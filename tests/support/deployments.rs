//! The default deployment of each fixture provider directory
//! (`tests/fixtures/<provider>/`), built the way the filter builds one, for
//! the fixture tests and the decoder fuzzing.

use llm_gateway::config::Deployment;
use llm_gateway::provider::ResponseMeta;
use serde_json::{json, Value};

/// Default deployment per provider directory: (model, api_key).
pub fn defaults(provider: &str) -> (&'static str, &'static str) {
    match provider {
        "anthropic" => ("claude-sonnet-4-5", "sk-ant-test"),
        "openai" => ("gpt-4o-mini", "sk-test"),
        "mistral" => ("mistral-small-latest", "ms-test"),
        "groq" => ("llama-3.3-70b-versatile", "gq-test"),
        "deepseek" => ("deepseek-chat", "ds-test"),
        "together_ai" => ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "tg-test"),
        "fireworks_ai" => ("llama-v3p1-8b-instruct", "fw-test"),
        "xai" => ("grok-3", "xai-test"),
        "openrouter" => ("anthropic/claude-sonnet-4.5", "or-test"),
        "perplexity" => ("sonar", "pp-test"),
        "cerebras" => ("llama3.1-8b", "cb-test"),
        "hosted_vllm" => ("Qwen/Qwen2.5-7B-Instruct", ""),
        "databricks" => ("databricks-claude-sonnet-4-5", "dapi-test"),
        "huggingface" => ("meta-llama/Llama-3.3-70B-Instruct", "hf_test"),
        // Bedrock signs with AWS credentials (see `extra_params`), no api_key.
        "bedrock" => ("anthropic.claude-3-5-sonnet-20240620-v1:0", ""),
        "cohere" => ("command-a-03-2025", "co-test-key"),
        "azure" => ("my-gpt-4o", "azure-test-key"),
        // Ollama needs no key (LiteLLM sends one as a bearer token when set).
        "ollama" => ("llama3.2", ""),
        "gemini" => ("gemini-2.5-flash", "gm-test-key"),
        "vertex_ai" => ("gemini-2.5-pro", "ya29.test-token"),
        other => panic!("no defaults for fixture provider directory `{other}`"),
    }
}

/// Provider-specific `litellm_params` of the default deployment.
pub fn extra_params(provider: &str) -> Value {
    match provider {
        "bedrock" => json!({
            "api_base": "https://bedrock-runtime.us-east-1.amazonaws.com",
            "aws_region_name": "us-east-1",
            "aws_access_key_id": "AKIDEXAMPLE",
            "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        }),
        "azure" => json!({
            "api_base": "https://my-resource.openai.azure.com",
            "api_version": "2024-10-21",
        }),
        "hosted_vllm" => json!({"api_base": "http://vllm.test:8000/v1"}),
        "databricks" => json!({"api_base": "https://adb-1.azuredatabricks.net/serving-endpoints"}),
        "vertex_ai" => json!({
            "api_base": "https://us-central1-aiplatform.googleapis.com",
            "vertex_project": "test-project",
            "vertex_location": "us-central1",
        }),
        _ => json!({}),
    }
}

/// A deployment built the way the filter builds one: from a small LiteLLM
/// config through `config::parse`.
pub fn deployment(provider: &str, overrides: Option<&Value>) -> Deployment {
    let (model, key) = defaults(provider);
    let mut params = json!({ "model": format!("{provider}/{model}"), "api_key": key });
    if key.is_empty() {
        params.as_object_mut().unwrap().remove("api_key");
    }
    if let Value::Object(extra) = extra_params(provider) {
        params.as_object_mut().unwrap().extend(extra);
    }
    if let Some(Value::Object(o)) = overrides {
        for (k, v) in o {
            match (k.as_str(), v) {
                ("model", Value::String(m)) => params["model"] = json!(format!("{provider}/{m}")),
                (_, Value::Null) => {
                    params.as_object_mut().unwrap().remove(k);
                }
                _ => params[k] = v.clone(),
            }
        }
    }
    let cfg = json!({
        "model_list": [{ "model_name": "test", "litellm_params": params }],
        "gateway": { "clusters": { provider: "test_cluster" } },
    });
    let cfg = llm_gateway::pipeline::load_config(cfg.to_string().as_bytes(), &|_| None)
        .unwrap_or_else(|e| panic!("fixture deployment config: {e}"));
    cfg.deployments[0].clone()
}

pub fn meta(dep: &Deployment, include_usage: bool) -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-test".into(),
        created: 1_700_000_000,
        model: dep.model.clone(),
        include_usage,
    }
}
