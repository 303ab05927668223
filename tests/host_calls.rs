//! Host calls per request: each is a trip out of the VM in Envoy, and the
//! measurements (BENCHMARKS.md, issue 21) put most of the filter's cost
//! there, not in translation. This counts them, natively and exactly, for
//! the cases `make bench` times, and fails when a change adds some: the
//! instruction-free regression guard beside the timed one.
//!
//! `cargo test --test host_calls -- --nocapture` prints the tally.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use support::{key_hash, Gateway, Request};

const ANTHROPIC_ANSWER: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello from Claude"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":5}}"#;
const OPENAI_ANSWER: &str = r#"{"id":"chatcmpl-up","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;

const OPEN_KEY: &str = "sk-open";
const LIMITED_KEY: &str = "sk-limited";

fn gateway() -> Gateway {
    let mut gw = Gateway::new(json!({
        "model_list": [
            {"model_name": "smart", "litellm_params": {"model": "anthropic/claude-x",
                "api_base": "http://a.test", "api_key": "ak"}},
            {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini",
                "api_base": "http://b.test/v1", "api_key": "sk"}}],
        "virtual_keys": [
            {"key_hash": key_hash(OPEN_KEY), "key_alias": "open"},
            {"key_hash": key_hash(LIMITED_KEY), "key_alias": "limited", "max_budget": 100,
             "rpm_limit": 1000}],
        "gateway": {"clusters": {"a.test": "cluster_a", "b.test": "cluster_b"}},
    }));
    gw.counter_service = true;
    gw
}

fn body(model: &str) -> Value {
    json!({"model": model, "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "x".repeat(900)}]})
}

/// Host calls of one whole request (headers to log), by kind; shared-data
/// reads and writes counted separately from the `store()` accesses.
fn tally(gw: &mut Gateway, key: &str, model: &str, answer: &str) -> BTreeMap<String, u32> {
    let reads = gw.store.read_count();
    let (writes, _) = gw.store.write_counts();
    let auth = format!("Bearer {key}");
    let mut rq: Request = gw.chat(&[("authorization", auth.as_str())], &body(model));
    assert!(rq.forwarded(), "{:?}", rq.host.local_reply);
    rq.respond(200, "application/json", answer.as_bytes());
    rq.finish();
    assert_eq!(rq.client().status, 200, "{}", rq.client().text());
    let mut out: BTreeMap<String, u32> = rq
        .host
        .host_calls
        .borrow()
        .iter()
        // `store()` hands out the store (its reads and writes are counted
        // below); counter increments are summed in the VM and reach Envoy
        // from the worker's tick, not per request, and the clock is read
        // once per callback (`src/filter/host.rs`: `now_ms` counts callbacks
        // that read it, at most one each).
        .filter(|(k, _)| **k != "store" && **k != "counter_add" && **k != "now_ms")
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    out.insert(
        "shared_data_get".into(),
        (gw.store.read_count() - reads) as u32,
    );
    out.insert(
        "shared_data_set".into(),
        (gw.store.write_counts().0 - writes) as u32,
    );
    out
}

/// The second request of each case is counted (the first warms caches a
/// worker keeps, such as the routing state's first write).
fn steady(key: &str, model: &str, answer: &str) -> BTreeMap<String, u32> {
    let mut gw = gateway();
    tally(&mut gw, key, model, answer);
    tally(&mut gw, key, model, answer)
}

fn total(t: &BTreeMap<String, u32>) -> u32 {
    t.values().sum()
}

fn check(case: &str, t: &BTreeMap<String, u32>, budget: u32) {
    println!("{case}: {} host calls {t:?}", total(t));
    assert!(
        total(t) <= budget,
        "{case}: {} host calls, more than the {budget} this case may make: {t:?}",
        total(t)
    );
}

#[test]
fn passthrough_request_host_calls() {
    let t = steady(OPEN_KEY, "fast", OPENAI_ANSWER);
    check("1 KB OpenAI-compatible passthrough", &t, 31);
}

#[test]
fn anthropic_request_host_calls() {
    let t = steady(OPEN_KEY, "smart", ANTHROPIC_ANSWER);
    check("1 KB chat -> Anthropic", &t, 32);
}

#[test]
fn keyed_limited_request_host_calls() {
    let t = steady(LIMITED_KEY, "smart", ANTHROPIC_ANSWER);
    check("1 KB -> Anthropic, key with budget and rpm", &t, 36);
}
