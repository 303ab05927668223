//! Deployment defaults in the request flow, natively: model parameters in a
//! deployment's `litellm_params` go with every call to it unless the request
//! sets them (LiteLLM's `{**litellm_params, **request}`),
//! `router_settings.default_litellm_params` over the deployment's own,
//! `extra_headers` on the provider request, `extra_body` on the native body;
//! bad values refused at load naming the key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use serde_json::{json, Value};
use support::Gateway;

fn config(router: Value) -> Value {
    json!({
        "model_list": [
            {"model_name": "gpt", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_base": "http://a.test/v1", "api_key": "sk-up",
                "temperature": 0.1, "max_tokens": 64, "stop": ["END"], "seed": 7,
                "extra_headers": {"X-Team": "search", "Authorization": "Bearer os.environ/NONE"},
                "extra_body": {"safe_prompt": true}}},
            {"model_name": "claude", "litellm_params": {
                "model": "anthropic/claude-x", "api_base": "http://c.test", "api_key": "ak-up",
                "max_tokens": 100, "top_k": 5, "temperature": 0.3,
                "extra_headers": {"anthropic-beta": "prompt-caching-2024-07-31"}}},
            {"model_name": "embed", "litellm_params": {
                "model": "openai/text-embedding-3-small", "api_base": "http://a.test/v1",
                "api_key": "sk-up", "dimensions": 256, "temperature": 0.5}}],
        "router_settings": router,
        "gateway": {"clusters": {"a.test": "cluster_a", "c.test": "cluster_c"}}})
}

fn ask(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

#[test]
fn an_openai_compatible_deployment_sends_its_defaults_and_the_request_wins() {
    let mut gw = Gateway::new(config(json!({})));
    let sent = gw.chat(&[], &ask("gpt", json!({}))).upstream();
    assert_eq!(sent.body["temperature"], 0.1);
    assert_eq!(sent.body["max_tokens"], 64);
    assert_eq!(sent.body["stop"], json!(["END"]));
    assert_eq!(sent.body["seed"], 7);
    assert_eq!(sent.body["safe_prompt"], true, "extra_body merged");
    assert_eq!(sent.header("x-team"), Some("search"));
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer os.environ/NONE"),
        "an operator's header wins over the translator's (written as given: only a whole \
         value is an environment reference)"
    );

    let sent = gw
        .chat(
            &[],
            &ask("gpt", json!({"temperature": 0.9, "max_tokens": 5})),
        )
        .upstream();
    assert_eq!(sent.body["temperature"], 0.9, "the request's value wins");
    assert_eq!(sent.body["max_tokens"], 5);
    assert_eq!(sent.body["seed"], 7);
}

#[test]
fn a_native_deployment_translates_its_defaults() {
    let mut gw = Gateway::new(config(json!({})));
    let sent = gw.chat(&[], &ask("claude", json!({}))).upstream();
    assert_eq!(sent.body["max_tokens"], 100);
    assert_eq!(sent.body["top_k"], 5);
    assert_eq!(sent.body["temperature"], 0.3);
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    assert_eq!(sent.header("x-api-key"), Some("ak-up"));
    let sent = gw
        .chat(&[], &ask("claude", json!({"max_tokens": 9})))
        .upstream();
    assert_eq!(sent.body["max_tokens"], 9);
}

#[test]
fn embeddings_take_only_embeddings_defaults() {
    let mut gw = Gateway::new(config(json!({})));
    let rq = gw.send(
        "/v1/embeddings",
        &[],
        &json!({"model": "embed", "input": "hello"}),
    );
    let sent = rq.upstream();
    assert_eq!(sent.body["dimensions"], 256);
    assert!(sent.body.get("temperature").is_none(), "{}", sent.body);
}

