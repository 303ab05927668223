//! Unit tests of `accounting::fleet` (a `#[cfg(test)]` module of its `mod.rs`).

use super::*;
use crate::config::fleet::{parse_settings, DEFAULT_CLUSTER};
use serde_json::json;

fn settings() -> FleetSettings {
    parse_settings(Some(&json!({"redis": {"cluster": "webdis"}})))
        .unwrap()
        .unwrap()
}

#[test]
fn parses_settings_with_defaults_and_names_bad_fields() {
    let s = settings();
    assert_eq!(s.cluster, "webdis");
    assert_eq!(s.key_prefix, "llmgw");
    assert_eq!(s.sync_interval_ms, 1000);
    assert_eq!(s.lease_ttl_ms, 10_000);
    assert_eq!(s.on_unavailable, OnUnavailable::FailOpen);
    let s = parse_settings(Some(&json!({"redis": {"url": "http://127.0.0.1:7379",
        "sync_interval": "250ms", "on_unavailable": "fail_closed", "lease_fraction": 0.2}})))
    .unwrap()
    .unwrap();
    assert_eq!(s.cluster, DEFAULT_CLUSTER);
    assert_eq!(s.sync_interval_ms, 250);
    assert_eq!(s.lease_ttl_ms, 2500);
    assert_eq!(s.on_unavailable, OnUnavailable::FailClosed);
    for (bad, field) in [
        (json!({"redis": {}}), "counters.redis.cluster"),
        (
            json!({"redis": {"cluster": "w", "sync_interval": "1h30"}}),
            "counters.redis.sync_interval",
        ),
        (
            json!({"redis": {"cluster": "w", "on_unavailable": "maybe"}}),
            "counters.redis.on_unavailable",
        ),
        (
            json!({"redis": {"cluster": "w", "lease_fraction": 0}}),
            "counters.redis.lease_fraction",
        ),
        (
            json!({"redis": {"cluster": "w", "sync_interval": "1s", "lease_ttl": "1s"}}),
            "counters.redis.lease_ttl",
        ),
        (
            json!({"redis": {"cluster": "w", "bogus": 1}}),
            "counters.redis.bogus",
        ),
        (json!({"memcached": {}}), "counters.memcached"),
    ] {
        assert_eq!(
            parse_settings(Some(&bad)).unwrap_err().field,
            field,
            "{bad}"
        );
    }
    assert_eq!(parse_settings(None).unwrap(), None);
}

#[test]
fn lease_record_round_trips_and_rejects_garbage() {
    let mut r = LeaseRecord {
        valid_until_ms: 42,
        ..LeaseRecord::default()
    };
    r.res[1] = ResLease {
        window: 60_000,
        allowance: 7,
        flushed: 3,
        fleet_used: 9,
        fleet_leased: 11,
    };
    assert_eq!(LeaseRecord::decode(&r.encode()), r);
    assert_eq!(LeaseRecord::decode(b"junk"), LeaseRecord::default());
}

#[test]
fn webdis_body_escapes_separators() {
    let items = [CallItem {
        scope: "key:a.b/c".into(),
        res: Resource::Rpm,
        window: 60_000,
        limit: 10,
        delta: 2,
        change: -3,
        key_ttl_s: 240,
    }];
    let body = String::from_utf8(call_body("llmgw", "sync", "i1", 5, 1000, &items)).unwrap();
    assert!(body.starts_with("EVAL/"));
    let parts: Vec<&str> = body.split('/').collect();
    // EVAL, script, 1, key, op, inst, seq, ttl, 4 per item
    assert_eq!(parts.len(), 1 + 1 + 1 + 1 + 4 + 4, "{body}");
    assert_eq!(parts[3], "llmgw%3Akey%3Aa%2Eb%2Fc%3Arpm%3A60000");
    assert_eq!(
        &parts[4..],
        ["sync", "i1", "5", "1000", "10", "2", "-3", "240"]
    );
    assert!(!parts[1].contains('.'));
}

