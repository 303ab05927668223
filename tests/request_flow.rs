//! The request flow natively, through the in-memory host: every callback in
//! Envoy's order, the router's forwarding and the provider's answer played
//! by the driver (`tests/support`). Each test asserts what the client got
//! and what the provider received, and the accounting left behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use serde_json::{json, Value};
use support::{key_hash, sse_data, Gateway};

const OPENAI_ANSWER: &str = r#"{"id":"chatcmpl-up","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
const ANTHROPIC_ANSWER: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello from Claude"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":5}}"#;

fn anthropic_events(texts: &[&str], finish: bool) -> Vec<String> {
    let mut ev = vec![
        r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}

"#
        .to_string(),
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_string(),
    ];
    for t in texts {
        ev.push(format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{t}\"}}}}\n\n"
        ));
    }
    if finish {
        ev.push(
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
                .into(),
        );
        ev.push("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":5}}\n\n".into());
        ev.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".into());
    }
    ev
}

fn openai_dep(alias: &str, host: &str) -> Value {
    json!({"model_name": alias, "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": format!("http://{host}/v1"), "api_key": "sk-upstream",
        "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}})
}

fn anthropic_dep(alias: &str, host: &str) -> Value {
    json!({"model_name": alias, "litellm_params": {
        "model": "anthropic/claude-x", "api_base": format!("http://{host}"), "api_key": "ak-upstream",
        "input_cost_per_token": 0.000003, "output_cost_per_token": 0.000015}})
}

fn clusters() -> Value {
    json!({"clusters": {"a.test": "cluster_a", "b.test": "cluster_b", "c.test": "cluster_c"}})
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

fn hello_stream(model: &str) -> Value {
    json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hello"}]})
}

#[test]
fn plain_openai_request_is_forwarded_and_answered() {
    let mut gw =
        Gateway::new(json!({"model_list": [openai_dep("gpt", "a.test")], "gateway": clusters()}));
    let mut rq = gw.chat(&[("authorization", "Bearer client-secret")], &hello("gpt"));
    let up = rq.upstream();
    assert_eq!(up.cluster, "cluster_a");
    assert_eq!(up.path, "/v1/chat/completions");
    assert_eq!(up.header(":authority"), Some("a.test"));
    assert_eq!(
        up.header("authorization"),
        Some("Bearer sk-upstream"),
        "the gateway's key, not the client's"
    );
    assert_eq!(up.body["model"], "gpt-4o-mini");
    assert_eq!(up.body["messages"][0]["content"], "hello");
    assert_eq!(rq.host.route_cache_clears, 1);

    rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
    rq.finish();
    let got = rq.client();
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["choices"][0]["message"]["content"], "Hi there");
    assert_eq!(got.header("x-llm-gateway-attempts"), Some("1"));
    let fs = &rq.host.filter_state;
    assert_eq!(fs["llm_gateway.prompt_tokens"], "12");
    assert_eq!(fs["llm_gateway.completion_tokens"], "3");
    assert_eq!(fs["llm_gateway.deployment"], "gpt#0");
    assert_eq!(
        rq.host.counter(
            "llm_gateway.requests.alias.gpt.provider.openai.deployment.gpt_0.status_class.2xx"
        ),
        1
    );
    assert_eq!(
        rq.host
            .counter("llm_gateway.tokens.alias.gpt.token_type.output"),
        3
    );
}

#[test]
fn anthropic_answer_is_translated_to_openai_shape() {
    let mut gw = Gateway::new(
        json!({"model_list": [anthropic_dep("claude", "c.test")], "gateway": clusters()}),
    );
    let mut rq = gw.chat(&[], &hello("claude"));
    let up = rq.upstream();
    assert_eq!(up.cluster, "cluster_c");
    assert_eq!(up.path, "/v1/messages");
    assert_eq!(up.header("x-api-key"), Some("ak-upstream"));
    assert_eq!(up.body["model"], "claude-x");
    assert!(
        up.body["max_tokens"].as_u64().is_some(),
        "Anthropic requires max_tokens"
    );

    rq.respond(200, "application/json", ANTHROPIC_ANSWER.as_bytes());
    rq.finish();
    let got = rq.client().json();
    assert_eq!(got["object"], "chat.completion");
    assert_eq!(got["choices"][0]["message"]["content"], "Hello from Claude");
    assert_eq!(got["choices"][0]["finish_reason"], "stop");
    assert_eq!(got["usage"]["prompt_tokens"], 10);
    assert_eq!(got["usage"]["completion_tokens"], 5);
}

#[test]
fn streamed_answer_is_translated_chunk_by_chunk() {
    let mut gw = Gateway::new(
        json!({"model_list": [anthropic_dep("claude", "c.test")], "gateway": clusters()}),
    );
    let mut rq = gw.chat(&[], &hello_stream("claude"));
    assert_eq!(rq.upstream().body["stream"], true);
    rq.respond_stream_headers(200, "text/event-stream");
    for ev in anthropic_events(&["Hel", "lo"], true) {
        rq.chunk(ev.as_bytes(), false);
    }
    rq.chunk(b"", true);
    rq.finish();
    let got = rq.client();
    assert_eq!(got.status, 200);
    let data = sse_data(&got.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "Hello");
    assert!(!got.text().contains("\"error\""), "{}", got.text());
}

#[test]
fn retryable_failure_retries_another_deployment() {
    let mut gw = Gateway::new(json!({
        "model_list": [openai_dep("ha", "a.test"), openai_dep("ha", "b.test")],
        "gateway": clusters()}));
    let mut rq = gw.chat(&[], &hello("ha"));
    let first = rq.upstream().cluster;
    let other = if first == "cluster_a" {
        "cluster_b"
    } else {
        "cluster_a"
    };
    rq.respond(500, "application/json", br#"{"error":{"message":"boom"}}"#);
    assert_eq!(rq.host.calls.len(), 1, "one retry dispatched");
    let call = rq.host.calls[0].clone();
    assert_eq!(call.cluster, other);
    assert_eq!(call.header(":path"), Some("/v1/chat/completions"));
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["messages"][0]["content"], "hello");
    assert!(rq.host.local_reply.is_none(), "the failed answer is held");

    rq.answer_call(call.token, Some(200), OPENAI_ANSWER.as_bytes());
    rq.finish();
    let got = rq.client();
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["choices"][0]["message"]["content"], "Hi there");
    assert_eq!(got.header("x-llm-gateway-attempts"), Some("2"));
    let first_id = if first == "cluster_a" { "ha_0" } else { "ha_1" };
    assert_eq!(
        rq.host
            .counter(&format!("llm_gateway.failures.deployment.{first_id}")),
        1
    );
    assert_eq!(
        rq.host
            .counters_with_prefix("llm_gateway.retries.deployment."),
        1
    );
}

#[test]
fn fallback_goes_to_another_provider_in_its_own_format() {
    let mut gw = Gateway::new(json!({
        "model_list": [openai_dep("primary", "a.test"), anthropic_dep("backup", "c.test")],
        "router_settings": {"fallbacks": [{"primary": ["backup"]}]},
        "gateway": clusters()}));
    let mut rq = gw.chat(&[], &hello("primary"));
    assert_eq!(rq.upstream().cluster, "cluster_a");
    rq.respond(
        503,
        "application/json",
        br#"{"error":{"message":"overloaded"}}"#,
    );
    let call = rq.host.calls.first().cloned().expect("a fallback call");
    assert_eq!(call.cluster, "cluster_c");
    assert_eq!(call.header(":path"), Some("/v1/messages"));
    assert_eq!(call.header("x-api-key"), Some("ak-upstream"));
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["model"], "claude-x");

    rq.answer_call(call.token, Some(200), ANTHROPIC_ANSWER.as_bytes());
    rq.finish();
    let got = rq.client();
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-llm-gateway-fallback"), Some("true"));
    assert_eq!(
        got.json()["choices"][0]["message"]["content"],
        "Hello from Claude"
    );
    assert_eq!(
        rq.host.counter("llm_gateway.fallbacks.deployment.backup_1"),
        1
    );
}

