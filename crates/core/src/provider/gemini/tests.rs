//! Unit tests of `provider::gemini` (a `#[cfg(test)]` module of its `mod.rs`).

use super::*;

fn test_meta(include_usage: bool) -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-abc".into(),
        created: 1,
        model: "gemini-2.5-flash".into(),
        include_usage,
    }
}

#[test]
fn finish_reasons_map() {
    assert_eq!(finish_reason(Some("STOP")), "stop");
    assert_eq!(finish_reason(Some("MAX_TOKENS")), "length");
    for r in [
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
    ] {
        assert_eq!(finish_reason(Some(r)), "content_filter", "{r}");
    }
    assert_eq!(finish_reason(Some("MALFORMED_FUNCTION_CALL")), "stop");
    assert_eq!(finish_reason(Some("SOMETHING_NEW")), "stop");
    assert_eq!(finish_reason(None), "stop");
}

#[test]
fn signatures_round_trip_through_ids() {
    let sig = "CiQB4/H+Xt5tdo=";
    let id = id_with_signature("call_x_0".into(), Some(sig));
    assert_eq!(id, "call_x_0__thought__CiQB4_H-Xt5tdo");
    assert!(id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    assert_eq!(signature_from_id(&id).as_deref(), Some("CiQB4/H+Xt5tdo=="));
    assert_eq!(signature_from_id("call_plain"), None);
    assert_eq!(id_with_signature("a".into(), None), "a");
}

#[test]
fn versioned_bases() {
    assert_eq!(versioned_base("", "v1beta"), "/v1beta");
    assert_eq!(versioned_base("/v1", "v1beta"), "/v1");
    assert_eq!(versioned_base("/proxy/v1beta1", "v1"), "/proxy/v1beta1");
    assert_eq!(versioned_base("/gemini", "v1beta"), "/gemini/v1beta");
    assert_eq!(versioned_base("/video", "v1"), "/video/v1");
}

#[test]
fn media_types_from_urls() {
    assert_eq!(
        mime_from_extension("https://x.test/a.PNG?x=1"),
        Some("image/png")
    );
    assert_eq!(
        mime_from_extension("https://x.test/a.jpeg#f"),
        Some("image/jpeg")
    );
    assert_eq!(mime_from_extension("https://x.test/files/abc"), None);
    assert_eq!(mime_from_extension("https://x.test.com/"), None);
    let p = media_part(Api::Gemini, "data:image/jpg;base64,AAAA", None, "p").unwrap();
    assert_eq!(p["inlineData"]["mimeType"], "image/jpeg");
    assert!(media_part(Api::Gemini, "data:image/png,raw", None, "p").is_err());
    assert!(media_part(Api::Gemini, "gs://b/a.png", None, "p").is_err());
    let p = media_part(Api::Vertex, "gs://b/a.png", None, "p").unwrap();
    assert_eq!(p["fileData"]["fileUri"], "gs://b/a.png");
    let e = media_part(Api::Gemini, "https://x.test/files/abc", None, "p").unwrap_err();
    assert!(e.message.contains("format"), "{}", e.message);
    let p = media_part(
        Api::Gemini,
        "https://x.test/files/abc",
        Some("video/mp4"),
        "p",
    )
    .unwrap();
    assert_eq!(p["fileData"]["mimeType"], "video/mp4");
    assert!(media_part(Api::Gemini, "ftp://x/a.png", None, "p").is_err());
}

#[test]
fn usage_counts_thoughts_once() {
    let mut c = TokenCounts::default();
    // candidates exclude thoughts: prompt + candidates != total
    c.merge(&json!({"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 20, "totalTokenCount": 35}));
    assert_eq!(
        c.usage(),
        Usage {
            prompt_tokens: 10,
            completion_tokens: 25,
            total_tokens: 35
        }
    );
    // candidates include thoughts
    let mut c = TokenCounts::default();
    c.merge(&json!({"promptTokenCount": 10, "candidatesTokenCount": 25, "thoughtsTokenCount": 20, "totalTokenCount": 35}));
    assert_eq!(c.usage().completion_tokens, 25);
    let v = json!(c.openai());
    assert_eq!(v["completion_tokens_details"]["reasoning_tokens"], 20);
    // no total
    let mut c = TokenCounts::default();
    c.merge(&json!({"promptTokenCount": 3, "candidatesTokenCount": 4}));
    assert_eq!(c.usage(), Usage::new(3, 4));
}

#[test]
fn credentials_that_are_tokens() {
    assert!(credential_is_token("ya29.a0AfH6SM-token_x"));
    assert!(!credential_is_token("{\"type\": \"service_account\"}"));
    assert!(!credential_is_token("/etc/sa.json"));
    assert!(!credential_is_token("sa.json"));
    assert!(!credential_is_token(""));
}

#[test]
fn stream_errors_carry_statuses() {
    let v = json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}});
    assert_eq!(stream_error_status(&v), 429);
    let v = json!({"error": {"message": "x", "status": "UNAVAILABLE"}});
    assert_eq!(stream_error_status(&v), 503);
    let e = error_from_value(Api::Gemini, 503, &v);
    assert_eq!((e.status, e.kind), (503, ErrorKind::Unavailable));
    assert_eq!(e.code.as_deref(), Some("UNAVAILABLE"));
}

#[test]
fn stream_holds_no_more_than_a_partial_line() {
    let mut s = GeminiStream::new(Api::Gemini, test_meta(true));
    let mut out = Vec::new();
    let ev = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"qqq\"}],\"role\":\"model\"},\"index\":0}]}\r\n\r\n";
    for _ in 0..1000 {
        s.feed(ev.as_bytes(), &mut out);
        assert_eq!(s.decoder.pending_bytes(), 0);
        assert!(s.candidates.len() <= 1);
    }
    s.feed(&ev.as_bytes()[..10], &mut out);
    assert_eq!(s.decoder.pending_bytes(), 10);
    assert_eq!(String::from_utf8(out).unwrap().matches("qqq").count(), 1000);
}

#[test]
fn nothing_follows_done() {
    let mut s = GeminiStream::new(Api::Gemini, test_meta(false));
    let mut out = Vec::new();
    s.feed(
        b"data: {\"error\":{\"code\":500,\"message\":\"x\",\"status\":\"INTERNAL\"}}\n\n",
        &mut out,
    );
    let done_len = out.len();
    s.feed(
        b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"late\"}]}}]}\n\n",
        &mut out,
    );
    s.finish(&mut out);
    assert_eq!(out.len(), done_len);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("[DONE]").count(), 1);
    assert!(!text.contains("late"));
}

