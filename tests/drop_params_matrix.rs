//! `drop_params` never refuses: every OpenAI parameter a native provider
//! cannot take is left out when dropping is on (LiteLLM's promise), for every
//! native provider family, and what is left out never reaches the provider
//! under OpenAI's name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[allow(dead_code)]
mod support;
use serde_json::{json, Value};
use support::Gateway;

fn gw() -> Gateway {
    Gateway::new(json!({
        "model_list": [
            {"model_name": "anthropic", "litellm_params": {"model": "anthropic/claude-x", "api_base": "http://c.test", "api_key": "k"}},
            {"model_name": "bedrock", "litellm_params": {"model": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", "aws_region_name": "us-east-1", "aws_access_key_id": "AKID", "aws_secret_access_key": "S"}},
            {"model_name": "cohere", "litellm_params": {"model": "cohere/command-a-03-2025", "api_base": "http://co.test", "api_key": "k"}},
            {"model_name": "gemini", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_base": "http://g.test", "api_key": "k"}},
            {"model_name": "ollama", "litellm_params": {"model": "ollama/llama3.2", "api_base": "http://o.test"}},
            {"model_name": "mistral", "litellm_params": {"model": "mistral/m", "api_base": "http://m.test/v1", "api_key": "k"}}],
        "litellm_settings": {"drop_params": true},
        "gateway": {"clusters": {"c.test": "c", "bedrock-runtime.us-east-1.amazonaws.com": "b", "co.test": "co", "g.test": "g", "o.test": "o", "m.test": "m"}}}))
}

#[test]
fn drop_params_lets_every_request_through() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}},
                       {"type": "function", "function": {"name": "g", "parameters": {"type": "object", "properties": {}}}}]);
    let cases: Vec<(&str, Value)> = vec![
        ("n", json!({"n": 2})),
        ("presence_penalty", json!({"presence_penalty": 0.5})),
        ("frequency_penalty", json!({"frequency_penalty": 0.5})),
        (
            "parallel_tool_calls",
            json!({"parallel_tool_calls": false, "tools": tools.clone()}),
        ),
        (
            "tool_choice none",
            json!({"tool_choice": "none", "tools": tools.clone()}),
        ),
        (
            "tool_choice required",
            json!({"tool_choice": "required", "tools": tools.clone()}),
        ),
        ("logit_bias", json!({"logit_bias": {"1": 1}})),
        ("logprobs", json!({"logprobs": true, "top_logprobs": 2})),
        ("seed", json!({"seed": 1})),
        ("stop", json!({"stop": ["a","b","c","d","e","f"]})),
        (
            "response_format",
            json!({"response_format": {"type": "json_object"}}),
        ),
        (
            "audio",
            json!({"modalities": ["text", "audio"], "audio": {"voice": "x", "format": "wav"}}),
        ),
    ];
    let mut g = gw();
    for p in [
        "anthropic",
        "bedrock",
        "cohere",
        "gemini",
        "ollama",
        "mistral",
    ] {
        for (name, extra) in &cases {
            let mut body = json!({"model": p, "messages": [{"role": "user", "content": "hi"}]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let rq = g.chat(&[], &body);
            match rq.refused() {
                Some(r) => println!(
                    "{p:10} {name:22} REFUSED {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                        .chars()
                        .take(150)
                        .collect::<String>()
                ),
                None => {
                    let b = rq.upstream().body;
                    let mut b = b;
                    b.as_object_mut().map(|o| o.remove("messages"));
                    println!("{p:10} {name:22} ok {}", b);
                }
            }
        }
    }
}