#[test]
fn every_attempt_failing_ends_in_one_openai_shaped_error() {
    let mut gw = Gateway::new(json!({
        "model_list": [openai_dep("ha", "a.test"), openai_dep("ha", "b.test")],
        "gateway": clusters()}));
    let mut rq = gw.chat(&[], &hello("ha"));
    rq.respond(
        502,
        "application/json",
        br#"{"error":{"message":"bad gateway"}}"#,
    );
    let token = rq.host.calls[0].token;
    // The retry's connection fails (no headers at all).
    rq.answer_call(token, None, b"");
    rq.finish();
    let got = rq.client();
    assert!(got.status >= 500, "{}", got.status);
    assert!(got.json()["error"]["message"].is_string(), "{}", got.text());
}

#[test]
fn a_429_cools_the_deployment_down_for_every_later_request() {
    let mut gw = Gateway::new(json!({
        "model_list": [openai_dep("ha", "a.test"), openai_dep("ha", "b.test")],
        "router_settings": {"cooldown_time": 30},
        "gateway": clusters()}));
    let mut rq = gw.chat(&[], &hello("ha"));
    let cooled = rq.upstream().cluster;
    rq.respond(
        429,
        "application/json",
        br#"{"error":{"message":"slow down"}}"#,
    );
    let token = rq.host.calls[0].token;
    rq.answer_call(token, Some(200), OPENAI_ANSWER.as_bytes());
    rq.finish();
    assert_eq!(
        rq.host
            .counters_with_prefix("llm_gateway.cooldowns.deployment."),
        1
    );
    assert_eq!(
        rq.host
            .counters_with_prefix("llm_gateway.failures_by_kind.kind.http_429.deployment."),
        1
    );

    for _ in 0..8 {
        gw.now_ms += 1_000;
        let mut rq = gw.chat(&[], &hello("ha"));
        assert_ne!(
            rq.upstream().cluster,
            cooled,
            "a cooled-down deployment is skipped"
        );
        rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
        rq.finish();
    }
    // After cooldown_time it is tried again.
    gw.now_ms += 30_000;
    let seen_again = (0..16).any(|_| {
        let mut rq = gw.chat(&[], &hello("ha"));
        let c = rq.upstream().cluster;
        rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
        rq.finish();
        c == cooled
    });
    assert!(seen_again, "the cooldown ends");
}

