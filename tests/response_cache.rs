//! The response cache natively, through the in-memory host: a repeated
//! request is answered from the store (plain and streamed, either way
//! round), what changes the answer misses, the per-request and per-key
//! controls, TTL, scopes, and that a hit costs nothing and calls no provider.
//! Real Envoy, Redis and the SDKs: `tests/e2e/test_cache.py`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use serde_json::{json, Value};
use support::{anthropic_text_stream, key_hash, sse_data, streamed_text, Gateway, Request};

const ANTHROPIC_ANSWER: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello from Claude"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":5}}"#;
const ANTHROPIC_CUT: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello"}],"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":5}}"#;

fn config(cache: Value, extra: Value) -> Value {
    let mut c = json!({
        "model_list": [{"model_name": "claude", "litellm_params": {
            "model": "anthropic/claude-x", "api_base": "http://c.test", "api_key": "ak-upstream",
            "input_cost_per_token": 0.000003, "output_cost_per_token": 0.000015}}],
        "gateway": {"clusters": {"c.test": "cluster_c"}},
        "litellm_settings": {"cache": true, "cache_params": cache},
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut c, extra) {
        c.extend(e);
    }
    c
}

fn ask(text: &str) -> Value {
    json!({"model": "claude", "messages": [{"role": "user", "content": text}]})
}

fn ask_stream(text: &str) -> Value {
    json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": text}]})
}

/// A request the provider answers with `ANTHROPIC_ANSWER`.
fn miss(gw: &mut Gateway, headers: &[(&str, &str)], body: &Value) -> Request {
    let mut rq = gw.chat(headers, body);
    assert!(
        rq.forwarded(),
        "expected a provider call: {:?}",
        rq.host.local_reply
    );
    rq.respond(200, "application/json", ANTHROPIC_ANSWER.as_bytes());
    rq.finish();
    rq
}

/// A request answered from the cache (no provider call).
fn hit(gw: &mut Gateway, headers: &[(&str, &str)], body: &Value) -> Request {
    let mut rq = gw.chat(headers, body);
    assert!(
        !rq.forwarded(),
        "expected a cache hit, the request went upstream"
    );
    assert!(rq.host.calls.is_empty(), "a hit calls nothing");
    rq.finish();
    let got = rq.client();
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.header("x-llm-gateway-cache"), Some("hit"));
    rq
}

#[test]
fn a_repeated_request_is_answered_from_the_cache() {
    let mut gw = Gateway::new(config(json!({}), json!({})));
    let first = miss(&mut gw, &[], &ask("hello"));
    let got = first.client();
    assert_eq!(got.header("x-llm-gateway-cache"), Some("miss"));
    let key = got.header("x-litellm-cache-key").unwrap().to_string();
    assert_eq!(key.len(), 64);
    assert_eq!(first.host.counter("llm_gateway.cache.stores"), 1);

    let second = hit(&mut gw, &[], &ask("hello"));
    let again = second.client();
    assert_eq!(again.header("x-litellm-cache-key"), Some(key.as_str()));
    assert_eq!(again.json(), got.json(), "the same answer, id included");
    assert_eq!(second.host.counter("llm_gateway.cache.hits"), 1);
    assert!(second.host.counter("llm_gateway.cache.saved_micro_usd") > 0);
    assert_eq!(second.host.filter_state["llm_gateway.cache"], "hit");
    assert_eq!(
        again.header("x-llm-gateway-attempts"),
        None,
        "no attempt was made"
    );
}

#[test]
fn a_plain_answer_is_replayed_as_a_stream_and_a_stream_served_plain() {
    let mut gw = Gateway::new(config(json!({}), json!({})));
    miss(&mut gw, &[], &ask("hello"));
    let rq = hit(&mut gw, &[], &ask_stream("hello"));
    let got = rq.client();
    assert_eq!(got.header("content-type"), Some("text/event-stream"));
    let data = sse_data(&got.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&data), "Hello from Claude");

    // The other way round: a streamed answer, stored once it completed.
    let mut rq = gw.chat(&[], &ask_stream("stream me"));
    rq.respond_stream_headers(200, "text/event-stream");
    let events = anthropic_text_stream(&["Hel", "lo", " world"]);
    for (i, e) in events.iter().enumerate() {
        rq.chunk(e.as_bytes(), i + 1 == events.len());
    }
    rq.finish();
    assert_eq!(rq.host.counter("llm_gateway.cache.stores"), 1);
    let plain = hit(&mut gw, &[], &ask("stream me")).client().json();
    assert_eq!(plain["object"], "chat.completion");
    assert_eq!(plain["choices"][0]["message"]["content"], "Hello world");
    assert_eq!(plain["choices"][0]["finish_reason"], "stop");
    let streamed = hit(&mut gw, &[], &ask_stream("stream me")).client();
    assert_eq!(streamed_text(&sse_data(&streamed.body)), "Hello world");
}

