//! Unit tests of `provider::ollama` (a `#[cfg(test)]` module of its `mod.rs`).

use super::*;

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-abc".into(),
        created: 1,
        model: "llama3.2".into(),
        include_usage: true,
    }
}

#[test]
fn images_need_base64() {
    assert_eq!(
        base64_image("data:image/png;base64,AAAA", "p").unwrap(),
        "AAAA"
    );
    let e = base64_image("https://x.test/a.png", "p").unwrap_err();
    assert!(e.message.contains("base64"), "{}", e.message);
    assert!(base64_image("data:text/plain;base64,AAAA", "p").is_err());
    assert!(base64_image("data:image/png,raw", "p").is_err());
    assert!(base64_image("", "p").is_err());
}

#[test]
fn deterministic_call_ids() {
    assert_eq!(call_id(&meta(), 2), "call_abc_2");
}

#[test]
fn odd_shapes_do_not_panic() {
    for body in [
        &b"null"[..],
        b"[]",
        b"{\"message\": []}",
        b"{\"message\": {\"content\": 5, \"tool_calls\": [1, {\"function\": 3}]}}",
        b"{\"error\": {\"x\": 1}}",
    ] {
        let _ = translate_response(body, &meta());
        let _ = Ollama.error(500, body);
    }
    for line in [
        "{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":[1]}}]},\"done\":\"yes\"}",
        "{\"error\":{\"nested\":true}}",
        "[1]",
        "\"s\"",
        "not json",
        "{\"done\":true,\"prompt_eval_count\":-1}",
    ] {
        let mut s = Ollama.stream(meta());
        let mut out = Vec::new();
        s.feed(format!("{line}\n").as_bytes(), &mut out);
        s.finish(&mut out);
        assert_eq!(String::from_utf8(out).unwrap().matches("[DONE]").count(), 1, "{line}");
    }
}

#[test]
fn overlong_line_ends_the_stream() {
    let mut s = OllamaStream {
        decoder: NdjsonDecoder::with_max_line(64),
        w: ChunkWriter::new(meta()),
        tool_calls: 0,
        usage: None,
    };
    let mut out = Vec::new();
    s.feed(&[b'x'; 100], &mut out);
    s.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("longer than 64 bytes"), "{text}");
    assert_eq!(text.matches("[DONE]").count(), 1);
}
