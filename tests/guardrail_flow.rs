//! Guardrails in the request flow, natively through the in-memory host:
//! which guardrails run (default_on, per key, named by the request, switched
//! off only where the operator allows it), the input filter before any
//! provider sees the request, and the output filter (`post_call`) on whole
//! and streamed answers before the client sees them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use serde_json::{json, Value};
use support::{anthropic_text_stream, key_hash, sse_data, streamed_text, Gateway};

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
    json!({"clusters": {"a.test": "cluster_a", "c.test": "cluster_c"}})
}

const OPENAI_ANSWER: &str = r#"{"id":"chatcmpl-up","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;

fn filtered() -> Gateway {
    Gateway::new(json!({
        "model_list": [openai_dep("gpt", "a.test")],
        "guardrails": [
            {"guardrail_name": "pii", "litellm_params": {"guardrail": "litellm_content_filter", "mode": "pre_call", "default_on": true,
              "patterns": [
                {"pattern_type": "prebuilt", "pattern_name": "email", "action": "MASK"},
                {"pattern_type": "prebuilt", "pattern_name": "credit_card", "action": "MASK"},
                {"pattern_type": "prebuilt", "pattern_name": "us_ssn", "action": "BLOCK"}],
              "blocked_words": [{"keyword": "Project Apollo", "action": "BLOCK"}]}},
            {"guardrail_name": "secrets", "litellm_params": {"guardrail": "litellm_content_filter",
              "patterns": [{"pattern_name": "api_key", "action": "BLOCK"}]}}
        ],
        "gateway": clusters()}))
}

#[test]
fn content_filter_masks_before_the_provider_sees_the_request() {
    let mut gw = filtered();
    let body = json!({"model": "gpt", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Mail jane@example.com, card 4111 1111 1111 1111 — merci"}]}]});
    let mut rq = gw.chat(&[], &body);
    let up = rq.upstream();
    let sent = up.body["messages"][1]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        sent,
        "Mail [EMAIL_REDACTED], card [CREDIT_CARD_REDACTED] — merci"
    );
    assert_eq!(up.body["messages"][0]["content"], "Be brief.");
    rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
    rq.finish();
    assert_eq!(
        rq.client().header("x-litellm-applied-guardrails"),
        Some("pii")
    );
    assert_eq!(
        rq.host
            .counter("llm_gateway.guardrail.masked.guardrail.pii"),
        1
    );
    assert_eq!(rq.host.filter_state["llm_gateway.guardrails"], "pii");
}

#[test]
fn content_filter_blocks_without_echoing_what_it_found() {
    let mut gw = filtered();
    for text in ["my SSN is 123-45-6789", "about project apollo, quietly"] {
        let rq = gw.chat(
            &[],
            &json!({"model": "gpt", "messages": [{"role": "user", "content": text}]}),
        );
        let r = rq.refused().expect("blocked");
        assert_eq!(r.status, 400);
        let e = r.json();
        assert_eq!(e["error"]["code"], "content_policy_violation");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains("`pii`"), "{msg}");
        assert!(
            !msg.contains("123-45-6789") && !msg.to_lowercase().contains("apollo"),
            "{msg}"
        );
        assert_eq!(r.header("x-litellm-applied-guardrails"), Some("pii"));
        assert!(rq.host.calls.is_empty());
        assert_eq!(
            rq.host
                .counter("llm_gateway.guardrail.blocked.guardrail.pii"),
            1
        );
    }
}