#[test]
fn a_cut_stream_is_not_stored() {
    let mut gw = Gateway::new(config(json!({}), json!({})));
    let mut rq = gw.chat(&[], &ask_stream("cut"));
    rq.respond_stream_headers(200, "text/event-stream");
    let events = anthropic_text_stream(&["Hel", "lo"]);
    // The upstream ends before message_stop.
    for e in &events[..3] {
        rq.chunk(e.as_bytes(), false);
    }
    rq.chunk(b"", true);
    rq.finish();
    assert_eq!(rq.host.counter("llm_gateway.cache.stores"), 0);
    assert!(gw.chat(&[], &ask("cut")).forwarded());
}

#[test]
fn what_changes_the_answer_misses() {
    let mut gw = Gateway::new(config(json!({}), json!({})));
    miss(&mut gw, &[], &ask("hello"));
    let mut hot = ask("hello");
    hot["temperature"] = json!(0.9);
    miss(&mut gw, &[], &hot);
    let mut tools = ask("hello");
    tools["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    miss(&mut gw, &[], &tools);
    miss(&mut gw, &[], &ask("hello there"));
    // What does not change it: the caller's `user`, metadata, key order.
    let mut same = ask("hello");
    same["user"] = json!("u-1");
    same["metadata"] = json!({"run": 3});
    hit(&mut gw, &[], &same);
}

#[test]
fn per_request_controls() {
    let mut gw = Gateway::new(config(json!({}), json!({})));
    // no-store: answered, not stored.
    let mut body = ask("a");
    body["cache"] = json!({"no-store": true});
    let rq = miss(&mut gw, &[], &body);
    assert_eq!(rq.host.counter("llm_gateway.cache.stores"), 0);
    miss(&mut gw, &[], &ask("a"));
    hit(&mut gw, &[], &ask("a"));
    // no-cache: not read (but stored again).
    let mut body = ask("a");
    body["cache"] = json!({"no-cache": true});
    let rq = miss(&mut gw, &[], &body);
    assert_eq!(rq.client().header("x-llm-gateway-cache"), Some("bypass"));
    // The header says the same.
    miss(&mut gw, &[("cache-control", "no-cache")], &ask("a"));
    // s-maxage: only a fresh enough entry.
    gw.now_ms += 30_000;
    let mut body = ask("a");
    body["cache"] = json!({"s-maxage": 10});
    miss(&mut gw, &[], &body);
    // A wrong type is the client's error.
    let mut bad = ask("a");
    bad["cache"] = json!({"no-cache": "yes"});
    let rq = gw.chat(&[], &bad);
    let e = rq.refused().expect("refused");
    assert_eq!(e.status, 400);
}

#[test]
fn entries_expire_after_their_ttl() {
    let mut gw = Gateway::new(config(json!({"ttl": 60}), json!({})));
    miss(&mut gw, &[], &ask("t"));
    gw.now_ms += 59_000;
    hit(&mut gw, &[], &ask("t"));
    gw.now_ms += 2_000;
    miss(&mut gw, &[], &ask("t"));
    // A request's own ttl.
    let mut short = ask("u");
    short["cache"] = json!({"ttl": 5});
    miss(&mut gw, &[], &short);
    gw.now_ms += 6_000;
    miss(&mut gw, &[], &ask("u"));
}

#[test]
fn an_answer_cut_at_the_gateways_default_max_tokens_is_not_stored() {
    let mut gw = Gateway::new(config(json!({}), json!({})));
    for _ in 0..2 {
        let mut rq = gw.chat(&[], &ask("long"));
        assert!(rq.forwarded());
        rq.respond(200, "application/json", ANTHROPIC_CUT.as_bytes());
        rq.finish();
    }
    // With the client's own max_tokens it is the answer it asked for.
    let mut own = ask("long");
    own["max_tokens"] = json!(5);
    let mut rq = gw.chat(&[], &own);
    rq.respond(200, "application/json", ANTHROPIC_CUT.as_bytes());
    rq.finish();
    hit(&mut gw, &[], &own);
}

#[test]
fn teams_do_not_read_each_others_answers_and_a_hit_costs_nothing() {
    let keys = json!({
        "virtual_keys": [
            {"key_hash": key_hash("sk-a1"), "key_alias": "a1", "team_id": "a", "max_budget": 10},
            {"key_hash": key_hash("sk-a2"), "key_alias": "a2", "team_id": "a"},
            {"key_hash": key_hash("sk-b"), "key_alias": "b", "team_id": "b"},
            {"key_hash": key_hash("sk-nc"), "key_alias": "nc", "team_id": "a", "cache": {"no-cache": true}},
            {"key_hash": key_hash("sk-ns"), "key_alias": "ns", "team_id": "a", "cache": {"namespace": "pinned"}},
        ],
        "teams": [{"team_id": "a"}, {"team_id": "b"}],
    });
    let mut gw = Gateway::new(config(json!({}), keys));
    let a1 = [("authorization", "Bearer sk-a1")];
    let first = miss(&mut gw, &a1, &ask("q"));
    let cost = |rq: &Request| -> f64 {
        rq.client()
            .header("x-llm-gateway-response-cost")
            .expect("cost header")
            .parse()
            .unwrap()
    };
    assert!(cost(&first) > 0.0);
    let rq = hit(&mut gw, &[("authorization", "Bearer sk-a2")], &ask("q"));
    assert_eq!(cost(&rq), 0.0);
    let rq = hit(&mut gw, &a1, &ask("q"));
    assert_eq!(cost(&rq), 0.0);
    miss(&mut gw, &[("authorization", "Bearer sk-b")], &ask("q"));
    // A key denied the cache reads nothing; a key pinned to a namespace
    // reads only its own.
    miss(&mut gw, &[("authorization", "Bearer sk-nc")], &ask("q"));
    let rq = miss(&mut gw, &[("authorization", "Bearer sk-ns")], &ask("q"));
    assert!(rq
        .client()
        .header("x-litellm-cache-key")
        .unwrap()
        .starts_with("pinned:"));
}

#[test]
fn long_conversations_and_mode_default_off_skip_the_cache() {
    let mut gw = Gateway::new(config(json!({}), json!({})));
    let long = json!({"model": "claude", "messages": [
        {"role": "user", "content": "1"}, {"role": "assistant", "content": "2"},
        {"role": "user", "content": "3"}, {"role": "assistant", "content": "4"},
        {"role": "user", "content": "5"}]});
    let rq = miss(&mut gw, &[], &long);
    assert_eq!(rq.client().header("x-llm-gateway-cache"), None);
    miss(&mut gw, &[], &long);

    let mut gw = Gateway::new(config(json!({"mode": "default_off"}), json!({})));
    miss(&mut gw, &[], &ask("o"));
    miss(&mut gw, &[], &ask("o"));
    let mut opt_in = ask("o");
    opt_in["cache"] = json!({"use-cache": true});
    miss(&mut gw, &[], &opt_in);
    hit(&mut gw, &[], &opt_in);
}

#[test]
fn a_corrupt_entry_is_a_miss() {
    let mut gw = Gateway::new(config(json!({}), json!({})));
    miss(&mut gw, &[], &ask("c"));
    // Overwrite every slot's entry with garbage.
    let keys: Vec<String> = gw
        .store
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("llmgw.cache.") && k != "llmgw.cache.meta")
        .collect();
    assert!(!keys.is_empty());
    for k in keys {
        use llm_gateway::store::SharedStore;
        gw.store.set(&k, b"LGC1 garbage", None).unwrap();
    }
    let rq = miss(&mut gw, &[], &ask("c"));
    assert_eq!(rq.host.counter("llm_gateway.cache.corrupt"), 1);
}