fn keyed(limits: Value) -> Gateway {
    let mut key = json!({"key_hash": key_hash("sk-team"), "key_alias": "team"});
    if let (Some(k), Some(l)) = (key.as_object_mut(), limits.as_object()) {
        k.extend(l.clone());
    }
    Gateway::new(json!({
        "model_list": [openai_dep("gpt", "a.test"), anthropic_dep("claude", "c.test")],
        "virtual_keys": [key],
        "gateway": clusters()}))
}

const TEAM_KEY: (&str, &str) = ("authorization", "Bearer sk-team");

#[test]
fn unknown_key_is_refused_before_anything_goes_upstream() {
    let mut gw = keyed(json!({}));
    let rq = gw.chat(&[("authorization", "Bearer nope")], &hello("gpt"));
    let r = rq.host.local_reply.clone().expect("refused");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    assert!(
        !String::from_utf8_lossy(&r.body).contains("nope"),
        "the key is never echoed"
    );
    assert!(rq.host.calls.is_empty());
}

#[test]
fn budget_is_never_overshot_and_refusal_is_openai_shaped() {
    // 12 prompt + 3 completion tokens at 1e-6 / 2e-6 USD: 18 micro-USD per
    // answer; each admission reserves what max_tokens 5 could cost.
    let mut gw = keyed(json!({"max_budget": 0.0001, "budget_duration": "1d"}));
    let body = json!({"model": "gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "hello"}]});
    let (mut served, mut spent) = (0, 0);
    let refusal = loop {
        assert!(served <= 10, "never refused");
        let mut rq = gw.chat(&[TEAM_KEY], &body);
        if let Some(r) = rq.refused() {
            assert!(rq.host.calls.is_empty());
            assert_eq!(
                rq.host
                    .counter("llm_gateway.key.rejected_budget.key_alias.team"),
                1
            );
            break r.clone();
        }
        rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
        rq.finish();
        assert_eq!(rq.client().status, 200);
        spent += rq
            .host
            .counter("llm_gateway.key.cost_micro_usd.key_alias.team");
        served += 1;
        gw.now_ms += 10;
    };
    assert!(served >= 3, "served {served}");
    assert!(spent <= 100, "spent {spent} micro-USD of a 100 budget");
    assert_eq!(
        refusal.status,
        429,
        "{}",
        String::from_utf8_lossy(&refusal.body)
    );
    assert_eq!(refusal.json()["error"]["code"], "insufficient_quota");
}

#[test]
fn rpm_limit_refuses_with_retry_after() {
    let mut gw = keyed(json!({"rpm_limit": 1}));
    let mut rq = gw.chat(&[TEAM_KEY], &hello("gpt"));
    rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
    rq.finish();
    let rq = gw.chat(&[TEAM_KEY], &hello("gpt"));
    let r = rq.refused().expect("over the rpm limit");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .expect("retry-after");
    assert!((1..=60).contains(&retry), "{retry}");
}

#[test]
fn client_gone_mid_stream_is_still_charged_and_its_slot_released() {
    let mut gw = keyed(json!({"max_parallel_requests": 1, "max_budget": 10.0}));
    let mut rq = gw.chat(&[TEAM_KEY], &hello_stream("claude"));
    rq.respond_stream_headers(200, "text/event-stream");
    for ev in anthropic_events(&["Hel", "lo wor"], false) {
        rq.chunk(ev.as_bytes(), false);
    }
    // The client disconnects: Envoy goes straight to on_log.
    rq.finish();
    let charged = rq
        .host
        .counter("llm_gateway.key.cost_micro_usd.key_alias.team");
    assert!(charged > 0, "what was streamed is charged");
    assert_eq!(
        rq.host.counter("llm_gateway.key.requests.key_alias.team"),
        1
    );

    // Its parallel slot is free again: the next request is admitted.
    let mut next = gw.chat(&[TEAM_KEY], &hello("gpt"));
    assert!(next.refused().is_none(), "{:?}", next.refused());
    next.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
    next.finish();
}

#[test]
fn stream_cut_short_by_the_provider_ends_with_an_error_event_not_a_clean_done() {
    let mut gw = Gateway::new(
        json!({"model_list": [anthropic_dep("claude", "c.test")], "gateway": clusters()}),
    );
    let mut rq = gw.chat(&[], &hello_stream("claude"));
    rq.respond_stream_headers(200, "text/event-stream");
    for ev in anthropic_events(&["Hel"], false) {
        rq.chunk(ev.as_bytes(), false);
    }
    // The upstream connection ends before message_stop.
    rq.chunk(b"", true);
    rq.finish();
    let data = sse_data(&rq.client().body);
    let last_json = data
        .iter()
        .rev()
        .find_map(|d| serde_json::from_str::<Value>(d).ok())
        .expect("events");
    assert!(
        last_json.get("error").is_some(),
        "the last event is an error: {data:?}"
    );
    assert!(
        !data
            .iter()
            .any(|d| d.contains("\"finish_reason\":\"stop\"")),
        "a cut stream never claims a clean finish: {data:?}"
    );
}

#[test]
fn unknown_model_and_malformed_json_get_openai_errors() {
    let mut gw =
        Gateway::new(json!({"model_list": [openai_dep("gpt", "a.test")], "gateway": clusters()}));
    let rq = gw.chat(&[], &hello("nope"));
    let r = rq.refused().expect("unknown model");
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("nope"));

    let rq = gw.chat(&[], &json!("not an object"));
    let r = rq.refused().expect("malformed");
    assert_eq!(r.status, 400);
    assert_eq!(
        rq.host.counter(
            "llm_gateway.requests.alias.unknown.provider.none.deployment.none.status_class.4xx"
        ),
        0,
        "counted only at on_log"
    );
}

#[test]
fn counter_service_applies_the_usage_events_workers_queue() {
    use llm_gateway::pipeline::counter_service::{CounterService, USAGE_QUEUE};
    use std::rc::Rc;

    let mut gw = keyed(json!({"max_budget": 1.0}));
    gw.counter_service = true;
    let mut rq = gw.chat(&[TEAM_KEY], &hello("gpt"));
    rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
    rq.finish();
    let queued = rq.host.queues[USAGE_QUEUE].clone();
    assert_eq!(queued.len(), 1, "a budgeted request's event goes at once");

    // The service VM shares the queue and the shared data.
    let mut service_host = support::FakeHost::new(Rc::clone(&gw.store));
    service_host.now_ms = gw.now_ms;
    service_host.queues.insert(USAGE_QUEUE, queued);
    let (mut service, tick_ms) = CounterService::start(&gw.cfg, &mut service_host);
    assert_eq!(tick_ms, 1_000);
    service.on_queue_ready(USAGE_QUEUE, &mut service_host);
    assert!(service_host.queues[USAGE_QUEUE].is_empty(), "drained");

    // The spend is visible to the next request: /key/info reports it.
    let mut info_host = support::FakeHost::new(Rc::clone(&gw.store));
    info_host.now_ms = gw.now_ms;
    info_host.request_headers = vec![
        (":method".into(), "GET".into()),
        (":path".into(), "/key/info".into()),
        (TEAM_KEY.0.into(), TEAM_KEY.1.into()),
    ];
    let mut flow = llm_gateway::pipeline::RequestFlow::new(Rc::clone(&gw.cfg));
    flow.on_request_headers(true, &mut info_host);
    let reply = info_host.local_reply.expect("key info answered");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let spend = reply.json()["info"]["spend"].as_f64().expect("spend");
    assert!((spend - 0.000018).abs() < 1e-9, "spend {spend}");
}

#[test]
fn upstream_reset_mid_stream_sends_no_clean_end_and_releases_the_deployment() {
    // least-busy: a strategy that counts attempts in flight (the shuffle does not).
    let mut gw = Gateway::new(json!({"model_list": [anthropic_dep("claude", "c.test")],
        "router_settings": {"routing_strategy": "least-busy"}, "gateway": clusters()}));
    let mut rq = gw.chat(&[], &hello_stream("claude"));
    rq.respond_stream_headers(200, "text/event-stream");
    let dep = &gw.cfg.deployments[0];
    assert_eq!(
        llm_gateway::routing::read_stats(&*gw.store, dep).in_flight,
        1
    );
    for ev in anthropic_events(&["Hel"], false) {
        rq.chunk(ev.as_bytes(), false);
    }
    // Envoy resets both streams: no end of stream reaches the filter, only on_log.
    rq.finish();
    let data = sse_data(&rq.client().body);
    assert!(
        !data.iter().any(|d| d == "[DONE]"),
        "a reset stream never ends cleanly: {data:?}"
    );
    assert_eq!(
        llm_gateway::routing::read_stats(&*gw.store, dep).in_flight,
        0,
        "the in-flight count is released"
    );
    assert_eq!(
        rq.host.counter("llm_gateway.requests.alias.claude.provider.anthropic.deployment.claude_0.status_class.2xx"),
        1
    );
}

#[test]
fn a_200_without_an_answer_is_a_502_and_the_deployments_failure() {
    for body in [&b""[..], b"<html>ok</html>", br#"{"status":"ok"}"#] {
        let mut gw = Gateway::new(json!({
            "model_list": [openai_dep("a", "a.test")], "gateway": clusters()}));
        let mut rq = gw.chat(&[], &hello("a"));
        rq.respond(200, "application/json", body);
        rq.finish();
        let got = rq.client();
        assert_eq!(got.status, 502, "{}", got.text());
        assert_eq!(got.json()["error"]["code"], "upstream_invalid_response");
        assert_eq!(
            rq.host
                .counters_with_prefix("llm_gateway.failures.deployment."),
            1
        );
        assert_eq!(
            rq.host
                .counters_with_prefix("llm_gateway.failures_by_kind.kind.unreadable.deployment."),
            1,
            "counted by kind"
        );
    }
}

#[test]
fn an_empty_streamed_answer_ends_with_an_error_event_and_done() {
    for dep in [openai_dep("s", "a.test"), anthropic_dep("s", "a.test")] {
        let mut gw = Gateway::new(json!({"model_list": [dep], "gateway": clusters()}));
        let mut rq = gw.chat(&[], &hello_stream("s"));
        // Content-Length 0: Envoy ends the stream with the headers.
        rq.respond(200, "text/event-stream", b"");
        let got = rq.client();
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-type"), Some("text/event-stream"));
        let data = sse_data(&got.body);
        assert_eq!(data.len(), 2, "{}", got.text());
        let err: Value = serde_json::from_str(&data[0]).unwrap();
        assert_eq!(err["error"]["code"], "upstream_stream_truncated");
        assert_eq!(data[1], "[DONE]");
    }
}

#[test]
fn a_providers_retry_after_outlasts_the_cooldown_and_is_passed_on() {
    let mut gw = Gateway::new(json!({
        "model_list": [openai_dep("w", "a.test")],
        "router_settings": {"cooldown_time": 5},
        "gateway": clusters()}));
    let mut rq = gw.chat(&[], &hello("w"));
    rq.respond_with(
        429,
        "application/json",
        &[("retry-after", "20")],
        br#"{"error":{"message":"slow down"}}"#,
    );
    rq.finish();
    assert_eq!(rq.client().status, 429);
    gw.now_ms += 10_000;
    let rq = gw.chat(&[], &hello("w"));
    let refused = rq
        .refused()
        .expect("still cooling after 10 s of the provider's 20");
    assert_eq!(refused.status, 503);
    let wait = refused.headers.iter().find(|(k, _)| k == "retry-after");
    assert_eq!(wait.map(|(_, v)| v.as_str()), Some("10"));
    gw.now_ms += 10_500;
    let mut rq = gw.chat(&[], &hello("w"));
    assert!(
        rq.refused().is_none(),
        "served again once the provider's wait is over"
    );
    rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
    assert_eq!(rq.client().status, 200);
}

#[test]
fn a_key_limited_to_some_models_never_falls_back_to_others() {
    // `gpt` only; every kind of fallback to `claude`, from the config and the request.
    let too_long = br#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
    for (router, body_extra, status, answer) in [
        (
            json!({"fallbacks": [{"gpt": ["claude"]}]}),
            json!({}),
            500,
            &br#"{"error":{"message":"down"}}"#[..],
        ),
        (
            json!({}),
            json!({"fallbacks": ["claude"]}),
            503,
            br#"{"error":{"message":"down"}}"#,
        ),
        (
            json!({"context_window_fallbacks": [{"gpt": ["claude"]}]}),
            json!({}),
            400,
            too_long,
        ),
        (
            json!({}),
            json!({"context_window_fallbacks": ["claude"]}),
            400,
            too_long,
        ),
    ] {
        let mut gw = Gateway::new(json!({
            "model_list": [openai_dep("gpt", "a.test"), anthropic_dep("claude", "c.test")],
            "router_settings": router,
            "virtual_keys": [{"key_hash": key_hash("sk-team"), "key_alias": "team", "models": ["gpt"]}],
            "gateway": clusters()}));
        let mut body = hello("gpt");
        body.as_object_mut()
            .unwrap()
            .extend(body_extra.as_object().unwrap().clone());
        let mut rq = gw.chat(&[TEAM_KEY], &body);
        assert!(rq.refused().is_none(), "{body}");
        rq.respond(status, "application/json", answer);
        rq.finish();
        assert!(
            rq.host.calls.is_empty(),
            "{router} {body_extra}: claude was called for a gpt-only key"
        );
        assert_eq!(rq.client().status, status.max(400), "{router} {body_extra}");
    }
}

#[test]
fn an_unreadable_answer_is_retried_on_the_next_deployment() {
    let mut gw = Gateway::new(json!({
        "model_list": [openai_dep("ha", "a.test"), openai_dep("ha", "b.test")],
        "gateway": clusters()}));
    let mut rq = gw.chat(&[], &hello("ha"));
    rq.respond(200, "application/json", b"<html>oops</html>");
    assert_eq!(rq.host.calls.len(), 1, "the next deployment is called");
    let token = rq.host.calls[0].token;
    rq.answer_call(token, Some(200), OPENAI_ANSWER.as_bytes());
    rq.finish();
    let got = rq.client();
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["choices"][0]["message"]["content"], "Hi there");
    assert_eq!(
        rq.host
            .counters_with_prefix("llm_gateway.failures.deployment."),
        1
    );
}

