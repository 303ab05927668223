//! `post_call` guardrails over answers, table-driven from
//! `tests/guardrails/output_cases.json`: each case's answer text is checked
//! whole (a `chat.completion`) and as a stream cut at every character, in
//! SSE bytes split at odd sizes. A masked case must come out exactly as
//! `want` however it was cut; a blocked case must end the stream with one
//! `content_policy_violation` error event and `[DONE]`, and the client
//! must never receive the secret or anything after it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use llm_gateway::guardrails::output::OutputGuard;
use llm_gateway::guardrails::spec::{parse_entry, GuardrailSpec, Parsed, ServiceEnv};
use serde_json::{json, Value};

fn cases() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/guardrails/output_cases.json"
    );
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 8, "the table lost cases: {}", cases.len());
    cases
}

fn spec(case: &Value) -> Arc<GuardrailSpec> {
    let mut params = case["rules"].clone();
    params["guardrail"] = json!("litellm_content_filter");
    params["mode"] = json!("post_call");
    match parse_entry(
        0,
        &json!({"guardrail_name": "out", "litellm_params": params}),
        &ServiceEnv::none(),
    )
    .unwrap()
    {
        Parsed::Enforced(s) => Arc::new(s),
        Parsed::Unenforced(why) => panic!("{why}"),
    }
}

fn chunk(content: &str) -> String {
    let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                   "model": "m", "choices": [{"index": 0, "delta": {"content": content},
                   "finish_reason": null}]});
    format!("data: {c}\n\n")
}

/// The stream of `pieces`, a finish chunk and `[DONE]`, fed to a guard in
/// `step`-byte slices; returns the bytes the client gets.
fn stream_through(guard: &mut OutputGuard, pieces: &[&str], step: usize) -> String {
    let mut sse = String::from("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n");
    for p in pieces {
        sse.push_str(&chunk(p));
    }
    sse.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    let bytes = sse.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + step).min(bytes.len());
        out.extend(guard.feed_stream(&bytes[at..end], end == bytes.len()));
        at = end;
    }
    String::from_utf8(out).unwrap()
}

/// The content the client saw, and the error event if there was one.
fn client_view(sse: &str) -> (String, Option<Value>, bool) {
    let mut text = String::new();
    let mut error = None;
    let events: Vec<&str> = sse
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap())
        .collect();
    let done_last = events.last() == Some(&"[DONE]");
    assert_eq!(
        events.iter().filter(|e| **e == "[DONE]").count(),
        1,
        "{sse}"
    );
    for e in events.iter().filter(|e| **e != "[DONE]") {
        let v: Value = serde_json::from_str(e).unwrap();
        if v.get("error").is_some() {
            assert!(error.is_none(), "one error event: {sse}");
            error = Some(v);
            continue;
        }
        assert!(error.is_none(), "nothing after the error event: {sse}");
        for c in v["choices"].as_array().unwrap() {
            if let Some(s) = c["delta"]["content"].as_str() {
                text.push_str(s);
            }
        }
    }
    (text, error, done_last)
}

/// Every way to cut `text` in two at a character boundary, and one chunk
/// per character.
fn splits(text: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = text
        .char_indices()
        .map(|(i, _)| vec![&text[..i], &text[i..]])
        .collect();
    out.push(
        text.char_indices()
            .map(|(i, c)| &text[i..i + c.len_utf8()])
            .collect(),
    );
    out
}

#[test]
fn whole_answers_are_masked_or_blocked() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let body = json!({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]});
        let mut guard = OutputGuard::new(vec![spec(&case)]);
        let got = guard.check_body(body.to_string().as_bytes());
        match case["want"].as_str() {
            Some(want) => {
                let out = got.unwrap_or_else(|e| panic!("{name}: blocked: {e}"));
                let content = match out {
                    Some(b) => serde_json::from_slice::<Value>(&b).unwrap()["choices"][0]
                        ["message"]["content"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    None => text.to_string(),
                };
                assert_eq!(content, want, "{name}");
                let outcome = guard.outcomes().next().unwrap().1.as_str();
                assert_eq!(
                    outcome,
                    if want == text { "passed" } else { "masked" },
                    "{name}"
                );
            }
            None => {
                let e = got.expect_err(name);
                assert_eq!(e.status, 400, "{name}");
                assert_eq!(
                    e.code.as_deref(),
                    Some("content_policy_violation"),
                    "{name}"
                );
                assert!(
                    e.message.contains(case["blocked"].as_str().unwrap()),
                    "{name}: {e}"
                );
                assert!(
                    !e.message.contains(case["secret"].as_str().unwrap()),
                    "{name}: {e}"
                );
                assert_eq!(guard.outcomes().next().unwrap().1.as_str(), "blocked");
            }
        }
    }
}

#[test]
fn streams_cut_anywhere_are_masked_or_blocked_the_same() {
    let mut checked = 0;
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        for pieces in splits(text) {
            for step in [1, 7, 4096] {
                let mut guard = OutputGuard::new(vec![spec(&case)]);
                let sse = stream_through(&mut guard, &pieces, step);
                let (seen, error, done_last) = client_view(&sse);
                assert!(done_last, "{name}: [DONE] ends the stream: {sse}");
                match case["want"].as_str() {
                    Some(want) => {
                        assert!(error.is_none(), "{name} {pieces:?}: {sse}");
                        assert_eq!(seen, want, "{name} cut {pieces:?} step {step}");
                    }
                    None => {
                        let secret = case["secret"].as_str().unwrap();
                        let e = error.unwrap_or_else(|| panic!("{name} {pieces:?}: no error"));
                        assert_eq!(e["error"]["code"], "content_policy_violation", "{name}");
                        assert!(!sse.contains(secret), "{name} {pieces:?}: leaked: {sse}");
                        let before = &text[..text.find(secret).unwrap()];
                        assert!(
                            before.starts_with(&seen),
                            "{name} {pieces:?}: sent more than what precedes the span: {seen:?}"
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "only {checked} streams checked");
}

#[test]
fn several_choices_are_held_apart() {
    let case = &cases()[0];
    let mut guard = OutputGuard::new(vec![spec(case)]);
    let ev = |i: u64, s: &str| {
        let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": i, "delta": {"content": s}, "finish_reason": null}]});
        format!("data: {c}\n\n")
    };
    let sse = [
        ev(0, "mail jane@exa"),
        ev(1, "mail bob@exa"),
        ev(0, "mple.com now"),
        ev(1, "mple.org later"),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let out = String::from_utf8(guard.feed_stream(sse.as_bytes(), true)).unwrap();
    let mut by_choice = [String::new(), String::new()];
    for e in out.split("\n\n").filter(|e| e.starts_with("data: {")) {
        let v: Value = serde_json::from_str(&e[6..]).unwrap();
        for c in v["choices"].as_array().unwrap() {
            let i = c["index"].as_u64().unwrap() as usize;
            by_choice[i].push_str(c["delta"]["content"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(by_choice[0], "mail [EMAIL_REDACTED] now");
    assert_eq!(by_choice[1], "mail [EMAIL_REDACTED] later");
    assert!(out.ends_with("data: [DONE]\n\n"));
}