#[test]
fn semantic_settings_are_checked_at_load() {
    let mut cfg = config(
        json!({"type": "redis-semantic", "similarity_threshold": 0.9,
               "redis_semantic_cache_embedding_model": "no-such-alias"}),
        json!({"counters": {"redis": {"cluster": "webdis"}}}),
    );
    let bytes = serde_json::to_vec(&cfg).unwrap();
    let e = llm_gateway::pipeline::load_config(&bytes, &|_| None).unwrap_err();
    assert!(
        e.to_string()
            .contains("litellm_settings.cache_params.redis_semantic_cache_embedding_model"),
        "{e}"
    );
    cfg["litellm_settings"]["cache_params"]["redis_semantic_cache_embedding_model"] =
        json!("claude");
    let bytes = serde_json::to_vec(&cfg).unwrap();
    let c = llm_gateway::pipeline::load_config(&bytes, &|_| None).unwrap();
    assert!(
        c.warnings.iter().all(|w| !w.contains("cache")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn embeddings_are_cached_unless_the_call_types_leave_them_out() {
    const EMBEDDING: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
    let emb_config = |types: Value| {
        json!({"model_list": [{"model_name": "embed", "litellm_params": {
            "model": "openai/text-embedding-3-small", "api_base": "http://e.test/v1", "api_key": "sk-e"}}],
            "gateway": {"clusters": {"e.test": "cluster_e"}},
            "litellm_settings": {"cache": true, "cache_params": {"supported_call_types": types}}})
    };
    let body = json!({"model": "embed", "input": "hello"});
    let mut gw = Gateway::new(emb_config(json!(["acompletion", "aembedding"])));
    let mut rq = gw.send("/v1/embeddings", &[], &body);
    assert!(rq.forwarded());
    rq.respond(200, "application/json", EMBEDDING.as_bytes());
    rq.finish();
    assert_eq!(rq.client().header("x-llm-gateway-cache"), Some("miss"));
    let mut again = gw.send("/v1/embeddings", &[], &body);
    assert!(!again.forwarded(), "the second call is a hit");
    again.finish();
    let got = again.client();
    assert_eq!(got.header("x-llm-gateway-cache"), Some("hit"));
    assert_eq!(got.json()["data"][0]["embedding"], json!([0.1, 0.2]));
    assert_eq!(got.header("content-type"), Some("application/json"));

    let mut gw = Gateway::new(emb_config(json!(["acompletion"])));
    for _ in 0..2 {
        let mut rq = gw.send("/v1/embeddings", &[], &body);
        assert!(
            rq.forwarded(),
            "embeddings are not a supported call type here"
        );
        rq.respond(200, "application/json", EMBEDDING.as_bytes());
        rq.finish();
        assert_eq!(rq.client().header("x-llm-gateway-cache"), None);
    }
}