#[test]
fn parses_replies_and_errors() {
    let ok = parse_reply(200, br#"{"EVAL":[5,10,15,2]}"#, 1).unwrap();
    assert_eq!(
        ok,
        vec![ItemReply {
            own: 5,
            used: 10,
            leased: 15,
            granted: 2
        }]
    );
    assert!(parse_reply(503, b"", 1).is_err());
    assert!(parse_reply(200, br#"{"EVAL":[false,"ERR x"]}"#, 1)
        .unwrap_err()
        .contains("ERR x"));
    assert!(parse_reply(200, br#"{"EVAL":[1,2]}"#, 1).is_err());
    assert!(parse_reply(200, b"not json", 1).is_err());
}

fn lease(window: u64, allowance: u64, flushed: u64, used: u64, leased: u64) -> LeaseRecord {
    let mut l = LeaseRecord {
        valid_until_ms: 10_000,
        ..LeaseRecord::default()
    };
    l.res[0] = ResLease {
        window,
        allowance,
        flushed,
        fleet_used: used,
        fleet_leased: leased,
    };
    l
}

fn check(
    s: &FleetSettings,
    used: u64,
    extra: u64,
    l: Option<&LeaseRecord>,
    st: RedisStatus,
    g: &Grants,
) -> LeaseCheck {
    check_resource(
        s,
        "key:a",
        Resource::Budget,
        100,
        None,
        Usage { used, extra },
        l,
        st,
        g,
        5_000,
    )
}

#[test]
fn admits_within_the_lease_and_asks_for_more_past_it() {
    let s = settings();
    let l = lease(0, 50, 20, 60, 40);
    assert_eq!(
        check(&s, 30, 20, Some(&l), RedisStatus::Up, &Grants::None),
        LeaseCheck::Ok
    );
    match check(&s, 30, 25, Some(&l), RedisStatus::Up, &Grants::None) {
        LeaseCheck::Need(it) => assert_eq!((it.change, it.window), (5, 0)),
        other => panic!("{other:?}"),
    }
    // No lease at all (cold): ask for exactly what is needed.
    match check(&s, 0, 7, None, RedisStatus::Loading, &Grants::None) {
        LeaseCheck::Need(it) => assert_eq!(it.change, 7),
        other => panic!("{other:?}"),
    }
    // An expired lease is no lease.
    let mut old = l;
    old.valid_until_ms = 1;
    assert!(matches!(
        check(&s, 0, 1, Some(&old), RedisStatus::Up, &Grants::None),
        LeaseCheck::Need(_)
    ));
}

#[test]
fn a_grant_covers_the_request_or_the_fleet_is_out() {
    let s = settings();
    let rep = ItemReply {
        own: 7,
        used: 90,
        leased: 7,
        granted: 7,
    };
    let g = Grants::Got(vec![("key:a".into(), Resource::Budget, 7, rep)]);
    assert_eq!(check(&s, 0, 7, None, RedisStatus::Up, &g), LeaseCheck::Ok);
    let short = Grants::Got(vec![("key:a".into(), Resource::Budget, 3, rep)]);
    assert!(matches!(
        check(&s, 0, 7, None, RedisStatus::Up, &short),
        LeaseCheck::Exhausted { used: 90, .. }
    ));
}

#[test]
fn unreachable_redis_fails_open_or_closed() {
    let mut s = settings();
    let l = lease(0, 50, 20, 60, 40);
    // fail_open: fleet used 60 + 10 unflushed + 25 = 95 <= 100.
    assert_eq!(
        check(&s, 30, 25, Some(&l), RedisStatus::Down, &Grants::None),
        LeaseCheck::FailOpen { used: 70 }
    );
    assert!(matches!(
        check(&s, 30, 31, Some(&l), RedisStatus::Down, &Grants::None),
        LeaseCheck::Exhausted { .. }
    ));
    assert!(matches!(
        check(&s, 0, 1, None, RedisStatus::Up, &Grants::Failed),
        LeaseCheck::FailOpen { used: 0 }
    ));
    // A lease still valid is used whatever Redis does.
    assert_eq!(
        check(&s, 30, 20, Some(&l), RedisStatus::Down, &Grants::None),
        LeaseCheck::Ok
    );
    s.on_unavailable = OnUnavailable::FailClosed;
    assert_eq!(
        check(&s, 30, 25, Some(&l), RedisStatus::Down, &Grants::None),
        LeaseCheck::Unavailable
    );
    assert_eq!(
        check(&s, 30, 20, Some(&l), RedisStatus::Down, &Grants::None),
        LeaseCheck::Ok
    );
}

#[test]
fn known_exhaustion_refuses_without_a_round_trip() {
    let s = settings();
    // Redis: 80 used, 20 leased (10 ours); nothing free in Redis.
    let l = lease(0, 90, 80, 80, 20);
    // 85 used here (5 unflushed) + 10: the fleet could still fit it if the
    // other gateway returned its lease: ask Redis.
    assert!(matches!(
        check(&s, 85, 10, Some(&l), RedisStatus::Up, &Grants::None),
        LeaseCheck::Need(_)
    ));
    // 88 used + 13 > 100 even with every lease returned: refused at once.
    assert!(matches!(
        check(&s, 88, 13, Some(&l), RedisStatus::Up, &Grants::None),
        LeaseCheck::Exhausted {
            used: 88,
            held_elsewhere: 10
        }
    ));
}

/// The Lua script's rules, for the service's bookkeeping tests (the
/// script itself runs in real Redis in tests/e2e/test_fleet_budgets.py).
#[derive(Default)]
struct FakeRedis {
    hashes: std::collections::HashMap<String, std::collections::HashMap<String, i64>>,
}

impl FakeRedis {
    fn call(&mut self, op: &str, inst: &str, seq: u64, items: &[CallItem]) -> Vec<ItemReply> {
        items
            .iter()
            .map(|it| {
                let h = self
                    .hashes
                    .entry(redis_key("p", &it.scope, it.res, it.window))
                    .or_default();
                let get = |h: &std::collections::HashMap<String, i64>, k: &str| {
                    h.get(k).copied().unwrap_or(0)
                };
                let (mut used, mut leased) = (get(h, "u"), get(h, "L"));
                let mut own = get(h, &format!("l:{inst}"));
                let mut want = 0;
                if op == "sync" {
                    if seq as i64 > get(h, &format!("s:{inst}")) {
                        used += it.delta as i64;
                        let d = own.min(it.delta as i64);
                        own -= d;
                        leased -= d;
                        if it.change < 0 {
                            let r = own.min(-it.change);
                            own -= r;
                            leased -= r;
                        } else {
                            want = it.change;
                        }
                        h.insert(format!("s:{inst}"), seq as i64);
                    }
                } else {
                    want = it.change;
                }
                let granted = want.min(it.limit as i64 - used - leased).max(0);
                own += granted;
                leased += granted;
                h.insert("u".into(), used);
                h.insert("L".into(), leased);
                h.insert(format!("l:{inst}"), own);
                ItemReply {
                    own: own as u64,
                    used: used as u64,
                    leased: leased as u64,
                    granted: granted as u64,
                }
            })
            .collect()
    }
}

#[test]
fn the_service_flushes_once_resends_after_a_failure_and_returns_idle_leases() {
    use crate::accounting::scope::{record_key, ScopeRecord};
    use crate::config::keys::{KeyConfig, KeyRing, Limits};
    use crate::store::{FakeStore, SharedStore};
    let mut settings = settings();
    settings.key_prefix = "p".into();
    settings.lease_fraction = 0.1;
    let key = KeyConfig {
        alias: "a".into(),
        digest: crate::config::keys::digest("sk-a"),
        models: vec![],
        team_models: vec![],
        limits: Limits {
            max_budget_micro: Some(1_000),
            ..Limits::default()
        },
        team: None,
        model_budgets: Default::default(),
        principals: vec![],
        guardrails: vec![],
        cache: None,
    };
    let ring = KeyRing::new(vec![key], vec![], None);
    let store = FakeStore::new();
    let mut redis = FakeRedis::default();
    let mut sync = SyncState::new(settings, "i1".into(), Some(&ring));
    let exchange = |sync: &mut SyncState, redis: &mut FakeRedis, now: u64, ok: bool| {
        let Some(call) = sync.next_call(&store, now).cloned() else {
            return;
        };
        let replies = redis.call("sync", "i1", call.seq, &call.items);
        let answer = if ok {
            Ok(replies)
        } else {
            Err("timeout".to_string())
        };
        let _ = sync.on_reply(&store, answer);
    };
    // First sync loads the scope: nothing used, nothing leased (idle).
    exchange(&mut sync, &mut redis, 1_000, true);
    assert_eq!(read_status(&store), RedisStatus::Up);
    let lease = read_lease(&store, "key:a").unwrap();
    assert_eq!((lease.res[0].allowance, lease.valid_until_ms), (0, 11_000));
    // Active: the next sync leases a slice (10% of 1000).
    sync.note_active("key:a", 30, 1_500);
    exchange(&mut sync, &mut redis, 2_000, true);
    assert_eq!(read_lease(&store, "key:a").unwrap().res[0].allowance, 100);
    // 70 spent here; the flush is answered but the answer is lost ...
    let rec = ScopeRecord {
        spend_micro: 70,
        ..ScopeRecord::default()
    };
    store
        .set(&record_key("key:a"), &rec.encode(), None)
        .unwrap();
    exchange(&mut sync, &mut redis, 3_000, false);
    assert_eq!(read_status(&store), RedisStatus::Down);
    let h = &redis.hashes["p:key:a:budget:0"];
    assert_eq!(h["u"], 70);
    // ... so the same call is re-sent: Redis applies it once. The new
    // lease is sized for the rate seen (2 x 70 spent in one interval).
    exchange(&mut sync, &mut redis, 3_200, true);
    let h = &redis.hashes["p:key:a:budget:0"];
    assert_eq!((h["u"], h["l:i1"]), (70, 140));
    let lease = read_lease(&store, "key:a").unwrap();
    assert_eq!((lease.res[0].flushed, lease.res[0].allowance), (70, 210));
    // Idle for idle_return (5 s): the lease goes back to Redis.
    exchange(&mut sync, &mut redis, 9_000, true);
    let h = &redis.hashes["p:key:a:budget:0"];
    assert_eq!((h["u"], h["L"], h["l:i1"]), (70, 0, 0));
    assert_eq!(read_lease(&store, "key:a").unwrap().res[0].allowance, 70);
}