#[test]
fn odd_shapes_do_not_panic() {
    let meta = test_meta(true);
    for body in [
        &b"null"[..],
        b"[]",
        b"[1, 2]",
        b"{\"candidates\": 5}",
        b"{\"candidates\": [1, null, {\"content\": 3}, {\"content\": {\"parts\": [7, {\"text\": 5}, {\"functionCall\": 1}]}}]}",
        b"{\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"f\", \"args\": \"s\"}}]}, \"finishReason\": 3}], \"usageMetadata\": [1]}",
        b"{\"error\": \"boom\"}",
        b"{\"embedding\": {\"values\": 3}}",
        b"{\"predictions\": [{\"embeddings\": {\"values\": [1], \"statistics\": {\"token_count\": -4}}}]}",
    ] {
        let _ = translate_response(Api::Gemini, body, &meta);
        let _ = embeddings_response(Api::Vertex, body, &meta);
        let _ = error_from_body(Api::Vertex, 500, body);
    }
    let events = [
        "{\"candidates\": [{\"index\": \"x\", \"content\": {\"parts\": 5}}]}",
        "{\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"args\": [1]}}]}, \"finishReason\": \"STOP\"}]}",
        "{\"promptFeedback\": {\"blockReason\": \"SAFETY\"}}",
        "{\"usageMetadata\": {\"promptTokenCount\": \"x\"}}",
        "[1,2]",
        "\"str\"",
        "{\"error\": 7}",
        "{not json}",
    ];
    for ev in events {
        let mut s = GeminiStream::new(Api::Vertex, meta.clone());
        let mut out = Vec::new();
        s.feed(format!("data: {ev}\n\n").as_bytes(), &mut out);
        s.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap().matches("[DONE]").count(),
            1,
            "{ev}"
        );
    }
}

/// Parse a one-deployment config; the error as "field: reason".
fn load(params: Value, env: &[(&str, &str)]) -> Result<Deployment, String> {
    let cfg = json!({
        "model_list": [{ "model_name": "m", "litellm_params": params }],
        "gateway": { "clusters": { "vertex_ai": "c", "gemini": "c" } },
    });
    let env = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    crate::provider::parse_config(cfg.to_string().as_bytes(), &env)
        .map(|c| c.deployments[0].clone())
        .map_err(|e| format!("{}: {}", e.field, e.reason))
}

