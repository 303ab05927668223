//! Unit tests of `provider::cohere` (a `#[cfg(test)]` module of its `mod.rs`).

use super::*;

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-x".into(),
        created: 1,
        model: "command-a".into(),
        include_usage: true,
    }
}

#[test]
fn finish_reasons_map() {
    assert_eq!(finish_reason(Some("COMPLETE"), None), Ok("stop"));
    assert_eq!(finish_reason(Some("MAX_TOKENS"), None), Ok("length"));
    assert_eq!(finish_reason(Some("TOOL_CALL"), None), Ok("tool_calls"));
    assert_eq!(finish_reason(Some("STOP_SEQUENCE"), None), Ok("stop"));
    assert_eq!(
        finish_reason(Some("ERROR_TOXIC"), None),
        Ok("content_filter")
    );
    assert_eq!(
        finish_reason(Some("SAFETY"), Some("blocked")),
        Ok("content_filter")
    );
    assert_eq!(finish_reason(Some("NEW_REASON"), None), Ok("stop"));
    assert_eq!(
        finish_reason(Some("ERROR"), Some("x")).unwrap_err().status,
        502
    );
    assert_eq!(
        finish_reason(Some("TIMEOUT"), None).unwrap_err().status,
        504
    );
}

#[test]
fn odd_shapes_do_not_panic() {
    for body in [
        &b"null"[..],
        b"[]",
        b"{\"message\": 5}",
        b"{\"message\": {\"content\": [1, null, {\"type\": 3}], \"tool_calls\": [{}]}}",
        b"{\"message\": {\"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1}}}]}, \"usage\": {\"tokens\": {\"input_tokens\": 1.5}}}",
    ] {
        let _ = translate_response(body, &meta());
        let _ = error_from_body(500, body);
    }
    for ev in [
        "{\"type\":\"tool-call-delta\",\"index\":7,\"delta\":null}",
        "{\"type\":\"tool-call-start\",\"index\":\"x\",\"delta\":{\"message\":{\"tool_calls\":[]}}}",
        "{\"type\":\"message-end\",\"delta\":[1]}",
        "{\"type\":\"content-delta\",\"delta\":{\"message\":{\"content\":7}}}",
        "[1,2]",
        "nonsense",
    ] {
        let mut s = Cohere.stream(meta());
        let mut out = Vec::new();
        s.feed(format!("data: {ev}\n\n").as_bytes(), &mut out);
        s.finish(&mut out);
        assert_eq!(String::from_utf8(out).unwrap().matches("[DONE]").count(), 1);
    }
}

#[test]
fn invalid_token_is_401() {
    let e = error_from_body(498, br#"{"message":"invalid api token"}"#);
    assert_eq!((e.status, e.message.as_str()), (401, "invalid api token"));
}
