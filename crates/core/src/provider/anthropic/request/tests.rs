//! Unit tests of `provider::anthropic::request` (a `#[cfg(test)]` module of its `mod.rs`).

use super::*;

#[test]
fn user_id_filter_matches_litellm() {
    assert!(valid_user_id("user-1234"));
    assert!(valid_user_id("team:search"));
    assert!(!valid_user_id("jane.doe@example.com"));
    assert!(!valid_user_id("+1 (555) 123-4567"));
    assert!(valid_user_id("12345"));
    assert!(valid_user_id("a@b"));
}

#[test]
fn tool_choice_forms() {
    let parallel_off = map_tool_choice(None, Some(false)).unwrap();
    assert_eq!(
        parallel_off,
        Some(json!({"type":"auto","disable_parallel_tool_use":true}))
    );
    let none = map_tool_choice(Some(&json!("none")), Some(false)).unwrap();
    assert_eq!(none, Some(json!({"type":"none"})));
    let named = map_tool_choice(
        Some(&json!({"type":"function","function":{"name":"f"}})),
        None,
    )
    .unwrap();
    assert_eq!(named, Some(json!({"type":"tool","name":"f"})));
    assert!(map_tool_choice(Some(&json!("sometimes")), None).is_err());
    assert!(map_tool_choice(Some(&json!({"type":"function"})), None).is_err());
}

fn image(url: &str) -> Result<Value, GatewayError> {
    let b = image_block(&Cow::Borrowed(url), "p")?;
    let mut out = Vec::new();
    b.write(&mut out);
    Ok(serde_json::from_slice(&out).unwrap())
}

#[test]
fn image_urls() {
    let b = image("data:image/png;base64,AAAA").unwrap();
    assert_eq!(b["source"]["media_type"], "image/png");
    assert_eq!(b["source"]["data"], "AAAA");
    let b = image("data:application/pdf;base64,JVBE").unwrap();
    assert_eq!(b["type"], "document");
    let b = image("HTTPS://x.test/a.png").unwrap();
    assert_eq!(b["source"]["type"], "url");
    assert!(image("data:image/png,raw").is_err());
    assert!(image("data:text/plain;base64,AAAA").is_err());
    assert!(image("ftp://x/a.png").is_err());
    assert!(image("data:").is_err());
}

#[test]
fn text_is_copied_as_written_and_escapes_survive() {
    let req = ClientRequest::parse(
        crate::provider::Operation::Chat,
        br#"{"model":"m","messages":[{"role":"user","content":"caf\u00e9 \"q\"\n"},{"role":"assistant","content":"ok \t "}]}"#.to_vec(),
    )
    .unwrap();
    let dep = crate::provider::parse_config(
        br#"{"model_list":[{"model_name":"m","litellm_params":{"model":"anthropic/claude-x"}}],"gateway":{"clusters":{"anthropic":"c"}}}"#,
        &|_| None,
    )
    .unwrap()
    .deployments
    .remove(0);
    let (body, _) = request_body(&req, &dep, false).unwrap();
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains(r#""text":"caf\u00e9 \"q\"\n""#), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["messages"][1]["content"][0]["text"], "ok",
        "prefill trimmed"
    );
}

#[test]
fn structured_outputs_from_claude_4_5_on() {
    for m in [
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5",
        "claude-opus-4-5-20251101",
        "claude-opus-4-6",
        "claude-sonnet-5",
        "claude-haiku-5-5",
    ] {
        assert!(has_structured_outputs(m), "{m}");
    }
    for m in [
        "claude-opus-4-1",
        "claude-opus-4-20250514",
        "claude-sonnet-4",
        "claude-3-7-sonnet-20250219",
        "claude-3-5-sonnet-latest",
        "claude-mythos-preview",
        "gpt-5",
    ] {
        assert!(!has_structured_outputs(m), "{m}");
    }
}
