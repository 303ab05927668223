//! The Messages ingress goes through the same pipeline as chat: a fallback
//! from an Anthropic passthrough to another provider, the response cache
//! (a hit served in the client's API, a plain answer replayed as an
//! Anthropic stream), the content filter (a masked request is translated,
//! never passed through unmasked; a block is Anthropic-shaped), and spend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use serde_json::{json, Value};
use support::Gateway;

const OPENAI_ANSWER: &str = r#"{"id":"chatcmpl-up","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
const ANTHROPIC_ANSWER: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello from Claude"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":5}}"#;

fn deps() -> Value {
    json!([
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-x", "api_base": "http://c.test",
            "api_key": "ak-upstream", "input_cost_per_token": 0.000003, "output_cost_per_token": 0.000015}},
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://a.test/v1",
            "api_key": "sk-upstream", "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}}
    ])
}

fn clusters() -> Value {
    json!({"clusters": {"a.test": "cluster_a", "c.test": "cluster_c"}})
}

fn ask(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 50, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

#[test]
fn a_passthrough_falls_back_to_another_provider_translated() {
    let mut gw = Gateway::new(json!({"model_list": deps(),
        "router_settings": {"fallbacks": [{"claude": ["gpt"]}]}, "gateway": clusters()}));
    let mut rq = gw.send("/v1/messages", &[], &ask("claude", "hi", false));
    assert_eq!(rq.upstream().cluster, "cluster_c");
    rq.respond(
        529,
        "application/json",
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    let call = rq.host.calls.first().cloned().expect("a fallback call");
    assert_eq!(call.cluster, "cluster_a");
    assert_eq!(call.header(":path"), Some("/v1/chat/completions"));
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["messages"], json!([{"role": "user", "content": "hi"}]));
    rq.answer_call(call.token, Some(200), OPENAI_ANSWER.as_bytes());
    rq.finish();
    let got = rq.client();
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-llm-gateway-fallback"), Some("true"));
    let v = got.json();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["content"], json!([{"type": "text", "text": "Hi there"}]));
}

