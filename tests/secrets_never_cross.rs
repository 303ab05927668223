//! No secret crosses the gateway, natively through the request flow (issue
//! 17): a provider error quoting the key it got reaches the client without
//! it; the client's cookies and proxy credentials never reach a provider; a
//! key in a query string (`/key/info?key=`) never reaches a log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use std::rc::Rc;

use serde_json::json;
use support::Gateway;

const PROVIDER_KEY: &str = "sk-provider-secret-0042";

fn gateway() -> Gateway {
    Gateway::new(json!({
        "model_list": [{"model_name": "gpt", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": "http://a.test/v1", "api_key": PROVIDER_KEY}}],
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": "sk-master-00000001"},
        "gateway": {"clusters": {"a.test": "cluster_a"}}}))
}

fn hello() -> serde_json::Value {
    json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn a_provider_error_quoting_the_key_reaches_the_client_without_it() {
    let mut gw = gateway();
    let mut rq = gw.chat(&[("authorization", "Bearer sk-master-00000001")], &hello());
    let body = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: Bearer {PROVIDER_KEY}.","type":"invalid_request_error","code":"invalid_api_key"}}}}"#
    );
    rq.respond(401, "application/json", body.as_bytes());
    let got = rq.client();
    let text = got.text();
    assert!(!text.contains(PROVIDER_KEY), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
}

#[test]
fn cookies_and_proxy_credentials_never_reach_the_provider() {
    let mut gw = gateway();
    let rq = gw.chat(
        &[
            ("authorization", "Bearer sk-master-00000001"),
            ("cookie", "session=abc"),
            ("proxy-authorization", "Basic dXNlcjpwYXNz"),
            ("x-litellm-api-key", "sk-master-00000001"),
        ],
        &hello(),
    );
    let sent = rq.upstream();
    for h in ["cookie", "proxy-authorization", "x-litellm-api-key"] {
        assert!(sent.header(h).is_none(), "{h} reached the provider");
    }
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
}

#[test]
fn a_key_in_the_query_never_reaches_the_access_log() {
    let gw = gateway();
    let mut host = support::FakeHost::new(Rc::clone(&gw.store));
    host.now_ms = gw.now_ms;
    host.request_headers = vec![
        (":method".into(), "GET".into()),
        (":path".into(), "/key/info?key=sk-master-00000001".into()),
        ("authorization".into(), "Bearer sk-master-00000001".into()),
    ];
    let mut flow = llm_gateway::pipeline::RequestFlow::new(Rc::clone(&gw.cfg));
    flow.on_request_headers(true, &mut host);
    assert!(host.local_reply.is_some(), "answered");
    for h in [":path", "x-envoy-original-path"] {
        assert_eq!(
            host.request_header(h),
            Some("/key/info?key=REDACTED"),
            "{h} is what access logs print"
        );
    }
}