#[test]
fn an_opt_in_guardrail_runs_when_named_and_the_field_never_reaches_the_provider() {
    let mut gw = filtered();
    let key = "sk-proj-abcdefghijklmnopqrstuv";
    // Not named: `secrets` (default_on false) does not run; the key passes.
    let mut rq = gw.chat(
        &[],
        &json!({"model": "gpt", "messages": [{"role": "user", "content": key}]}),
    );
    assert_eq!(rq.upstream().body["messages"][0]["content"], key);
    rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
    rq.finish();
    // Named: it runs and blocks.
    let rq = gw.chat(&[], &json!({"model": "gpt", "guardrails": ["secrets"], "messages": [{"role": "user", "content": key}]}));
    assert_eq!(rq.refused().expect("blocked").status, 400);
    // Named but clean: the `guardrails` field is the gateway's, stripped.
    let rq = gw.chat(&[], &json!({"model": "gpt", "guardrails": ["secrets"], "messages": [{"role": "user", "content": "hi"}]}));
    let up = rq.upstream();
    assert!(up.body.get("guardrails").is_none(), "{}", up.body);
    assert_eq!(
        rq.host.filter_state["llm_gateway.guardrails"],
        "pii,secrets"
    );
    // An unknown name is a 400.
    let rq = gw.chat(&[], &json!({"model": "gpt", "guardrails": ["nope"], "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(rq.refused().expect("unknown").status, 400);
}

#[test]
fn a_caller_cannot_switch_off_a_default_on_guardrail() {
    let mut gw = filtered();
    let rq = gw.chat(
        &[],
        &json!({"model": "gpt", "guardrails": {"pii": false},
        "messages": [{"role": "user", "content": "SSN 123-45-6789"}]}),
    );
    assert_eq!(rq.refused().expect("still blocked").status, 400);
}

/// `out`: a `post_call` filter on answers (default on); `pii` as above.
fn output_filtered(extra: Value) -> Gateway {
    let mut cfg = json!({
        "model_list": [openai_dep("gpt", "a.test"), anthropic_dep("claude", "c.test")],
        "guardrails": [
            {"guardrail_name": "out", "litellm_params": {"guardrail": "litellm_content_filter", "mode": "post_call", "default_on": true,
              "patterns": [
                {"pattern_type": "prebuilt", "pattern_name": "email", "action": "MASK"},
                {"pattern_type": "prebuilt", "pattern_name": "us_ssn", "action": "BLOCK"}]}},
            {"guardrail_name": "secrets", "litellm_params": {"guardrail": "litellm_content_filter", "mode": "pre_call",
              "patterns": [{"pattern_name": "api_key", "action": "BLOCK"}]}}
        ],
        "gateway": clusters()});
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if k == "gateway" {
                c["gateway"]
                    .as_object_mut()
                    .unwrap()
                    .extend(v.as_object().unwrap().clone());
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    Gateway::new(cfg)
}

fn openai_answer(content: &str) -> Vec<u8> {
    json!({"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}})
    .to_string()
    .into_bytes()
}

#[test]
fn post_call_masks_a_whole_answer_even_from_a_passthrough_provider() {
    let mut gw = output_filtered(json!({}));
    let mut rq = gw.chat(
        &[],
        &json!({"model": "gpt", "messages": [{"role": "user", "content": "who?"}]}),
    );
    assert_eq!(rq.upstream().body["messages"][0]["content"], "who?");
    rq.respond(
        200,
        "application/json",
        &openai_answer("Write to jane@example.com, she knows."),
    );
    rq.finish();
    let got = rq.client();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.json()["choices"][0]["message"]["content"],
        "Write to [EMAIL_REDACTED], she knows."
    );
    assert_eq!(
        got.json()["usage"]["completion_tokens"],
        9,
        "the answer is otherwise as sent"
    );
    assert_eq!(got.header("x-litellm-applied-guardrails"), Some("out"));
    assert_eq!(
        rq.host
            .counter("llm_gateway.guardrail.masked.guardrail.out"),
        1
    );
    assert_eq!(rq.host.filter_state["llm_gateway.completion_tokens"], "9");
}

#[test]
fn post_call_block_answers_400_and_the_answer_is_still_charged() {
    let mut gw = output_filtered(json!({}));
    let mut rq = gw.chat(
        &[],
        &json!({"model": "gpt", "messages": [{"role": "user", "content": "ssn?"}]}),
    );
    rq.respond(
        200,
        "application/json",
        &openai_answer("It is 078-05-1120."),
    );
    rq.finish();
    let got = rq.client();
    assert_eq!(got.status, 400);
    assert_eq!(got.json()["error"]["code"], "content_policy_violation");
    assert!(!got.text().contains("078-05-1120"), "{}", got.text());
    assert_eq!(
        rq.host
            .counter("llm_gateway.guardrail.blocked.guardrail.out"),
        1
    );
    // The provider answered and was paid: its tokens are counted.
    assert_eq!(rq.host.filter_state["llm_gateway.completion_tokens"], "9");
}

#[test]
fn post_call_masks_a_stream_whose_match_is_split_across_chunks() {
    let mut gw = output_filtered(json!({}));
    let mut rq = gw.chat(&[], &json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "mail?"}]}));
    rq.respond_stream_headers(200, "text/event-stream");
    let mut sent = Vec::new();
    for ev in anthropic_text_stream(&["Mail jane.d", "oe@exam", "ple.com", " today"]) {
        sent.extend(rq.chunk(ev.as_bytes(), false));
    }
    sent.extend(rq.chunk(b"", true));
    rq.finish();
    let data = sse_data(&rq.client().body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&data), "Mail [EMAIL_REDACTED] today");
    assert!(
        !String::from_utf8_lossy(&sent).contains("jane"),
        "no piece of it leaves"
    );
    assert_eq!(
        rq.host
            .counter("llm_gateway.guardrail.masked.guardrail.out"),
        1
    );
}

