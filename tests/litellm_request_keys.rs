//! LiteLLM's own request-level keys in the request flow, natively: never
//! sent to any provider; `drop_params` and `additional_drop_params` honoured
//! per request and per deployment; what LiteLLM's proxy refuses in a body
//! (endpoints, credentials, prices) and its mock responses refused with a
//! 400 naming the key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use serde_json::{json, Value};
use support::Gateway;

fn gateway(extra_anthropic: Value) -> Gateway {
    let mut claude =
        json!({"model": "anthropic/claude-x", "api_base": "http://c.test", "api_key": "ak-up"});
    claude
        .as_object_mut()
        .unwrap()
        .extend(extra_anthropic.as_object().unwrap().clone());
    Gateway::new(json!({
        "model_list": [
            {"model_name": "mistral", "litellm_params": {
                "model": "openai/mistral-small", "api_base": "http://a.test/v1", "api_key": "sk-up"}},
            {"model_name": "claude", "litellm_params": claude},
            {"model_name": "trimmed", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_base": "http://a.test/v1", "api_key": "sk-up",
                "additional_drop_params": ["seed"]}}],
        "gateway": {"clusters": {"a.test": "cluster_a", "c.test": "cluster_c"}}}))
}

fn ask(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

const LITELLM_ONLY: &[&str] = &[
    "drop_params",
    "metadata",
    "tags",
    "caching",
    "cache",
    "litellm_session_id",
    "num_retries",
    "additional_drop_params",
    "mock_testing",
];

#[test]
fn no_litellm_key_reaches_an_openai_compatible_provider() {
    let mut gw = gateway(json!({}));
    let extra = json!({"drop_params": true, "metadata": {"generation_name": "g"}, "tags": ["t"],
        "caching": false, "cache": {"no-cache": true}, "litellm_session_id": "s1",
        "num_retries": 0, "additional_drop_params": [], "temperature": 0.2, "user": "u-1", "top_k": 5});
    let rq = gw.chat(&[], &ask("mistral", extra));
    let sent = rq.upstream().body;
    for k in LITELLM_ONLY {
        assert!(sent.get(*k).is_none(), "{k} reached the provider: {sent}");
    }
    assert_eq!(sent["temperature"], 0.2);
    assert_eq!(sent["user"], "u-1");
    assert_eq!(sent["top_k"], 5, "a provider's own parameter still passes");
}

#[test]
fn a_requests_drop_params_drops_what_the_provider_cannot_take() {
    let mut gw = gateway(json!({}));
    let refused = gw.chat(&[], &ask("claude", json!({"logit_bias": {"1": 2}})));
    assert_eq!(refused.refused().expect("400").status, 400);
    let rq = gw.chat(
        &[],
        &ask(
            "claude",
            json!({"logit_bias": {"1": 2}, "drop_params": true, "metadata": {"a": 1}}),
        ),
    );
    let sent = rq.upstream().body;
    assert!(
        sent.get("logit_bias").is_none() && sent.get("drop_params").is_none(),
        "{sent}"
    );
    assert!(
        sent.get("metadata").is_none(),
        "LiteLLM's metadata is not Anthropic's: {sent}"
    );
}

#[test]
fn a_deployments_drop_params_applies_and_the_request_may_turn_it_off() {
    let mut gw = gateway(json!({"drop_params": true}));
    let rq = gw.chat(&[], &ask("claude", json!({"logit_bias": {"1": 2}})));
    assert!(rq.upstream().body.get("logit_bias").is_none());
    let rq = gw.chat(
        &[],
        &ask(
            "claude",
            json!({"logit_bias": {"1": 2}, "drop_params": false}),
        ),
    );
    let r = rq.refused().expect("the request's own setting wins");
    assert_eq!(r.status, 400);
    let msg = r.json()["error"]["message"].to_string();
    assert!(msg.contains("logit_bias"), "{msg}");
}

#[test]
fn additional_drop_params_leave_parameters_out_per_request_and_per_deployment() {
    let mut gw = gateway(json!({}));
    let rq = gw.chat(
        &[],
        &ask(
            "mistral",
            json!({"temperature": 0.5, "seed": 7, "additional_drop_params": ["temperature"]}),
        ),
    );
    let sent = rq.upstream().body;
    assert!(sent.get("temperature").is_none(), "{sent}");
    assert_eq!(sent["seed"], 7);
    let rq = gw.chat(&[], &ask("trimmed", json!({"seed": 7, "temperature": 0.5})));
    let sent = rq.upstream().body;
    assert!(sent.get("seed").is_none(), "the deployment's list: {sent}");
    assert_eq!(sent["temperature"], 0.5);
    let bad = gw.chat(
        &[],
        &ask(
            "mistral",
            json!({"additional_drop_params": ["tools[0].input_examples"]}),
        ),
    );
    let r = bad.refused().expect("a path is refused, not ignored");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "additional_drop_params");
}

#[test]
fn endpoints_credentials_prices_and_mocks_are_refused_naming_the_key() {
    let mut gw = gateway(json!({}));
    for (k, v) in [
        ("api_base", json!("http://attacker.example")),
        ("base_url", json!("http://attacker.example")),
        ("user_config", json!({"model_list": []})),
        ("aws_role_name", json!("admin")),
        ("langfuse_host", json!("http://attacker.example")),
        ("input_cost_per_token", json!(0)),
        ("mock_response", json!("hello")),
    ] {
        let mut extra = serde_json::Map::new();
        extra.insert(k.to_string(), v);
        let rq = gw.chat(&[], &ask("mistral", Value::Object(extra)));
        let r = rq.refused().unwrap_or_else(|| panic!("{k} refused"));
        assert_eq!(r.status, 400, "{k}");
        assert_eq!(r.json()["error"]["param"], k);
        assert!(rq.host.calls.is_empty());
    }
}
