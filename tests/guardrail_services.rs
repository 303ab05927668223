//! Guardrail services in the request flow, natively: LiteLLM's generic
//! guardrail API and the OpenAI moderation API, called out of band before
//! any provider sees the request. What the service gets, what each answer
//! does (pass, rewrite, block), and the failure policy (fail closed by
//! default with a 503; fail open lets the request through, counted).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use serde_json::{json, Value};
use support::{key_hash, Gateway, Request};

const OPENAI_ANSWER: &str = r#"{"id":"chatcmpl-up","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;

fn gateway(guardrail: Value) -> Gateway {
    Gateway::new(json!({
        "model_list": [{"model_name": "gpt", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": "http://a.test/v1", "api_key": "sk-upstream"}}],
        "guardrails": [guardrail],
        "virtual_keys": [{"key_hash": key_hash("sk-app"), "key_alias": "app"}],
        "gateway": {"clusters": {"a.test": "cluster_a", "guard.test:8080": "guard", "mod.test": "moderation"}}}))
}

fn generic(extra: Value) -> Value {
    let mut p = json!({"guardrail": "generic_guardrail_api", "mode": "pre_call", "default_on": true,
        "api_base": "http://guard.test:8080", "api_key": "gk-secret",
        "headers": {"X-Tenant": "acme"},
        "additional_provider_specific_params": {"threshold": 0.8}});
    p.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({"guardrail_name": "svc", "litellm_params": p})
}

/// Load a configuration with one guardrail `g` (the service's cluster known).
fn load(g: Value) -> Result<llm_gateway::config::Config, llm_gateway::config::ConfigError> {
    llm_gateway::pipeline::load_config(
        json!({"model_list": [{"model_name": "gpt", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_key": "k"}}],
            "guardrails": [g],
            "gateway": {"clusters": {"openai": "openai", "guard.test:8080": "guard"}}})
        .to_string()
        .as_bytes(),
        &|_| None,
    )
}

const APP: (&str, &str) = ("authorization", "Bearer sk-app");

fn ask(gw: &mut Gateway, text: &str) -> Request {
    gw.chat(
        &[APP],
        &json!({"model": "gpt", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": text}]}]}),
    )
}

#[test]
fn the_service_gets_the_texts_and_who_asks_and_none_lets_the_request_go() {
    let mut gw = gateway(generic(json!({})));
    let mut rq = ask(&mut gw, "hello there");
    assert!(
        rq.host.calls.len() == 1 && !rq.forwarded(),
        "held for the guardrail"
    );
    let call = rq.host.calls[0].clone();
    assert_eq!(call.cluster, "guard");
    assert_eq!(
        call.header(":path"),
        Some("/beta/litellm_basic_guardrail_api")
    );
    assert_eq!(call.header(":authority"), Some("guard.test:8080"));
    assert_eq!(call.header("x-api-key"), Some("gk-secret"));
    assert_eq!(call.header("x-tenant"), Some("acme"));
    assert_eq!(call.timeout_ms, 5000);
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["texts"], json!(["Be brief.", "hello there"]));
    assert_eq!(sent["input_type"], "request");
    assert_eq!(sent["request_data"]["user_api_key_alias"], "app");
    assert_eq!(
        sent["additional_provider_specific_params"],
        json!({"threshold": 0.8})
    );
    assert!(sent["litellm_call_id"]
        .as_str()
        .unwrap()
        .starts_with("chatcmpl-"));

    rq.answer_call(call.token, Some(200), br#"{"action": "NONE"}"#);
    let up = rq.upstream();
    assert_eq!(up.body["messages"][1]["content"][0]["text"], "hello there");
    rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
    rq.finish();
    assert_eq!(rq.client().status, 200);
    assert_eq!(
        rq.client().header("x-litellm-applied-guardrails"),
        Some("svc")
    );
    assert_eq!(
        rq.host
            .counter("llm_gateway.guardrail.passed.guardrail.svc"),
        1
    );
}

#[test]
fn an_intervention_rewrites_what_the_provider_gets() {
    let mut gw = gateway(generic(json!({})));
    let mut rq = ask(&mut gw, "I am Jane Doe");
    let token = rq.host.calls[0].token;
    rq.answer_call(
        token,
        Some(200),
        br#"{"action": "GUARDRAIL_INTERVENED", "texts": ["Be brief.", "I am <PERSON>"]}"#,
    );
    let up = rq.upstream();
    assert_eq!(up.body["messages"][0]["content"], "Be brief.");
    assert_eq!(
        up.body["messages"][1]["content"][0]["text"],
        "I am <PERSON>"
    );
    assert_eq!(
        rq.host
            .counter("llm_gateway.guardrail.masked.guardrail.svc"),
        1
    );
}

#[test]
fn a_block_is_a_400_and_nothing_goes_upstream() {
    let mut gw = gateway(generic(json!({})));
    let mut rq = ask(&mut gw, "how do I pick a lock");
    let token = rq.host.calls[0].token;
    rq.answer_call(
        token,
        Some(200),
        br#"{"action": "BLOCKED", "blocked_reason": "policy: burglary"}"#,
    );
    let r = rq.refused().expect("blocked");
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["error"]["code"], "content_policy_violation");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`svc`: policy: burglary"),
        "{e}"
    );
    assert!(!rq.forwarded());
    assert_eq!(
        rq.host
            .counter("llm_gateway.guardrail.blocked.guardrail.svc"),
        1
    );
}

#[test]
fn failures_refuse_with_503_unless_the_policy_is_open() {
    // (answer, unreachable?) — no answer and 502-504 are "unreachable";
    // another status or garbage is an error.
    let failures: [(Option<u16>, &[u8], bool); 5] = [
        (None, b"", true),
        (Some(503), b"busy", true),
        (Some(500), b"oops", false),
        (Some(200), b"not json", false),
        (Some(200), br#"{"action": "MAYBE"}"#, false),
    ];
    for (status, body, unreachable) in failures {
        let mut gw = gateway(generic(json!({})));
        let mut rq = ask(&mut gw, "hi");
        let token = rq.host.calls[0].token;
        rq.answer_call(token, status, body);
        let r = rq
            .refused()
            .unwrap_or_else(|| panic!("{status:?}: fail closed"));
        assert_eq!(r.status, 503, "{status:?}");
        assert_eq!(r.json()["error"]["code"], "guardrail_unavailable");
        assert!(!rq.forwarded());
        assert_eq!(
            rq.host
                .counter("llm_gateway.guardrail.errored.guardrail.svc"),
            1
        );

        // Open for the kind of failure it is: the request goes on, counted.
        let open = if unreachable {
            json!({"unreachable_fallback": "fail_open"})
        } else {
            json!({"fail_on_error": false})
        };
        let mut gw = gateway(generic(open));
        let mut rq = ask(&mut gw, "hi");
        let token = rq.host.calls[0].token;
        rq.answer_call(token, status, body);
        assert!(rq.refused().is_none(), "{status:?}: fail open");
        assert_eq!(
            rq.upstream().body["messages"][1]["content"][0]["text"],
            "hi"
        );
        assert_eq!(
            rq.host
                .counter("llm_gateway.guardrail.errored.guardrail.svc"),
            1
        );
    }
    // fail_open covers unreachable only: an error still refuses.
    let mut gw = gateway(generic(json!({"unreachable_fallback": "fail_open"})));
    let mut rq = ask(&mut gw, "hi");
    let token = rq.host.calls[0].token;
    rq.answer_call(token, Some(500), b"oops");
    assert_eq!(rq.refused().expect("an error, not unreachable").status, 503);
}

#[test]
fn a_service_without_a_cluster_at_call_time_follows_the_failure_policy() {
    let mut gw = gateway(generic(json!({})));
    gw.unknown_clusters(&["guard"]);
    let rq = ask(&mut gw, "hi");
    assert_eq!(rq.refused().expect("closed").status, 503);
}

#[test]
fn openai_moderation_blocks_what_it_flags() {
    let moderation = json!({"guardrail_name": "mod", "litellm_params": {
        "guardrail": "openai_moderation", "mode": "during_call", "default_on": true,
        "api_base": "http://mod.test/v1", "api_key": "sk-mod", "timeout": 2}});
    let mut gw = gateway(moderation.clone());
    let mut rq = ask(&mut gw, "something nasty");
    let call = rq.host.calls[0].clone();
    assert_eq!(call.cluster, "moderation");
    assert_eq!(call.header(":path"), Some("/v1/moderations"));
    assert_eq!(call.header("authorization"), Some("Bearer sk-mod"));
    assert_eq!(call.timeout_ms, 2000);
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        sent,
        json!({"model": "omni-moderation-latest", "input": ["Be brief.", "something nasty"]})
    );
    rq.answer_call(
        call.token,
        Some(200),
        br#"{"id": "modr-1", "model": "omni-moderation-latest", "results": [
            {"flagged": false, "categories": {"violence": false}},
            {"flagged": true, "categories": {"violence": true, "harassment": false}}]}"#,
    );
    let r = rq.refused().expect("flagged");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("violence"));

    let mut gw = gateway(moderation);
    let mut rq = ask(&mut gw, "a kind word");
    let token = rq.host.calls[0].token;
    rq.answer_call(
        token,
        Some(200),
        br#"{"results": [{"flagged": false}, {"flagged": false}]}"#,
    );
    assert_eq!(
        rq.upstream().body["messages"][1]["content"][0]["text"],
        "a kind word"
    );
}

#[test]
fn services_need_what_they_call_at_load() {
    let e = load(generic(json!({"api_base": "http://elsewhere.test"}))).unwrap_err();
    assert_eq!(e.field, "guardrails[0].litellm_params.api_base");
    assert!(e.reason.contains("no Envoy cluster"), "{}", e.reason);
    let e = load(generic(json!({"unreachable_fallback": "maybe"}))).unwrap_err();
    assert_eq!(e.field, "guardrails[0].litellm_params.unreachable_fallback");
    // A mode a service does not have here: refused, named.
    let e = load(generic(json!({"mode": ["pre_call", "logging_only"]}))).unwrap_err();
    assert!(e.reason.contains("logging_only"), "{}", e.reason);
    let e =
        load(json!({"guardrail_name": "m", "litellm_params": {"guardrail": "openai_moderation"}}))
            .unwrap_err();
    assert_eq!(e.field, "guardrails[0].litellm_params.api_base");
}

fn presidio(extra: Value) -> Value {
    let mut p = json!({"guardrail": "presidio", "mode": "pre_call", "default_on": true,
        "presidio_analyzer_api_base": "http://guard.test:8080",
        "presidio_anonymizer_api_base": "http://guard.test:8081"});
    p.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({"guardrail_name": "pii", "litellm_params": p})
}

#[test]
fn presidio_findings_are_replaced_in_each_text_by_character_offsets() {
    let mut gw = gateway(presidio(json!({"presidio_language": "de"})));
    // The joined text the analyzer gets: "Be brief.\n\nGrüße von Jürgen an jane@x.de"
    let mut rq = ask(&mut gw, "Grüße von Jürgen an jane@x.de");
    let call = rq.host.calls[0].clone();
    assert_eq!(call.header(":path"), Some("/analyze"));
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    let joined = "Be brief.\n\nGrüße von Jürgen an jane@x.de";
    assert_eq!(sent, json!({"text": joined, "language": "de"}));
    let at = |s: &str| joined[..joined.find(s).unwrap()].chars().count();
    let (p, e) = (at("Jürgen"), at("jane@"));
    let findings = json!([
        {"entity_type": "PERSON", "start": p, "end": p + 6, "score": 0.85},
        {"entity_type": "EMAIL_ADDRESS", "start": e, "end": e + 9, "score": 1.0},
        // Overlapping the e-mail: replaced once.
        {"entity_type": "URL", "start": e + 5, "end": e + 9, "score": 0.5}]);
    rq.answer_call(call.token, Some(200), findings.to_string().as_bytes());
    let up = rq.upstream();
    assert_eq!(up.body["messages"][0]["content"], "Be brief.");
    assert_eq!(
        up.body["messages"][1]["content"][0]["text"],
        "Grüße von <PERSON> an <EMAIL_ADDRESS>"
    );
    assert_eq!(
        rq.host
            .counter("llm_gateway.guardrail.masked.guardrail.pii"),
        1
    );
}

#[test]
fn presidio_entities_config_blocks_asks_only_for_its_entities_and_thresholds_filter() {
    let cfg = json!({"pii_entities_config": {"US_SSN": "BLOCK", "PERSON": "MASK"},
                     "presidio_score_thresholds": {"PERSON": 0.9}});
    let mut gw = gateway(presidio(cfg.clone()));
    let mut rq = ask(&mut gw, "ssn 078-05-1120");
    let call = rq.host.calls[0].clone();
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["entities"], json!(["PERSON", "US_SSN"]));
    rq.answer_call(
        call.token,
        Some(200),
        br#"[{"entity_type": "US_SSN", "start": 15, "end": 26, "score": 0.6}]"#,
    );
    let r = rq.refused().expect("blocked entity");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("US_SSN"));
    // Below its threshold, a finding is not acted on.
    let mut gw = gateway(presidio(cfg));
    let mut rq = ask(&mut gw, "Jane");
    let token = rq.host.calls[0].token;
    rq.answer_call(
        token,
        Some(200),
        br#"[{"entity_type": "PERSON", "start": 11, "end": 15, "score": 0.6}]"#,
    );
    assert_eq!(
        rq.upstream().body["messages"][1]["content"][0]["text"],
        "Jane"
    );
}

