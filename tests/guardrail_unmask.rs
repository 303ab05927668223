//! `output_parse_pii` in the request flow, natively: what a guardrail masks
//! in the request goes to the provider as numbered tokens, and the client
//! gets its own values back where the model wrote the tokens — in whole
//! answers (content and tool call arguments) and in streams, a token cut
//! across chunks included.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use serde_json::{json, Value};
use support::{anthropic_text_stream, sse_data, streamed_text, Gateway};

fn gateway(guardrails: Value, settings: Value) -> Gateway {
    Gateway::new(json!({
        "model_list": [
            {"model_name": "gpt", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_base": "http://a.test/v1", "api_key": "sk-upstream"}},
            {"model_name": "claude", "litellm_params": {
                "model": "anthropic/claude-x", "api_base": "http://c.test", "api_key": "ak-upstream"}}],
        "guardrails": guardrails,
        "litellm_settings": settings,
        "gateway": {"clusters": {"a.test": "cluster_a", "c.test": "cluster_c", "guard.test:8080": "guard"}}}))
}

fn filter(extra: Value) -> Value {
    let mut p = json!({"guardrail": "litellm_content_filter", "mode": "pre_call", "default_on": true,
        "output_parse_pii": true,
        "patterns": [{"pattern_type": "prebuilt", "pattern_name": "email", "action": "MASK"}]});
    p.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!([{"guardrail_name": "pii", "litellm_params": p}])
}

fn answer(message: Value) -> Vec<u8> {
    json!({"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
           "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}})
    .to_string()
    .into_bytes()
}

#[test]
fn the_provider_sees_numbered_tokens_and_the_client_its_own_values() {
    let mut gw = gateway(filter(json!({})), json!({}));
    let mut rq = gw.chat(
        &[],
        &json!({"model": "gpt", "messages": [
        {"role": "user", "content": "Mail jane@example.com or bob@example.org."},
        {"role": "user", "content": [{"type": "text", "text": "Again: jane@example.com"}]}]}),
    );
    let up = rq.upstream();
    assert_eq!(
        up.body["messages"][0]["content"],
        "Mail [EMAIL_REDACTED_1] or [EMAIL_REDACTED_2]."
    );
    assert_eq!(
        up.body["messages"][1]["content"][0]["text"], "Again: [EMAIL_REDACTED_1]",
        "one value keeps its token across messages"
    );
    let args = json!({"to": "[EMAIL_REDACTED_2]", "cc": ["[EMAIL_REDACTED_1]"]}).to_string();
    rq.respond(
        200,
        "application/json",
        &answer(json!({"role": "assistant",
            "content": "Done: [EMAIL_REDACTED_1], then [EMAIL_REDACTED_2]",
            "tool_calls": [{"id": "c1", "type": "function",
                            "function": {"name": "send", "arguments": args}}]})),
    );
    rq.finish();
    let got = rq.client();
    assert_eq!(got.status, 200);
    let v = got.json();
    let message = &v["choices"][0]["message"];
    assert_eq!(
        message["content"],
        "Done: jane@example.com, then bob@example.org"
    );
    let args: Value = serde_json::from_str(
        message["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        args,
        json!({"to": "bob@example.org", "cc": ["jane@example.com"]})
    );
    assert_eq!(v["usage"]["completion_tokens"], 9);
}

#[test]
fn without_the_setting_the_tokens_stay_and_nothing_is_kept() {
    let mut gw = gateway(filter(json!({"output_parse_pii": false})), json!({}));
    let mut rq = gw.chat(
        &[],
        &json!({"model": "gpt", "messages": [
        {"role": "user", "content": "Mail jane@example.com"}]}),
    );
    assert_eq!(
        rq.upstream().body["messages"][0]["content"],
        "Mail [EMAIL_REDACTED]"
    );
    rq.respond(
        200,
        "application/json",
        &answer(
            json!({"role": "assistant", "content": "To [EMAIL_REDACTED] and [EMAIL_REDACTED_1]"}),
        ),
    );
    rq.finish();
    assert_eq!(
        rq.client().json()["choices"][0]["message"]["content"],
        "To [EMAIL_REDACTED] and [EMAIL_REDACTED_1]"
    );
}

#[test]
fn a_stream_gets_its_values_back_even_when_a_token_is_split_at_every_byte() {
    let token = "[EMAIL_REDACTED_1]";
    let text = format!("Write to {token} today");
    for at in 1..text.len() {
        let mut gw = gateway(filter(json!({})), json!({}));
        let mut rq = gw.chat(
            &[],
            &json!({"model": "claude", "stream": true, "messages": [
            {"role": "user", "content": "Mail jane@example.com"}]}),
        );
        assert_eq!(
            rq.upstream().body["messages"][0]["content"][0]["text"],
            "Mail [EMAIL_REDACTED_1]"
        );
        rq.respond_stream_headers(200, "text/event-stream");
        let mut sent = Vec::new();
        for ev in anthropic_text_stream(&[&text[..at], &text[at..]]) {
            sent.extend(rq.chunk(ev.as_bytes(), false));
        }
        sent.extend(rq.chunk(b"", true));
        rq.finish();
        let data = sse_data(&rq.client().body);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        assert_eq!(
            streamed_text(&data),
            "Write to jane@example.com today",
            "split at {at}"
        );
        assert!(
            !String::from_utf8_lossy(&sent).contains("REDACTED"),
            "no piece of a token reaches the client (split at {at})"
        );
    }
}

#[test]
fn a_token_the_answer_was_cut_off_in_is_restored_at_the_end() {
    let mut gw = gateway(filter(json!({})), json!({}));
    let mut rq = gw.chat(
        &[],
        &json!({"model": "claude", "stream": true, "messages": [
        {"role": "user", "content": "Mail jane@example.com"}]}),
    );
    rq.respond_stream_headers(200, "text/event-stream");
    for ev in anthropic_text_stream(&["Write to ", "[EMAIL_REDAC"]) {
        rq.chunk(ev.as_bytes(), false);
    }
    rq.chunk(b"", true);
    rq.finish();
    assert_eq!(
        streamed_text(&sse_data(&rq.client().body)),
        "Write to jane@example.com"
    );
}

#[test]
fn an_output_filter_still_masks_what_the_model_wrote_itself() {
    let guardrails = json!([
        filter(json!({}))[0].clone(),
        {"guardrail_name": "out", "litellm_params": {"guardrail": "litellm_content_filter",
          "mode": "post_call", "default_on": true,
          "patterns": [{"pattern_type": "prebuilt", "pattern_name": "email", "action": "MASK"}]}}]);
    let mut gw = gateway(guardrails, json!({}));
    let mut rq = gw.chat(
        &[],
        &json!({"model": "gpt", "messages": [
        {"role": "user", "content": "Mail jane@example.com"}]}),
    );
    rq.respond(
        200,
        "application/json",
        &answer(json!({"role": "assistant", "content": "[EMAIL_REDACTED_1] or ceo@corp.example"})),
    );
    rq.finish();
    assert_eq!(
        rq.client().json()["choices"][0]["message"]["content"],
        "jane@example.com or [EMAIL_REDACTED]",
        "the caller's own value comes back; a new one is masked"
    );
}

fn presidio(extra: Value) -> Value {
    let mut p = json!({"guardrail": "presidio", "mode": "pre_call", "default_on": true,
        "presidio_analyzer_api_base": "http://guard.test:8080",
        "presidio_anonymizer_api_base": "http://guard.test:8080"});
    p.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!([{"guardrail_name": "presidio", "litellm_params": p}])
}

fn presidio_round_trip(mut gw: Gateway) {
    let text = "Call Jürgen at jane@x.de";
    let mut rq = gw.chat(
        &[],
        &json!({"model": "gpt", "messages": [{"role": "user", "content": text}]}),
    );
    let call = rq.host.calls[0].clone();
    let at = |s: &str| text[..text.find(s).unwrap()].chars().count();
    let (p, e) = (at("Jürgen"), at("jane@"));
    let findings = json!([
        {"entity_type": "PERSON", "start": p, "end": p + 6, "score": 0.9},
        {"entity_type": "EMAIL_ADDRESS", "start": e, "end": e + 9, "score": 1.0}]);
    rq.answer_call(call.token, Some(200), findings.to_string().as_bytes());
    assert_eq!(
        rq.upstream().body["messages"][0]["content"],
        "Call <PERSON_1> at <EMAIL_ADDRESS_2>"
    );
    rq.respond(
        200,
        "application/json",
        &answer(json!({"role": "assistant", "content": "Hello <PERSON_1> (<EMAIL_ADDRESS_2>)"})),
    );
    rq.finish();
    assert_eq!(
        rq.client().json()["choices"][0]["message"]["content"],
        "Hello Jürgen (jane@x.de)"
    );
}

#[test]
fn presidio_tokens_are_numbered_and_given_back() {
    presidio_round_trip(gateway(
        presidio(json!({"output_parse_pii": true})),
        json!({}),
    ));
}

#[test]
fn litellm_settings_output_parse_pii_turns_it_on_for_presidio() {
    presidio_round_trip(gateway(
        presidio(json!({})),
        json!({"output_parse_pii": true}),
    ));
}

#[test]
fn output_parse_pii_must_be_a_boolean() {
    let cfg = |g: Value, s: Value| {
        llm_gateway::pipeline::load_config(
            json!({"model_list": [{"model_name": "gpt", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_key": "k"}}],
                "guardrails": g, "litellm_settings": s,
                "gateway": {"clusters": {"openai": "openai", "guard.test:8080": "guard"}}})
            .to_string()
            .as_bytes(),
            &|_| None,
        )
    };
    let e = cfg(filter(json!({"output_parse_pii": "yes"})), json!({})).unwrap_err();
    assert_eq!(e.field, "guardrails[0].litellm_params.output_parse_pii");
    let e = cfg(json!([]), json!({"output_parse_pii": 1})).unwrap_err();
    assert_eq!(e.field, "litellm_settings.output_parse_pii");
    assert!(cfg(presidio(json!({})), json!({"output_parse_pii": false})).is_ok());
}
