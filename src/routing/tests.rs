//! Unit tests of `routing` (a `#[cfg(test)]` module of its `mod.rs`).

use super::*;

fn success(latency_ms: u64, ttft_ms: Option<u64>, tokens: u64) -> Success {
    Success {
        latency_ms,
        ttft_ms,
        tokens,
        ends_in_flight: false,
    }
}

use crate::api::overrides::{overrides_from_request, strip_overrides};
use crate::store::FakeStore;

fn cfg() -> Config {
    crate::config::parse(
        br#"{"model_list":[
          {"model_name":"m","litellm_params":{"model":"openai/a","api_base":"http://h:1/v1","weight":3}},
          {"model_name":"m","litellm_params":{"model":"openai/b","api_base":"http://h:1/v1","weight":1}}],
          "gateway":{"clusters":{"openai":"c"}}}"#,
        &|_| None,
    )
    .unwrap()
}

/// Three aliases: `smart` (a, b), `cheap` (c), `big` (d), with the
/// given `router_settings` and `gateway` extras.
fn cfg_with(router: &str, gateway_extra: &str) -> Config {
    let json = format!(
        r#"{{"model_list":[
          {{"model_name":"smart","litellm_params":{{"model":"openai/a","api_base":"http://h:1/v1"}}}},
          {{"model_name":"smart","litellm_params":{{"model":"openai/b","api_base":"http://h:1/v1"}}}},
          {{"model_name":"cheap","litellm_params":{{"model":"openai/c","api_base":"http://h:1/v1"}}}},
          {{"model_name":"big","litellm_params":{{"model":"openai/d","api_base":"http://h:1/v1"}}}}],
          "router_settings":{router},
          "gateway":{{"clusters":{{"openai":"c"}}{gateway_extra}}}}}"#
    );
    crate::config::parse(json.as_bytes(), &|_| None).unwrap()
}

fn dep<'a>(c: &'a Config, model: &str) -> &'a Deployment {
    c.deployments.iter().find(|d| d.model == model).unwrap()
}

fn models(p: &AttemptPlan<'_>) -> Vec<String> {
    p.attempts
        .iter()
        .map(|a| a.deployment.model.clone())
        .collect()
}

const T0: u64 = 1_700_000_000_000;

#[test]
fn weights_split_draws() {
    let c = cfg();
    let picks: Vec<&str> = (0..8)
        .map(|r| choose(&c, "m", r).unwrap().model.as_str())
        .collect();
    assert_eq!(picks, ["a", "a", "a", "b", "a", "a", "a", "b"]);
}

#[test]
fn unknown_alias_is_404_naming_models() {
    let e = choose(&cfg(), "gpt-5", 0).unwrap_err();
    assert_eq!(e.status, 404);
    assert_eq!(e.code.as_deref(), Some("model_not_found"));
    assert!(e.message.contains("`m`") || e.message.contains(": m"));
    let store = FakeStore::new();
    let e =
        plan_attempts(&cfg(), "gpt-5", false, &store, T0, 0, &Overrides::default()).unwrap_err();
    assert_eq!(
        (e.status, e.code.as_deref()),
        (404, Some("model_not_found"))
    );
}

#[test]
fn weighted_3_to_1_over_10000_draws() {
    let c = cfg();
    let store = FakeStore::new();
    let mut seed = Rng(42);
    let n = 10_000;
    let a = (0..n)
        .filter(|_| {
            let p = plan_attempts(
                &c,
                "m",
                false,
                &store,
                T0,
                seed.next(),
                &Overrides::default(),
            )
            .unwrap();
            p.attempts[0].deployment.model == "a"
        })
        .count();
    // Expected 7,500; the standard deviation is ~43, so ±250 is > 5 sigma.
    assert!((7_250..=7_750).contains(&a), "a picked {a} of {n}");
}

#[test]
fn simple_shuffle_uses_rpm_when_no_weight() {
    let c = crate::config::parse(
        br#"{"model_list":[
          {"model_name":"m","litellm_params":{"model":"openai/a","api_base":"http://h:1/v1","rpm":900}},
          {"model_name":"m","litellm_params":{"model":"openai/b","api_base":"http://h:1/v1","rpm":100}}],
          "gateway":{"clusters":{"openai":"c"}}}"#,
        &|_| None,
    )
    .unwrap();
    let store = FakeStore::new();
    let mut seed = Rng(7);
    let a = (0..2_000)
        .filter(|_| {
            plan_attempts(
                &c,
                "m",
                false,
                &store,
                T0,
                seed.next(),
                &Overrides::default(),
            )
            .unwrap()
            .attempts[0]
                .deployment
                .model
                == "a"
        })
        .count();
    assert!((1_740..=1_860).contains(&a), "a picked {a} of 2000");
}