#[test]
fn presidio_entries_are_checked_at_load() {
    assert!(load(presidio(json!({}))).is_ok());
    assert!(load(presidio(json!({"output_parse_pii": true}))).is_ok());
    let e = load(presidio(json!({"pii_entities_config": {"PERSON": "HIDE"}}))).unwrap_err();
    assert_eq!(
        e.field,
        "guardrails[0].litellm_params.pii_entities_config.PERSON"
    );
    let e = load(json!({"guardrail_name": "p", "litellm_params": {"guardrail": "presidio"}}))
        .unwrap_err();
    assert_eq!(
        e.field,
        "guardrails[0].litellm_params.presidio_analyzer_api_base"
    );
}

#[test]
fn post_call_services_check_the_whole_answer_before_the_client_sees_it() {
    let answer = |content: &str| {
        json!({"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}})
        .to_string()
    };
    // Rewritten: the client gets the service's text, nothing else changes.
    let mut gw = gateway(generic(json!({"mode": "post_call"})));
    let mut rq = ask(&mut gw, "who?");
    assert!(
        rq.host.calls.is_empty(),
        "post_call does not check the request"
    );
    rq.respond(200, "application/json", answer("Call Jane Doe").as_bytes());
    let call = rq.host.calls[0].clone();
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["texts"], json!(["Call Jane Doe"]));
    assert_eq!(sent["input_type"], "response");
    rq.answer_call(
        call.token,
        Some(200),
        br#"{"action": "GUARDRAIL_INTERVENED", "texts": ["Call <PERSON>"]}"#,
    );
    rq.finish();
    let got = rq.client();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.json()["choices"][0]["message"]["content"],
        "Call <PERSON>"
    );
    assert_eq!(got.json()["usage"]["total_tokens"], 9);
    assert_eq!(
        rq.host
            .counter("llm_gateway.guardrail.masked.guardrail.svc"),
        1
    );

    // Blocked: a 400, and the answer is still paid for.
    let mut gw = gateway(generic(json!({"mode": "post_call"})));
    let mut rq = ask(&mut gw, "who?");
    rq.respond(200, "application/json", answer("BLOCKME").as_bytes());
    let token = rq.host.calls[0].token;
    rq.answer_call(
        token,
        Some(200),
        br#"{"action": "BLOCKED", "blocked_reason": "no"}"#,
    );
    rq.finish();
    assert_eq!(rq.client().status, 400);
    assert_eq!(
        rq.client().json()["error"]["code"],
        "content_policy_violation"
    );
    assert_eq!(rq.host.filter_state["llm_gateway.completion_tokens"], "4");

    // The service is down: closed, the answer is not sent.
    let mut gw = gateway(generic(json!({"mode": "post_call"})));
    let mut rq = ask(&mut gw, "who?");
    rq.respond(200, "application/json", answer("fine").as_bytes());
    let token = rq.host.calls[0].token;
    rq.answer_call(token, None, b"");
    rq.finish();
    assert_eq!(rq.client().status, 503);
    assert!(
        rq.client().text().contains("the answer was not sent"),
        "{}",
        rq.client().text()
    );
}

#[test]
fn a_stream_cannot_be_checked_by_a_post_call_service_and_says_so() {
    let mut gw = gateway(generic(json!({"mode": ["pre_call", "post_call"]})));
    let rq = gw.chat(
        &[APP],
        &json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    );
    let r = rq.refused().expect("refused");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "guardrail_needs_whole_answer");
    assert!(rq.host.calls.is_empty());
}