fn vertex(extra: Value) -> Value {
    let mut p = json!({
        "model": "vertex_ai/gemini-2.5-pro",
        "vertex_project": "proj-1",
        "vertex_location": "europe-west4",
        "api_base": "https://europe-west4-aiplatform.googleapis.com",
    });
    if let (Some(o), Value::Object(e)) = (p.as_object_mut(), extra) {
        for (k, v) in e {
            if v.is_null() {
                o.remove(&k);
            } else {
                o.insert(k, v);
            }
        }
    }
    p
}

#[test]
fn vertex_needs_project_and_location() {
    let e = load(vertex(json!({"vertex_project": null})), &[]).unwrap_err();
    assert!(
        e.contains("litellm_params") && e.contains("vertex_project is required"),
        "{e}"
    );
    let e = load(vertex(json!({"vertex_location": null})), &[]).unwrap_err();
    assert!(e.contains("vertex_location is required"), "{e}");
    let e = load(vertex(json!({"vertex_project": "a/b"})), &[]).unwrap_err();
    assert!(e.contains("vertex_project `a/b`"), "{e}");
    assert!(load(vertex(json!({})), &[]).is_ok());
}

#[test]
fn vertex_without_api_base_uses_its_locations_endpoint() {
    let dep = load(vertex(json!({"api_base": null})), &[]).unwrap();
    assert_eq!(
        dep.api_base.authority,
        "europe-west4-aiplatform.googleapis.com"
    );
    // The global host with a regional location cannot serve it.
    let e = load(
        vertex(json!({"api_base": "https://aiplatform.googleapis.com"})),
        &[],
    )
    .unwrap_err();
    assert!(
        e.contains("api_base") && e.contains("https://europe-west4-aiplatform.googleapis.com"),
        "{e}"
    );
    let dep = load(
        vertex(json!({"api_base": null, "vertex_location": "global"})),
        &[],
    )
    .unwrap();
    assert_eq!(dep.api_base.authority, "aiplatform.googleapis.com");
}

#[test]
fn vertex_token_sources() {
    // The default key variable.
    let dep = load(vertex(json!({})), &[("VERTEXAI_ACCESS_TOKEN", "ya29.env")]).unwrap();
    assert_eq!(
        headers(Api::Vertex, &dep)[1],
        ("authorization".to_string(), "Bearer ya29.env".to_string())
    );
    // A service-account JSON cannot be used.
    let sa = r#"{"type": "service_account", "private_key": "x"}"#;
    let e = load(vertex(json!({"vertex_credentials": sa})), &[]).unwrap_err();
    assert!(
        e.contains("vertex_credentials") && e.contains("OAuth"),
        "{e}"
    );
    let e = load(
        vertex(json!({"vertex_credentials": "/secrets/sa.json"})),
        &[],
    )
    .unwrap_err();
    assert!(e.contains("vertex_credentials"), "{e}");
    // ... unless api_key gives the token anyway.
    assert!(load(
        vertex(json!({"vertex_credentials": sa, "api_key": "ya29.k"})),
        &[]
    )
    .is_ok());
    // No token at all: allowed (Envoy may inject Authorization), none sent.
    let dep = load(vertex(json!({})), &[]).unwrap();
    assert_eq!(headers(Api::Vertex, &dep).len(), 1);
}

#[test]
fn vertex_serves_google_models_and_claude_only() {
    let claude = load(vertex(json!({"model": "vertex_ai/claude-sonnet-4-5"})), &[]).unwrap();
    assert_eq!(claude.model, "claude-sonnet-4-5");
    // Claude on Vertex passes the same endpoint checks.
    let e = load(
        vertex(json!({"model": "vertex_ai/claude-sonnet-4-5", "vertex_project": null})),
        &[],
    )
    .unwrap_err();
    assert!(e.contains("vertex_project is required"), "{e}");
    let e = load(vertex(json!({"model": "vertex_ai/meta/llama-3"})), &[]).unwrap_err();
    assert!(e.contains("publisher models"), "{e}");
    let e = load(json!({"model": "gemini/gemini 2"}), &[]).unwrap_err();
    assert!(e.contains("request path"), "{e}");
    assert!(load(json!({"model": "gemini/gemini-2.5-flash"}), &[]).is_ok());
}

#[test]
fn finish_is_idempotent() {
    let mut s = GeminiStream::new(Api::Gemini, test_meta(false));
    let mut out = Vec::new();
    s.finish(&mut out);
    s.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("[DONE]").count(), 1);
    assert!(text.contains("upstream_stream_truncated"));
}
