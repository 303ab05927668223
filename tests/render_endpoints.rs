#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! LiteLLM configs whose endpoints `render` must work out: `api_base:
//! os.environ/AZURE_API_BASE` (LiteLLM's documented way for Azure) resolved
//! from the environment `render` runs in, Bedrock's region from
//! `AWS_REGION_NAME` / `AWS_REGION`, Vertex AI's regional endpoint derived
//! from `vertex_location`; and the YAML read as PyYAML reads it
//! (`tpm: 80_000`, `drop_params: yes`).

use llm_gateway::render::{prepare, render, resolve_endpoints, RenderOptions};
use serde_json::{json, Value};

fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

fn cluster_hosts(out: &Value) -> Vec<String> {
    out["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| {
            c.pointer("/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address/address")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn an_api_base_from_the_environment_is_resolved_where_render_runs() {
    let mut cfg = json!({"model_list": [{"model_name": "gpt", "litellm_params": {
        "model": "azure/gpt-4o", "api_base": "os.environ/AZURE_API_BASE",
        "api_key": "os.environ/AZURE_API_KEY", "api_version": "2024-10-21"}}]});
    resolve_endpoints(
        &mut cfg,
        &env(&[("AZURE_API_BASE", "https://team.openai.azure.com")]),
    )
    .unwrap();
    let p = &cfg["model_list"][0]["litellm_params"];
    assert_eq!(p["api_base"], "https://team.openai.azure.com");
    assert_eq!(
        p["api_key"], "os.environ/AZURE_API_KEY",
        "credentials stay references"
    );
    let out = render(&cfg, &RenderOptions::default()).unwrap();
    assert!(cluster_hosts(&out).contains(&"team.openai.azure.com".to_string()));
}

#[test]
fn an_unset_endpoint_variable_names_the_field_and_the_variable() {
    let mut cfg = json!({"model_list": [{"model_name": "gpt", "litellm_params": {
        "model": "azure/gpt-4o", "api_base": "os.environ/AZURE_API_BASE", "api_version": "v"}}],
        "guardrails": [{"guardrail_name": "g", "litellm_params": {
            "guardrail": "generic_guardrail_api", "api_base": "os.environ/GUARD_URL"}}]});
    let e = resolve_endpoints(&mut cfg, &env(&[])).unwrap_err();
    assert_eq!(e.field, "model_list[0].litellm_params.api_base");
    assert!(e.reason.contains("`AZURE_API_BASE` is not set"), "{e}");
    let e = resolve_endpoints(
        &mut cfg,
        &env(&[("AZURE_API_BASE", "https://a.openai.azure.com")]),
    )
    .unwrap_err();
    assert_eq!(e.field, "guardrails[0].litellm_params.api_base");
}

#[test]
fn bedrock_takes_its_region_from_the_environment() {
    let mut cfg = json!({"model_list": [{"model_name": "nova", "litellm_params": {
        "model": "bedrock/amazon.nova-lite-v1:0"}}]});
    resolve_endpoints(&mut cfg, &env(&[("AWS_REGION", "eu-west-1")])).unwrap();
    let out = render(&cfg, &RenderOptions::default()).unwrap();
    assert!(cluster_hosts(&out).contains(&"bedrock-runtime.eu-west-1.amazonaws.com".to_string()));
}

#[test]
fn vertex_without_api_base_uses_its_locations_endpoint() {
    let cfg = json!({"model_list": [
        {"model_name": "g", "litellm_params": {"model": "vertex_ai/gemini-2.5-flash",
            "vertex_project": "p1", "vertex_location": "europe-west4"}},
        {"model_name": "h", "litellm_params": {"model": "vertex_ai/gemini-2.5-pro",
            "vertex_project": "p1", "vertex_location": "global"}}]});
    let out = render(&cfg, &RenderOptions::default()).unwrap();
    let hosts = cluster_hosts(&out);
    assert!(
        hosts.contains(&"europe-west4-aiplatform.googleapis.com".to_string()),
        "{hosts:?}"
    );
    assert!(
        hosts.contains(&"aiplatform.googleapis.com".to_string()),
        "{hosts:?}"
    );
    let p = prepare(&cfg).unwrap();
    assert_eq!(
        p.parsed.deployments[0].api_base.authority,
        "europe-west4-aiplatform.googleapis.com"
    );
}

#[test]
fn a_litellm_yaml_loads_with_yaml_1_1_scalars() {
    let text = "model_list:\n  - model_name: gpt\n    litellm_params: &p\n      model: openai/gpt-4o-mini\n      \
                tpm: 80_000\n      rpm: 1_000\n  - model_name: gpt-eu\n    litellm_params:\n      <<: *p\n      \
                rpm: 500\nlitellm_settings:\n  drop_params: yes\n";
    let cfg = llm_gateway::yaml::from_str(text).unwrap();
    let p = prepare(&cfg).unwrap();
    let d = &p.parsed.deployments;
    assert_eq!((d[0].tpm, d[0].rpm), (Some(80_000), Some(1_000)));
    assert_eq!(
        (d[1].tpm, d[1].rpm, d[1].model.as_str()),
        (Some(80_000), Some(500), "gpt-4o-mini")
    );
    assert!(p.parsed.drop_params);
}
