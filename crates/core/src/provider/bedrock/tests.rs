//! Unit tests of `provider::bedrock` (a `#[cfg(test)]` module of its `mod.rs`).

use super::*;
use crate::codec::eventstream::{encode, encode_event, HeaderValue};

fn meta(include_usage: bool) -> ResponseMeta {
    ResponseMeta {
        id: "x".into(),
        created: 1,
        model: "m".into(),
        include_usage,
    }
}

fn run(s: &mut BedrockStream, pieces: &[&[u8]]) -> String {
    let mut out = Vec::new();
    for p in pieces {
        s.feed(p, &mut out);
    }
    s.finish(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn stop_reasons_map() {
    assert_eq!(finish_reason(Some("end_turn")), "stop");
    assert_eq!(finish_reason(Some("stop_sequence")), "stop");
    assert_eq!(finish_reason(Some("max_tokens")), "length");
    assert_eq!(finish_reason(Some("tool_use")), "tool_calls");
    assert_eq!(
        finish_reason(Some("guardrail_intervened")),
        "content_filter"
    );
    assert_eq!(finish_reason(Some("content_filtered")), "content_filter");
    assert_eq!(finish_reason(None), "stop");
}

#[test]
fn exception_names_map_to_statuses() {
    assert_eq!(status_for_exception("throttlingException"), 429);
    assert_eq!(status_for_exception("ValidationException"), 400);
    assert_eq!(status_for_exception("modelStreamErrorException"), 424);
    assert_eq!(status_for_exception("serviceUnavailableException"), 503);
    assert_eq!(status_for_exception("internalServerException"), 500);
    assert_eq!(
        exception_name("com.amazon#ThrottlingException"),
        "ThrottlingException"
    );
    assert_eq!(
        exception_name("ValidationException:http://x"),
        "ValidationException"
    );
}

#[test]
fn corrupt_crc_ends_with_one_error_event() {
    let mut bytes = encode_event("messageStart", br#"{"role":"assistant"}"#);
    let mut bad = encode_event(
        "contentBlockDelta",
        br#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#,
    );
    let n = bad.len();
    bad[n - 1] ^= 0x55;
    bytes.extend(bad);
    bytes.extend(encode_event("messageStop", br#"{"stopReason":"end_turn"}"#));
    let text = run(&mut BedrockStream::new(meta(false)), &[&bytes]);
    assert!(text.contains("CRC mismatch"), "{text}");
    assert!(!text.contains("\"hi\""));
    assert_eq!(text.matches("[DONE]").count(), 1);
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[test]
fn exception_message_becomes_error_event() {
    let ex = encode(
        &[
            (":message-type", HeaderValue::String("exception".into())),
            (
                ":exception-type",
                HeaderValue::String("throttlingException".into()),
            ),
            (
                ":content-type",
                HeaderValue::String("application/json".into()),
            ),
        ],
        br#"{"message":"Too many requests"}"#,
    );
    let text = run(&mut BedrockStream::new(meta(false)), &[&ex]);
    assert!(text.contains("\"code\":\"throttlingException\""), "{text}");
    assert!(text.contains("rate_limit_error"), "{text}");
    assert_eq!(text.matches("[DONE]").count(), 1);
}

#[test]
fn garbage_and_odd_payloads_do_not_panic() {
    let payloads: [&[u8]; 8] = [
        b"null",
        b"[1,2]",
        br#"{"contentBlockIndex":"x","delta":5}"#,
        br#"{"contentBlockIndex":-1,"delta":{"toolUse":{"input":7}}}"#,
        br#"{"start":{"toolUse":[]}}"#,
        br#"{"usage":[1]}"#,
        br#"{"stopReason":9}"#,
        b"{not json",
    ];
    for p in payloads {
        for ev in [
            "messageStart",
            "contentBlockStart",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata",
        ] {
            let bytes = encode_event(ev, p);
            let text = run(&mut BedrockStream::new(meta(true)), &[&bytes]);
            assert_eq!(text.matches("[DONE]").count(), 1, "{ev} {text}");
        }
    }
    let text = run(
        &mut BedrockStream::new(meta(false)),
        &[b"\xff\xff\xff\xff garbage"],
    );
    assert_eq!(text.matches("[DONE]").count(), 1);
    for body in [
        &b"null"[..],
        b"{}",
        b"{\"output\":{\"message\":{\"content\":[1,{\"toolUse\":5}]}}}",
    ] {
        let _ = translate_response(body, &meta(false));
        let _ = error_from_body(500, body);
        let _ = translate_embeddings(body, &meta(false), true);
    }
}

#[test]
fn nothing_follows_done_and_finish_is_idempotent() {
    let mut bytes = encode_event("messageStop", br#"{"stopReason":"end_turn"}"#);
    bytes.extend(encode_event(
        "metadata",
        br#"{"usage":{"inputTokens":1,"outputTokens":2,"totalTokens":3}}"#,
    ));
    bytes.extend(encode_event(
        "contentBlockDelta",
        br#"{"delta":{"text":"late"}}"#,
    ));
    let mut s = BedrockStream::new(meta(false));
    let mut out = Vec::new();
    s.feed(&bytes, &mut out);
    s.finish(&mut out);
    s.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("late"));
    assert_eq!(text.matches("[DONE]").count(), 1);
    assert_eq!(s.usage(), Some(Usage::new(1, 2)));
}

#[test]
fn base64_vectors_are_little_endian_f32() {
    // 1.0f32 = 00 00 80 3f -> "AACAPw=="
    assert_eq!(embedding::vector_base64(&[json!(1.0)]), "AACAPw==");
    let t = translate_embeddings(
        br#"{"embedding":[1.0],"inputTextTokenCount":3}"#,
        &meta(false),
        true,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v["data"][0]["embedding"], "AACAPw==");
    assert_eq!(t.usage, Some(Usage::new(3, 0)));
}