#[test]
fn post_call_block_ends_a_stream_with_an_error_event_before_the_span() {
    let mut gw = output_filtered(json!({}));
    let mut rq = gw.chat(&[], &json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "ssn?"}]}));
    rq.respond_stream_headers(200, "text/event-stream");
    for ev in anthropic_text_stream(&["Sure. It is 078-0", "5-1120, and more ", "text follows"]) {
        rq.chunk(ev.as_bytes(), false);
    }
    // Counted when it happens, not when the provider's stream ends.
    assert_eq!(
        rq.host
            .counter("llm_gateway.guardrail.blocked.guardrail.out"),
        1
    );
    rq.chunk(b"", true);
    rq.finish();
    let got = rq.client();
    let text = got.text();
    assert!(!text.contains("078-0") && !text.contains("more"), "{text}");
    let data = sse_data(&got.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let err: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "content_policy_violation");
    assert_eq!(data.iter().filter(|d| d.contains("\"error\"")).count(), 1);
    assert_eq!(
        rq.host
            .counter("llm_gateway.guardrail.blocked.guardrail.out"),
        1
    );
}

#[test]
fn a_keys_guardrails_run_on_its_requests_only() {
    let mut gw = output_filtered(json!({"virtual_keys": [
        {"key_hash": key_hash("sk-strict"), "key_alias": "strict", "guardrails": ["secrets"]},
        {"key_hash": key_hash("sk-loose"), "key_alias": "loose"}]}));
    let leaked = json!({"model": "gpt", "messages": [{"role": "user", "content": "sk-proj-abcdefghijklmnopqrstuv"}]});
    let rq = gw.chat(&[("authorization", "Bearer sk-strict")], &leaked);
    let r = rq.refused().expect("the key's guardrail blocks");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.header("x-litellm-applied-guardrails"),
        Some("out,secrets")
    );
    let mut rq = gw.chat(&[("authorization", "Bearer sk-loose")], &leaked);
    assert_eq!(
        rq.upstream().body["messages"][0]["content"],
        "sk-proj-abcdefghijklmnopqrstuv"
    );
    rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
    rq.finish();
}

#[test]
fn only_the_operator_lets_a_caller_switch_a_guardrail_off() {
    let answer = openai_answer("mail jane@example.com");
    // Allowed for `out`: both LiteLLM forms switch it off.
    let mut gw = output_filtered(json!({"gateway": {"guardrails_caller_may_disable": ["out"]}}));
    for body in [
        json!({"model": "gpt", "guardrails": {"out": false}, "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "gpt", "metadata": {"guardrails": {"out": false}, "team": "t"}, "messages": [{"role": "user", "content": "x"}]}),
    ] {
        let mut rq = gw.chat(&[], &body);
        let up = rq.upstream();
        assert!(up.body.get("guardrails").is_none(), "{}", up.body);
        if let Some(meta) = up.body.get("metadata") {
            assert_eq!(
                meta,
                &json!({"team": "t"}),
                "only the gateway's field is taken out"
            );
        }
        rq.respond(200, "application/json", &answer);
        rq.finish();
        assert_eq!(
            rq.client().json()["choices"][0]["message"]["content"],
            "mail jane@example.com"
        );
        assert_eq!(rq.client().header("x-litellm-applied-guardrails"), None);
    }
    // Not allowed (the default): the guardrail runs anyway.
    let mut gw = output_filtered(json!({}));
    let mut rq = gw.chat(&[], &json!({"model": "gpt", "guardrails": {"out": false}, "messages": [{"role": "user", "content": "x"}]}));
    rq.respond(200, "application/json", &answer);
    rq.finish();
    assert_eq!(
        rq.client().json()["choices"][0]["message"]["content"],
        "mail [EMAIL_REDACTED]"
    );
    assert_eq!(
        rq.client().header("x-litellm-applied-guardrails"),
        Some("out")
    );
}