#[test]
fn router_default_litellm_params_apply_over_the_deployments_own() {
    let mut gw = Gateway::new(config(
        json!({"default_litellm_params": {"temperature": 0.7}}),
    ));
    let sent = gw.chat(&[], &ask("gpt", json!({}))).upstream();
    assert_eq!(
        sent.body["temperature"], 0.7,
        "LiteLLM: router defaults win"
    );
    assert_eq!(sent.body["max_tokens"], 64);
    let sent = gw
        .chat(&[], &ask("gpt", json!({"temperature": 0.2})))
        .upstream();
    assert_eq!(sent.body["temperature"], 0.2);
}

#[test]
fn additional_drop_params_removes_a_default_too() {
    let mut cfg = config(json!({}));
    cfg["model_list"][0]["litellm_params"]["additional_drop_params"] = json!(["seed"]);
    let mut gw = Gateway::new(cfg);
    let sent = gw.chat(&[], &ask("gpt", json!({}))).upstream();
    assert!(sent.body.get("seed").is_none(), "{}", sent.body);
    assert_eq!(sent.body["temperature"], 0.1);
}

#[test]
fn bad_defaults_are_refused_at_load_naming_the_key() {
    for (key, value, reason) in [
        ("temperature", json!("hot"), "must be a number"),
        ("max_tokens", json!(0), "positive integer"),
        ("stop", json!([1]), "string or a list of strings"),
        (
            "extra_headers",
            json!({"content-length": "5"}),
            "not a header",
        ),
        ("extra_headers", json!({"x-a": "a\r\nb: c"}), "line breaks"),
        ("extra_headers", json!(["x"]), "mapping"),
        ("extra_body", json!(1), "mapping"),
    ] {
        let mut cfg = config(json!({}));
        cfg["model_list"][0]["litellm_params"][key] = value;
        let e = llm_gateway::config::parse(cfg.to_string().as_bytes(), &|_| None).expect_err(key);
        assert!(
            e.field
                .starts_with(&format!("model_list[0].litellm_params.{key}")),
            "{key}: {e:?}"
        );
        assert!(e.reason.contains(reason), "{key}: {e:?}");
    }
}

#[test]
fn a_default_header_reads_the_environment() {
    let mut cfg = config(json!({}));
    cfg["model_list"][0]["litellm_params"]["extra_headers"] =
        json!({"x-tenant-token": "os.environ/TENANT_TOKEN"});
    let c = llm_gateway::config::parse(cfg.to_string().as_bytes(), &|k| {
        (k == "TENANT_TOKEN").then(|| "t-123".to_string())
    })
    .unwrap();
    assert_eq!(
        c.deployments[0].defaults.headers,
        vec![("x-tenant-token".to_string(), "t-123".to_string())]
    );
    assert!(
        !c.warnings
            .iter()
            .any(|w| w.contains("temperature") || w.contains("extra_headers")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn budget_reservations_count_a_deployments_default_output_cap() {
    use llm_gateway::accounting::{budget, metering};
    let mut cfg = config(json!({}));
    cfg["model_list"][1]["litellm_params"]["max_tokens"] = json!(50_000);
    cfg["model_list"][1]["litellm_params"]["input_cost_per_token"] = json!(0.000003);
    cfg["model_list"][1]["litellm_params"]["output_cost_per_token"] = json!(0.000015);
    let c = llm_gateway::pipeline::load_config(cfg.to_string().as_bytes(), &|_| None).unwrap();
    let claude = &c.deployments[1];
    assert_eq!(claude.defaults.max_output_tokens, Some(50_000));
    let mut chat: llm_gateway::api::openai::ChatRequest =
        serde_json::from_value(json!({"model": "claude", "messages": []})).unwrap();
    let got = metering::reservation(&c, &[claude], 100, &chat).expect("reservation on");
    let prompt = budget::prompt_estimate_tokens(100);
    assert_eq!(
        got,
        budget::reservation_micro(claude.price.as_ref(), prompt, 50_000),
        "a request without max_tokens may run to the deployment's default"
    );
    chat.max_tokens = Some(10);
    let got = metering::reservation(&c, &[claude], 100, &chat).unwrap();
    assert_eq!(
        got,
        budget::reservation_micro(claude.price.as_ref(), prompt, 10)
    );
}
