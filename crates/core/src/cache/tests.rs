use super::*;
use crate::api::openai::Operation;
use crate::api::request::ClientRequest;

fn req(body: &str) -> ClientRequest {
    ClientRequest::parse(Operation::Chat, body.as_bytes().to_vec()).unwrap()
}

fn key(r: &ClientRequest, scope: &str, guardrails: &[&str], ns: Option<&str>) -> String {
    let g: Vec<String> = guardrails.iter().map(|s| s.to_string()).collect();
    cache_key(&request_digest(r), scope, &g, ns)
}

#[test]
fn key_counts_what_decides_the_answer() {
    let base =
        req(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#);
    let k = key(&base, "", &[], None);
    assert_eq!(k.len(), 64);
    // Order, delivery, the caller's `user`, metadata and the gateway's own keys do not count.
    for same in [
        r#"{"temperature":0.5,"messages":[{"role":"user","content":"hi"}],"model":"m"}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"stream":true,"stream_options":{"include_usage":true}}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"user":"u1","metadata":{"a":1},"cache":{"ttl":5},"num_retries":2}"#,
    ] {
        assert_eq!(key(&req(same), "", &[], None), k, "{same}");
    }
    for other in [
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.6}"#,
        r#"{"model":"m2","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"hi!"}],"temperature":0.5}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"tools":[]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"seed":1}"#,
    ] {
        assert_ne!(key(&req(other), "", &[], None), k, "{other}");
    }
    assert_ne!(key(&base, "team:a", &[], None), k);
    assert_ne!(key(&base, "", &["pii"], None), k);
    assert_eq!(key(&base, "", &[], Some("ns")), format!("ns:{k}"));
    let emb = ClientRequest::parse(
        Operation::Embeddings,
        br#"{"model":"m","input":"hi"}"#.to_vec(),
    )
    .unwrap();
    let chat_same = req(r#"{"model":"m","input":"hi","messages":[{"role":"user","content":"x"}]}"#);
    assert_ne!(key(&emb, "", &[], None), key(&chat_same, "", &[], None));
}

#[test]
fn controls_from_body_header_and_key() {
    let c =
        Controls::from_body(r#"{"no-cache":true,"ttl":30,"s-maxage":10,"namespace":"a"}"#).unwrap();
    assert!(c.no_cache && !c.no_store);
    assert_eq!(
        (c.ttl_s, c.max_age_s, c.namespace.as_deref()),
        (Some(30), Some(10), Some("a"))
    );
    for bad in [
        r#"{"no-cache":"yes"}"#,
        r#"{"ttl":-1}"#,
        r#"{"bogus":1}"#,
        r#"true"#,
        r#"{"namespace":1}"#,
    ] {
        let e = Controls::from_body(bad).unwrap_err();
        assert_eq!(e.status, 400, "{bad}");
    }
    let h = Controls::from_header("No-Store, s-maxage=20, private");
    assert!(h.no_store && !h.no_cache);
    assert_eq!(h.max_age_s, Some(20));
    let key = Controls {
        no_cache: true,
        namespace: Some("k".into()),
        ..Controls::default()
    };
    let m = c.overlay(&key);
    assert!(m.no_cache);
    assert_eq!(m.namespace.as_deref(), Some("k"));
    assert_eq!(m.ttl_s, Some(30));
}

#[test]
fn semantic_scope_and_prompt() {
    let a = req(
        r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"What is Rust?"}]}]}"#,
    );
    let b = req(r#"{"model":"m","messages":[{"role":"user","content":"Tell me about Rust"}]}"#);
    let c = req(r#"{"model":"m2","messages":[{"role":"user","content":"Tell me about Rust"}]}"#);
    assert_eq!(semantic_digest(&a), semantic_digest(&b));
    assert_ne!(
        semantic_digest(&b),
        semantic_digest(&c),
        "another model is another scope"
    );
    assert_ne!(request_digest(&a), request_digest(&b));
    assert_eq!(prompt_text(&a).as_deref(), Some("Be brief.What is Rust?"));
    assert_eq!(
        prompt_text(&req(
            r#"{"model":"m","messages":[{"role":"user","content":" "}]}"#
        )),
        None
    );
    assert_eq!(
        first_embedding(br#"{"data":[{"embedding":[0.5,-1]}]}"#),
        Some(vec![0.5, -1.0])
    );
    assert_eq!(
        first_embedding(br#"{"data":[{"embedding":[0.5,"x"]}]}"#),
        None
    );
    assert_eq!(first_embedding(br#"{"error":{}}"#), None);
}

#[test]
fn messages_counted() {
    assert_eq!(
        message_count(&req(
            r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}"#
        )),
        2
    );
}