#[test]
fn a_success_that_ends_the_attempt_releases_its_in_flight_count() {
    let c = cfg_with(r#"{"routing_strategy":"least-busy"}"#, "");
    let store = FakeStore::new();
    let a = dep(&c, "a");
    begin(&store, a, T0).unwrap();
    begin(&store, a, T0).unwrap();
    record_success(&store, a, T0 + 5, success(5, None, 7)).unwrap();
    assert_eq!(
        read_stats(&store, a).in_flight,
        2,
        "a plain success leaves it"
    );
    let ends = Success {
        ends_in_flight: true,
        ..success(5, None, 7)
    };
    record_success(&store, a, T0 + 6, ends).unwrap();
    let s = read_stats(&store, a);
    assert_eq!(
        (s.in_flight, s.successes_this_minute, s.tokens_this_minute),
        (1, 2, 14)
    );
}

#[test]
fn least_busy_picks_the_idle_one() {
    let c = cfg_with(r#"{"routing_strategy":"least-busy"}"#, "");
    let store = FakeStore::new();
    let a = dep(&c, "a");
    begin(&store, a, T0).unwrap();
    begin(&store, a, T0).unwrap();
    for r in 0..50 {
        let p = plan_attempts(&c, "smart", false, &store, T0, r, &Overrides::default()).unwrap();
        assert_eq!(models(&p), ["b", "a"]);
    }
    end(&store, a).unwrap();
    end(&store, a).unwrap();
    end(&store, a).unwrap(); // an extra end never underflows
    assert_eq!(read_stats(&store, a).in_flight, 0);
    // Idle both: ties are broken at random, both get picked.
    let firsts: std::collections::HashSet<String> = (0..50)
        .map(|r| {
            plan_attempts(&c, "smart", false, &store, T0, r, &Overrides::default())
                .unwrap()
                .attempts[0]
                .deployment
                .model
                .clone()
        })
        .collect();
    assert_eq!(firsts.len(), 2);
}

#[test]
fn latency_based_moves_away_and_back_after_decay() {
    let c = cfg_with(r#"{"routing_strategy":"latency-based-routing"}"#, "");
    let store = FakeStore::new();
    let (a, b) = (dep(&c, "a"), dep(&c, "b"));
    let first = |now: u64, stream: bool| {
        plan_attempts(&c, "smart", stream, &store, now, 1, &Overrides::default())
            .unwrap()
            .attempts[0]
            .deployment
            .model
            .clone()
    };
    record_success(&store, a, T0, success(2_000, Some(150), 10)).unwrap();
    record_success(&store, b, T0, success(300, Some(900), 10)).unwrap();
    assert_eq!(first(T0 + 1, false), "b", "b answers faster");
    assert_eq!(
        first(T0 + 1, true),
        "a",
        "streams compare time to first token"
    );
    // b slows down sharply: traffic moves to a.
    for i in 0..10 {
        record_success(&store, b, T0 + 1_000 + i, success(9_000, Some(5_000), 10)).unwrap();
    }
    assert_eq!(first(T0 + 2_000, false), "a");
    // a keeps serving at its pace; b gets no traffic and its stale
    // average fades until it is probed again.
    let mut now = T0 + 2_000;
    let mut back = None;
    for _ in 0..60 {
        now += 10_000;
        if first(now, false) == "b" {
            back = Some(now);
            break;
        }
        record_success(&store, a, now, success(2_000, Some(150), 10)).unwrap();
    }
    let back = back.expect("b is tried again once its slow average has decayed");
    assert!(back - T0 > 2 * LATENCY_HALF_LIFE_MS, "not too eagerly");
}

#[test]
fn usage_based_prefers_lowest_share_of_tpm() {
    let c = crate::config::parse(
        br#"{"model_list":[
          {"model_name":"m","litellm_params":{"model":"openai/a","api_base":"http://h:1/v1","tpm":100000}},
          {"model_name":"m","litellm_params":{"model":"openai/b","api_base":"http://h:1/v1","tpm":10000}}],
          "router_settings":{"routing_strategy":"usage-based-routing-v2"},
          "gateway":{"clusters":{"openai":"c"}}}"#,
        &|_| None,
    )
    .unwrap();
    let store = FakeStore::new();
    let (a, b) = (dep(&c, "a"), dep(&c, "b"));
    // a has used 20% of its tpm, b 10%: b first.
    record_success(&store, a, T0, success(10, None, 20_000)).unwrap();
    record_success(&store, b, T0, success(10, None, 1_000)).unwrap();
    let p = plan_attempts(&c, "m", false, &store, T0 + 5, 3, &Overrides::default()).unwrap();
    assert_eq!(models(&p), ["b", "a"]);
    // b passes its tpm: it goes last even though a is busier in tokens.
    record_success(&store, b, T0 + 10, success(10, None, 9_500)).unwrap();
    let p = plan_attempts(&c, "m", false, &store, T0 + 20, 3, &Overrides::default()).unwrap();
    assert_eq!(models(&p), ["a", "b"]);
    // Next minute: counters restart, and the larger deployment wins ties by share.
    let next = (T0 / 60_000 + 1) * 60_000;
    assert_eq!(read_stats(&store, b).tokens_in_minute(next), 0);
}

#[test]
fn cooldown_after_allowed_fails_within_a_minute_then_expires() {
    let c = cfg_with(r#"{"allowed_fails":2,"cooldown_time":30}"#, "");
    let store = FakeStore::new();
    let a = dep(&c, "a");
    let fail = |now| record_failure(&store, a, now, FailureKind::Status(500), &c.router).unwrap();
    assert!(!fail(T0).cooled_down);
    assert!(!fail(T0 + 10_000).cooled_down);
    assert!(!is_cooled_down(&store, a, T0 + 10_000));
    let o = fail(T0 + 20_000);
    assert!(o.cooled_down, "third failure exceeds allowed_fails=2");
    assert_eq!(o.until_ms, T0 + 50_000);
    assert!(is_cooled_down(&store, a, T0 + 49_999));
    let p = plan_attempts(
        &c,
        "smart",
        false,
        &store,
        T0 + 21_000,
        0,
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(models(&p), ["b"]);
    assert_eq!(p.skipped_cooled_down, 1);
    assert!(
        !is_cooled_down(&store, a, T0 + 50_000),
        "expires after cooldown_time"
    );
    // Failures spread wider than a minute never trip it.
    let b = dep(&c, "b");
    for i in 0..5 {
        let o =
            record_failure(&store, b, T0 + i * 61_000, FailureKind::Timeout, &c.router).unwrap();
        assert!(o.counted && !o.cooled_down);
    }
}

#[test]
fn rate_limit_cools_down_at_once_and_client_errors_never() {
    let c = cfg_with("{}", "");
    let store = FakeStore::new();
    let a = dep(&c, "a");
    for s in [400, 403, 413, 422] {
        let o = record_failure(&store, a, T0, FailureKind::Status(s), &c.router).unwrap();
        assert!(!o.counted, "{s}");
    }
    assert_eq!(read_stats(&store, a).fails_in_window, 0);
    let o = record_failure(&store, a, T0, FailureKind::Status(429), &c.router).unwrap();
    assert!(o.cooled_down);
    assert_eq!(o.until_ms, T0 + crate::config::DEFAULT_COOLDOWN_TIME_MS);
    // Already cooling: another 429 extends, but is not a new cooldown.
    let o = record_failure(&store, a, T0 + 1, FailureKind::Status(429), &c.router).unwrap();
    assert!(!o.cooled_down);
    assert!(is_cooled_down(&store, a, T0 + 5_000));
}

#[test]
fn disable_cooldowns_keeps_everyone_in() {
    let c = cfg_with(r#"{"disable_cooldowns":true}"#, "");
    let store = FakeStore::new();
    let a = dep(&c, "a");
    let o = record_failure(&store, a, T0, FailureKind::Status(429), &c.router).unwrap();
    assert!(!o.cooled_down);
    assert!(!is_cooled_down(&store, a, T0 + 1));
}

#[test]
fn all_cooled_down_is_503_or_used_when_configured() {
    let c = cfg_with(r#"{"fallbacks":[{"smart":["cheap"]}]}"#, "");
    let store = FakeStore::new();
    for m in ["a", "b", "c"] {
        record_failure(&store, dep(&c, m), T0, FailureKind::Status(429), &c.router).unwrap();
    }
    let e = plan_attempts(
        &c,
        "smart",
        false,
        &store,
        T0 + 1_000,
        0,
        &Overrides::default(),
    )
    .unwrap_err();
    assert_eq!(e.status, 503);
    assert_eq!(e.code.as_deref(), Some("all_deployments_cooled_down"));
    assert!(
        e.message.contains("`smart`") && e.message.contains("`cheap`"),
        "{}",
        e.message
    );
    assert!(e.message.contains("4s"), "{}", e.message);

    let c2 = cfg_with(
        r#"{"fallbacks":[{"smart":["cheap"]}]}"#,
        r#","use_cooled_down_when_all_cooled":true"#,
    );
    let p = plan_attempts(
        &c2,
        "smart",
        false,
        &store,
        T0 + 1_000,
        0,
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(p.attempts.len(), 3);
    assert!(p.attempts.iter().all(|a| a.cooled_down));
    assert_eq!(models(&p)[2], "c");
}

#[test]
fn primary_cooled_down_goes_straight_to_fallback() {
    let c = cfg_with(r#"{"fallbacks":[{"smart":["cheap"]}]}"#, "");
    let store = FakeStore::new();
    for m in ["a", "b"] {
        record_failure(&store, dep(&c, m), T0, FailureKind::Status(429), &c.router).unwrap();
    }
    let p = plan_attempts(&c, "smart", false, &store, T0 + 1, 0, &Overrides::default()).unwrap();
    assert_eq!(models(&p), ["c"]);
    assert!(p.attempts[0].fallback);
}

#[test]
fn retries_then_fallbacks_in_order() {
    let c = cfg_with(
        r#"{"num_retries":1,"fallbacks":[{"smart":["cheap","big"]},{"*":["big"]}]}"#,
        "",
    );
    let store = FakeStore::new();
    let p = plan_attempts(&c, "smart", false, &store, T0, 5, &Overrides::default()).unwrap();
    let m = models(&p);
    assert_eq!(m.len(), 4);
    assert!(m[..2].contains(&"a".to_string()) && m[..2].contains(&"b".to_string()));
    assert_eq!(&m[2..], ["c", "d"]);
    assert_eq!(
        p.attempts.iter().map(|a| a.fallback).collect::<Vec<_>>(),
        [false, false, true, true]
    );
    // num_retries 0: one attempt on the alias, then the fallbacks.
    let o = Overrides {
        num_retries: Some(0),
        ..Overrides::default()
    };
    assert_eq!(
        plan_attempts(&c, "smart", false, &store, T0, 5, &o)
            .unwrap()
            .attempts
            .len(),
        3
    );
    // "*" applies to aliases without their own entry.
    let p = plan_attempts(&c, "cheap", false, &store, T0, 5, &Overrides::default()).unwrap();
    assert_eq!(models(&p), ["c", "d"]);
}

#[test]
fn default_retries_and_timeouts() {
    let c = cfg_with("{}", "");
    assert_eq!(c.router.num_retries, 2);
    let store = FakeStore::new();
    let p = plan_attempts(&c, "smart", false, &store, T0, 0, &Overrides::default()).unwrap();
    assert_eq!(p.attempts.len(), 2, "both deployments, each once");
    assert!(p
        .attempts
        .iter()
        .all(|a| a.timeout_ms == crate::config::DEFAULT_TIMEOUT_MS));

    let c = crate::config::parse(
        br#"{"model_list":[
          {"model_name":"m","litellm_params":{"model":"openai/a","api_base":"http://h:1/v1","timeout":20,"stream_timeout":2.5}},
          {"model_name":"m","litellm_params":{"model":"openai/b","api_base":"http://h:1/v1"}}],
          "router_settings":{"timeout":60,"stream_timeout":5},
          "gateway":{"clusters":{"openai":"c"}}}"#,
        &|_| None,
    )
    .unwrap();
    let t = |stream: bool, o: &Overrides| {
        let p = plan_attempts(&c, "m", stream, &store, T0, 0, o).unwrap();
        let mut v: Vec<(String, u64)> = p
            .attempts
            .iter()
            .map(|a| (a.deployment.model.clone(), a.timeout_ms))
            .collect();
        v.sort();
        v
    };
    let none = Overrides::default();
    assert_eq!(
        t(false, &none),
        [("a".into(), 20_000), ("b".into(), 60_000)]
    );
    assert_eq!(t(true, &none), [("a".into(), 2_500), ("b".into(), 5_000)]);
    let o = Overrides {
        timeout_ms: Some(1_000),
        ..Overrides::default()
    };
    assert_eq!(t(true, &o), [("a".into(), 1_000), ("b".into(), 1_000)]);
}

#[test]
fn error_class_fallbacks() {
    let c = cfg_with(
        r#"{"fallbacks":[{"smart":["cheap"]}],"context_window_fallbacks":[{"smart":["big"]}]}"#,
        "",
    );
    let store = FakeStore::new();
    let o = Overrides::default();
    let p = plan_error_fallbacks(
        &c,
        "smart",
        ErrorClass::ContextWindow,
        false,
        &store,
        T0,
        0,
        &o,
    )
    .unwrap()
    .unwrap();
    assert_eq!(models(&p), ["d"]);
    assert!(p.attempts[0].fallback);
    assert!(
        plan_error_fallbacks(
            &c,
            "smart",
            ErrorClass::ContentPolicy,
            false,
            &store,
            T0,
            0,
            &o
        )
        .unwrap()
        .is_none(),
        "no content_policy_fallbacks: the provider's error stands"
    );
    record_failure(
        &store,
        dep(&c, "d"),
        T0,
        FailureKind::Status(429),
        &c.router,
    )
    .unwrap();
    assert!(plan_error_fallbacks(
        &c,
        "smart",
        ErrorClass::ContextWindow,
        false,
        &store,
        T0 + 1,
        0,
        &o
    )
    .unwrap()
    .is_none());
}

#[test]
fn overrides_parse_and_apply() {
    let body: Value = serde_json::json!({
        "model": "smart", "messages": [],
        "num_retries": 0, "fallbacks": ["big"], "timeout": 1.5,
        "context_window_fallbacks": [{"smart": ["cheap"]}],
    });
    let mut raw = body.as_object().unwrap().clone();
    let o = overrides_from_request(&raw).unwrap();
    assert_eq!(o.num_retries, Some(0));
    assert_eq!(o.timeout_ms, Some(1_500));
    assert_eq!(
        o.fallbacks,
        Some(FallbackOverride::Aliases(vec!["big".into()]))
    );
    let c = cfg_with(r#"{"fallbacks":[{"smart":["cheap"]}]}"#, "");
    let store = FakeStore::new();
    let p = plan_attempts(&c, "smart", false, &store, T0, 0, &o).unwrap();
    assert_eq!(p.attempts.len(), 2);
    assert_eq!(
        models(&p)[1],
        "d",
        "the request's fallbacks replace the config's"
    );
    assert_eq!(
        fallback_aliases(&c, "smart", FallbackList::ContextWindow, &o).unwrap(),
        ["cheap"]
    );
    strip_overrides(&mut raw);
    assert_eq!(
        raw.keys().collect::<Vec<_>>(),
        ["messages", "model"],
        "override keys never reach the provider"
    );
    // [] switches fallbacks off.
    let off =
        overrides_from_request(serde_json::json!({"fallbacks": []}).as_object().unwrap()).unwrap();
    assert_eq!(
        plan_attempts(&c, "smart", false, &store, T0, 0, &off)
            .unwrap()
            .attempts
            .len(),
        2
    );
    assert!(
        models(&plan_attempts(&c, "smart", false, &store, T0, 0, &off).unwrap())
            .iter()
            .all(|m| m == "a" || m == "b")
    );
    // Null is absent.
    let none =
        overrides_from_request(serde_json::json!({"timeout": null}).as_object().unwrap()).unwrap();
    assert_eq!(none, Overrides::default());
}

#[test]
fn bad_overrides_are_400_naming_the_field() {
    for (body, field) in [
        (serde_json::json!({"num_retries": -1}), "num_retries"),
        (serde_json::json!({"num_retries": "2"}), "num_retries"),
        (serde_json::json!({"fallbacks": "cheap"}), "fallbacks"),
        (
            serde_json::json!({"fallbacks": [{"a": ["b"], "c": ["d"]}]}),
            "fallbacks",
        ),
        (
            serde_json::json!({"content_policy_fallbacks": [1]}),
            "content_policy_fallbacks",
        ),
        (serde_json::json!({"timeout": 0}), "timeout"),
    ] {
        let e = overrides_from_request(body.as_object().unwrap()).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some(field)), "{body}");
    }
    let c = cfg_with("{}", "");
    let o = overrides_from_request(
        serde_json::json!({"fallbacks": ["gpt-9"]})
            .as_object()
            .unwrap(),
    )
    .unwrap();
    let e = plan_attempts(&c, "smart", false, &FakeStore::new(), T0, 0, &o).unwrap_err();
    assert_eq!((e.status, e.param.as_deref()), (400, Some("fallbacks")));
    assert!(e.message.contains("gpt-9"));
}

#[test]
fn record_updates_survive_cas_conflicts() {
    let c = cfg_with("{}", "");
    let store = FakeStore::new();
    let a = dep(&c, "a");
    seed(&store, &c);
    store.inject_conflicts(3);
    begin(&store, a, T0).unwrap();
    assert_eq!(read_stats(&store, a).in_flight, 1);
    store.inject_conflicts(crate::store::MAX_CAS_ATTEMPTS);
    assert!(matches!(
        begin(&store, a, T0),
        Err(StoreError::Contended { .. })
    ));
    assert_eq!(
        read_stats(&store, a).in_flight,
        1,
        "a failed update changes nothing"
    );
}

#[test]
fn stats_round_trip_and_tolerate_garbage() {
    let s = DeploymentStats {
        in_flight: 3,
        fail_window_start_ms: 9,
        fails_in_window: 2,
        minute: 7,
        requests_this_minute: 5,
        successes_this_minute: 4,
        tokens_this_minute: 1_000,
        cooldown_until_ms: 11,
        latency_ms: 12.5,
        latency_at_ms: 13,
        ttft_ms: 3.25,
        ttft_at_ms: 14,
    };
    assert_eq!(DeploymentStats::decode(&s.encode()), s);
    assert_eq!(DeploymentStats::decode(b"junk"), DeploymentStats::default());
    let mut v2 = s.encode();
    v2[0] = 2;
    assert_eq!(DeploymentStats::decode(&v2), DeploymentStats::default());
    let c = cfg_with("{}", "");
    let store = FakeStore::new();
    store
        .set(&stats_key(dep(&c, "a")), b"\x01short", None)
        .unwrap();
    begin(&store, dep(&c, "a"), T0).unwrap();
    assert_eq!(read_stats(&store, dep(&c, "a")).in_flight, 1);
}

#[test]
fn retryable_statuses() {
    for s in [500, 502, 503, 504, 529, 429, 408] {
        assert!(is_retryable(s), "{s}");
    }
    for s in [400, 401, 403, 404, 413, 422] {
        assert!(!is_retryable(s), "{s}");
    }
    assert!(FailureKind::Reset.is_retryable());
    assert!(FailureKind::ConnectFailure.is_retryable());
    assert!(FailureKind::Timeout.is_retryable());
    assert!(!FailureKind::Status(400).is_retryable());
}

#[test]
fn classifies_provider_errors() {
    let cases: &[(u16, &str, ErrorClass)] = &[
        (
            400,
            r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
            ErrorClass::ContextWindow,
        ),
        (
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#,
            ErrorClass::ContextWindow,
        ),
        (
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000"}}"#,
            ErrorClass::ContextWindow,
        ),
        (
            400,
            r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","code":"content_policy_violation"}}"#,
            ErrorClass::ContentPolicy,
        ),
        (
            400,
            r#"{"error":{"message":"The response was filtered","code":"content_filter","innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#,
            ErrorClass::ContentPolicy,
        ),
        (
            200,
            r#"{"id":"msg_1","type":"message","stop_reason":"refusal","content":[]}"#,
            ErrorClass::ContentPolicy,
        ),
        (
            400,
            r#"{"error":{"message":"temperature must be <= 2","code":"invalid_value"}}"#,
            ErrorClass::Other,
        ),
        (
            429,
            r#"{"error":{"message":"Rate limit reached: too many tokens; context length"}}"#,
            ErrorClass::Other,
        ),
        (
            500,
            r#"{"error":{"message":"context length"}}"#,
            ErrorClass::Other,
        ),
        (400, "prompt is too long", ErrorClass::ContextWindow),
    ];
    for (status, body, want) in cases {
        assert_eq!(classify_error(*status, body.as_bytes()), *want, "{body}");
    }
}