/// OpenAI-compatible stream events: text, finish, the usage chunk, `[DONE]`.
fn openai_stream_events() -> Vec<String> {
    let chunk = |delta: &str, finish: &str| {
        format!("data: {{\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n")
    };
    vec![
        chunk(r#"{"role":"assistant","content":"Hi"}"#, "null"),
        chunk("{}", r#""stop""#),
        "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}\n\n".to_string(),
        "data: [DONE]\n\n".to_string(),
    ]
}

#[test]
fn stream_whose_client_hangs_up_at_done_is_charged_its_usage() {
    // The OpenAI SDKs close the connection when they read `[DONE]`; the
    // provider's end of stream may not have reached the filter yet.
    for provider_end_arrives in [true, false] {
        let mut gw = keyed(json!({"max_budget": 10.0}));
        let mut rq = gw.chat(&[TEAM_KEY], &hello_stream("gpt"));
        rq.respond_stream_headers(200, "text/event-stream");
        for ev in openai_stream_events() {
            rq.chunk(ev.as_bytes(), false);
        }
        if provider_end_arrives {
            rq.chunk(b"", true);
        }
        rq.finish();
        // 12 x 1 + 3 x 2 micro-USD.
        assert_eq!(
            rq.host
                .counter("llm_gateway.key.cost_micro_usd.key_alias.team"),
            18,
            "provider end arrives: {provider_end_arrives}"
        );
        assert!(sse_data(&rq.client().body)
            .last()
            .is_some_and(|d| d == "[DONE]"));
    }
}