#[test]
fn an_exhausted_passthrough_answers_in_anthropic_shape() {
    let mut gw = Gateway::new(json!({"model_list": deps(), "gateway": clusters()}));
    let mut rq = gw.send("/v1/messages", &[], &ask("claude", "hi", false));
    rq.respond(
        529,
        "application/json",
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    let got = rq.client();
    assert_eq!(got.status, 503);
    assert_eq!(
        got.json(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
}

#[test]
fn the_cache_serves_messages_clients_in_their_api() {
    let mut gw = Gateway::new(json!({"model_list": deps(), "gateway": clusters(),
        "litellm_settings": {"cache": true, "cache_params": {}}}));
    let mut rq = gw.send("/v1/messages", &[], &ask("gpt", "hello", false));
    rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
    rq.finish();
    let first = rq.client();
    assert_eq!(first.header("x-llm-gateway-cache"), Some("miss"));
    assert_eq!(first.json()["type"], "message");

    let mut rq = gw.send("/v1/messages", &[], &ask("gpt", "hello", false));
    assert!(!rq.forwarded(), "a hit");
    rq.finish();
    let hit = rq.client();
    assert_eq!(hit.header("x-llm-gateway-cache"), Some("hit"));
    assert_eq!(hit.json(), first.json(), "the same message");

    let mut rq = gw.send("/v1/messages", &[], &ask("gpt", "hello", true));
    assert!(!rq.forwarded(), "a hit, replayed as a stream");
    rq.finish();
    let streamed = String::from_utf8(rq.client().body).unwrap();
    assert!(streamed.starts_with("event: message_start\n"), "{streamed}");
    assert!(streamed.contains(r#""text":"Hi there""#), "{streamed}");
    assert!(streamed.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));

    // A chat client asking the same thing (the chat request the Messages
    // one became, byte for byte) is served the same answer, as chat.
    let same = br#"{"model":"gpt","max_tokens":50,"messages":[{"role":"user","content":"hello"}],"stream":false}"#;
    let mut rq = gw.send_raw("/v1/chat/completions", &[], same.to_vec());
    assert!(!rq.forwarded(), "a hit");
    rq.finish();
    let chat = rq.client().json();
    assert_eq!(chat["object"], "chat.completion", "{chat}");
}

#[test]
fn a_passthrough_answer_is_cached_and_replayed_as_anthropic() {
    let mut gw = Gateway::new(json!({"model_list": deps(), "gateway": clusters(),
        "litellm_settings": {"cache": true, "cache_params": {}}}));
    let mut rq = gw.send("/v1/messages", &[], &ask("claude", "hello", false));
    rq.respond(200, "application/json", ANTHROPIC_ANSWER.as_bytes());
    rq.finish();
    assert_eq!(rq.client().text(), ANTHROPIC_ANSWER);
    let mut rq = gw.send("/v1/messages", &[], &ask("claude", "hello", false));
    assert!(!rq.forwarded());
    rq.finish();
    let v = rq.client().json();
    assert_eq!(v["type"], "message");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello from Claude"}])
    );
    assert_eq!(v["usage"]["input_tokens"], 10);
    assert_eq!(v["usage"]["output_tokens"], 5);
}

fn filtered() -> Gateway {
    Gateway::new(json!({"model_list": deps(), "gateway": clusters(),
        "guardrails": [{"guardrail_name": "pii", "litellm_params": {"guardrail": "litellm_content_filter",
            "mode": "pre_call", "default_on": true,
            "patterns": [{"pattern_type": "prebuilt", "pattern_name": "email", "action": "MASK"},
                         {"pattern_type": "prebuilt", "pattern_name": "us_ssn", "action": "BLOCK"}]}}]}))
}

#[test]
fn a_masked_request_is_never_passed_through_unmasked() {
    let mut gw = filtered();
    let mut rq = gw.send(
        "/v1/messages",
        &[],
        &ask("claude", "Mail jane@example.com please", false),
    );
    let up = rq.upstream();
    assert_eq!(up.path, "/v1/messages");
    let text = serde_json::to_string(&up.body).unwrap();
    assert!(!text.contains("jane@example.com"), "{text}");
    assert!(text.contains("[EMAIL_REDACTED]"), "{text}");
    rq.respond(200, "application/json", ANTHROPIC_ANSWER.as_bytes());
    let v = rq.client().json();
    assert_eq!(v["type"], "message", "translated back: {v}");
    assert_eq!(v["content"][0]["text"], "Hello from Claude");
    // Nothing to mask: a passthrough.
    let body = ask("claude", "nothing here", false);
    let rq = gw.send("/v1/messages", &[], &body);
    let mut want = body.clone();
    want["model"] = json!("claude-x");
    assert_eq!(rq.upstream().body, want);
}

#[test]
fn a_blocked_request_is_refused_in_anthropic_shape() {
    let mut gw = filtered();
    let rq = gw.send(
        "/v1/messages",
        &[],
        &ask("gpt", "my ssn is 123-45-6789", false),
    );
    let r = rq.refused().expect("blocked");
    let v = r.json();
    assert_eq!(r.status, 400, "{v}");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(!v.to_string().contains("123-45-6789"));
}

#[test]
fn a_passthrough_stream_is_charged_from_anthropic_usage() {
    let mut gw = Gateway::new(json!({"model_list": deps(), "gateway": clusters()}));
    let mut rq = gw.send("/v1/messages", &[], &ask("claude", "hi", true));
    rq.respond_stream_headers(200, "text/event-stream");
    let native = support::anthropic_text_stream(&["Hel", "lo"]).concat();
    rq.chunk(native.as_bytes(), true);
    rq.finish();
    assert_eq!(rq.client().text(), native);
    let state = |k: &str| rq.host.filter_state.get(k).cloned();
    assert_eq!(state("llm_gateway.prompt_tokens").as_deref(), Some("10"));
    assert_eq!(state("llm_gateway.completion_tokens").as_deref(), Some("7"));
    // 10 * 3e-6 + 7 * 15e-6 USD.
    let cost: f64 = state("llm_gateway.cost_usd").unwrap().parse().unwrap();
    assert!((cost - 0.000135).abs() < 1e-9, "{cost}");
}

#[test]
fn a_cut_passthrough_stream_ends_with_an_error_in_the_clients_api() {
    let mut gw = Gateway::new(json!({"model_list": deps(), "gateway": clusters()}));
    let mut rq = gw.send("/v1/messages", &[], &ask("claude", "hi", true));
    rq.respond_stream_headers(200, "text/event-stream");
    let events = support::anthropic_text_stream(&["Hel", "lo"]);
    let cut = events[..3].concat();
    rq.chunk(cut.as_bytes(), true);
    let got = rq.client().text();
    let tail = got
        .strip_prefix(cut.as_str())
        .expect("the provider's bytes first");
    assert!(tail.starts_with("event: error\ndata: "), "{got}");
    let data: Value =
        serde_json::from_str(tail.lines().nth(1).unwrap().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(data["type"], "error");
    assert_eq!(data["error"]["type"], "api_error");

    // Whole: nothing is added.
    let mut rq = gw.send("/v1/messages", &[], &ask("claude", "hi", true));
    rq.respond_stream_headers(200, "text/event-stream");
    let whole = events.concat();
    rq.chunk(whole.as_bytes(), true);
    assert_eq!(rq.client().text(), whole);

    // A completions passthrough cut before `[DONE]`.
    let mut rq = gw.send(
        "/v1/completions",
        &[],
        &json!({"model": "gpt", "prompt": ["a", "b"], "stream": true}),
    );
    assert_eq!(rq.upstream().path, "/v1/completions");
    rq.respond_stream_headers(200, "text/event-stream");
    let part = "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"text\":\"x\",\"logprobs\":null,\"finish_reason\":null}]}\n\n";
    rq.chunk(part.as_bytes(), true);
    let got = rq.client().text();
    let tail = got.strip_prefix(part).expect("the provider's bytes first");
    assert!(tail.starts_with("data: {\"error\""), "{got}");
    assert!(tail.ends_with("data: [DONE]\n\n"), "{got}");
}

#[test]
fn spend_records_name_the_client_api_and_id() {
    let mut gateway = clusters();
    gateway["spend_log_filter_state"] = json!(true);
    let mut gw = Gateway::new(json!({"model_list": deps(), "gateway": gateway}));
    let log = |rq: &support::Request, field: &str| {
        let log: Value =
            serde_json::from_str(&rq.host.filter_state["llm_gateway.spend_log"]).unwrap();
        log[field].as_str().unwrap().to_string()
    };
    let mut rq = gw.send("/v1/messages", &[], &ask("claude", "hi", false));
    rq.respond(200, "application/json", ANTHROPIC_ANSWER.as_bytes());
    rq.finish();
    assert_eq!(log(&rq, "call_type"), "anthropic_messages");
    assert_eq!(log(&rq, "request_id"), "msg_1", "the passthrough's own id");

    let mut rq = gw.send("/v1/messages", &[], &ask("gpt", "hi", true));
    rq.respond_stream_headers(200, "text/event-stream");
    rq.chunk(b"data: {\"id\":\"chatcmpl-s9\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", true);
    rq.finish();
    assert_eq!(
        log(&rq, "request_id"),
        "msg_s9",
        "the id of the client's message_start"
    );

    let mut rq = gw.send(
        "/v1/completions",
        &[],
        &json!({"model": "claude", "prompt": "hi"}),
    );
    rq.respond(200, "application/json", ANTHROPIC_ANSWER.as_bytes());
    rq.finish();
    assert_eq!(log(&rq, "call_type"), "text_completion");
    let id = log(&rq, "request_id");
    assert!(id.starts_with("cmpl-"), "{id}");
    assert_eq!(rq.client().json()["id"], json!(id));

    let mut rq = gw.chat(
        &[],
        &json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}),
    );
    rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
    rq.finish();
    assert_eq!(log(&rq, "call_type"), "chat");
    assert_eq!(log(&rq, "request_id"), "chatcmpl-up");
}
