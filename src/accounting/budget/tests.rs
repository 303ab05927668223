//! Unit tests of `accounting::budget` (a `#[cfg(test)]` module of its `mod.rs`).

use super::*;
use crate::config::keys::{self, digest, ModelBudget, TeamConfig};
use crate::store::{CasMismatch, FakeStore};
use std::collections::BTreeMap;

const T0: u64 = 1_700_000_040_000; // 2023-11-14T22:14:00Z, a minute boundary

fn key(alias: &str, limits: Limits) -> KeyConfig {
    KeyConfig {
        alias: alias.into(),
        digest: digest(alias),
        models: vec![],
        team_models: vec![],
        limits,
        team: None,
        model_budgets: BTreeMap::new(),
        principals: vec![],
        guardrails: vec![],
        cache: None,
    }
}

fn budget(usd_micro: u64) -> Limits {
    Limits {
        max_budget_micro: Some(usd_micro),
        ..Limits::default()
    }
}

fn ring_of(keys: Vec<KeyConfig>, teams: Vec<TeamConfig>) -> KeyRing {
    KeyRing::new(keys, teams, Some(digest("master")))
}

fn rec(store: &dyn SharedStore, scope: &str) -> ScopeRecord {
    read_record(store, scope)
}

/// Admit, then settle at `cost` through the queue bytes.
#[allow(clippy::result_large_err)]
fn run(
    store: &dyn SharedStore,
    ring: &KeyRing,
    alias: &str,
    model: &str,
    reserve: Option<u64>,
    cost: u64,
    now: u64,
) -> Result<(), Refusal> {
    let k = ring.key_by_alias(alias).unwrap();
    let a = admit(store, Some(ring), &Caller::Key(k), model, reserve, now)?;
    release(store, &a).unwrap();
    let ev = usage_event(
        &a,
        cost,
        &TokenUsage {
            prompt: 10,
            completion: 5,
            ..Default::default()
        },
        now,
    )
    .unwrap();
    apply_event(store, &ev, now).unwrap();
    Ok(())
}

#[test]
fn record_roundtrip_and_garbage() {
    let r = ScopeRecord {
        window_start_ms: 1,
        spend_micro: 2,
        reserved_micro: 3,
        minute: 4,
        requests: 5,
        tokens: 6,
        parallel: 7,
    };
    assert_eq!(ScopeRecord::decode(&r.encode()), r);
    assert_eq!(r.encode().len(), 57);
    for bad in [&b""[..], b"\x01", &[2u8; 57], &[1u8; 58]] {
        assert_eq!(ScopeRecord::decode(bad), ScopeRecord::default());
    }
}

#[test]
fn windows_are_aligned_and_formatted() {
    assert_eq!(window_start(None, T0), 0);
    assert_eq!(window_reset_ms(None, T0), None);
    assert_eq!(window_start(Some(86_400_000), T0), 1_699_920_000_000);
    assert_eq!(
        window_reset_ms(Some(86_400_000), T0),
        Some(1_700_006_400_000)
    );
    assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_utc(T0), "2023-11-14T22:14:00Z");
    assert_eq!(format_utc(1_700_006_400_000), "2023-11-15T00:00:00Z");
    assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00Z");
    assert_eq!(format_usd(25_000_000), "$25.00");
    assert_eq!(format_usd(1_500_000), "$1.50");
    assert_eq!(format_usd(123), "$0.000123");
    assert_eq!(format_usd(24_999_100), "$24.9991");
}

#[test]
fn reservation_estimates() {
    assert_eq!(prompt_estimate_tokens(0), 0);
    assert_eq!(prompt_estimate_tokens(401), 101);
    let mini = crate::config::pricing::lookup("gpt-4o-mini").unwrap();
    // 1000 x 0.15 + 4096 x 0.6 = 150 + 2457.6 -> 2608
    assert_eq!(reservation_micro(Some(&mini), 1000, 4096), 2608);
    assert_eq!(reservation_micro(None, 1000, 4096), 0);
}

#[test]
fn master_and_open_are_not_counted() {
    let s = FakeStore::new();
    let ring = ring_of(vec![key("a", budget(0))], vec![]);
    for c in [Caller::Master, Caller::Open] {
        let a = admit(&s, Some(&ring), &c, "m", Some(10), T0).unwrap();
        assert!(a.is_empty() && a.key_alias().is_none() && !a.has_budget());
        assert_eq!(usage_event(&a, 5, &TokenUsage::default(), T0), None);
        assert_eq!(remaining_micro(&s, &a, T0), None);
        release(&s, &a).unwrap();
    }
    assert_eq!(s.write_counts(), (0, 0));
}

#[test]
fn budget_refusal_names_alias_spend_budget_and_reset() {
    let s = FakeStore::new();
    let ring = ring_of(
        vec![key(
            "team-search",
            Limits {
                budget_duration_ms: Some(86_400_000),
                ..budget(1_000)
            },
        )],
        vec![],
    );
    seed(&s, &ring);
    for _ in 0..4 {
        run(&s, &ring, "team-search", "m", Some(250), 250, T0).unwrap();
    }
    assert_eq!(rec(&s, "key:team-search").spend_micro, 1_000);
    assert_eq!(rec(&s, "key:team-search").reserved_micro, 0);
    let r = run(&s, &ring, "team-search", "m", Some(1), 1, T0).unwrap_err();
    assert_eq!(r.reason, RefusalReason::Budget);
    assert_eq!(
        (r.error.status, r.error.kind),
        (429, ErrorKind::InsufficientQuota)
    );
    assert_eq!(r.error.code.as_deref(), Some("insufficient_quota"));
    assert_eq!(r.error.to_value()["error"]["type"], "insufficient_quota");
    assert_eq!(r.retry_after, None);
    assert_eq!(r.scope, "key:team-search");
    let m = &r.error.message;
    assert!(
        m.contains("`team-search`") && m.contains("$0.001") && m.contains("2023-11-15T00:00:00Z"),
        "{m}"
    );
    // Nothing held after the refusal.
    assert_eq!(rec(&s, "key:team-search").parallel, 0);
    assert_eq!(rec(&s, "key:team-search").requests, 4);
}

#[test]
fn reservation_refuses_what_might_not_fit() {
    let s = FakeStore::new();
    let ring = ring_of(vec![key("a", budget(1_000))], vec![]);
    seed(&s, &ring);
    let k = Caller::Key(ring.key_by_alias("a").unwrap());
    let a1 = admit(&s, Some(&ring), &k, "m", Some(600), T0).unwrap();
    assert_eq!(a1.reserved_micro(), 600);
    assert_eq!(remaining_micro(&s, &a1, T0), Some(1_000));
    let r = admit(&s, Some(&ring), &k, "m", Some(401), T0).unwrap_err();
    assert!(
        r.error.message.contains("reserved by requests in flight"),
        "{}",
        r.error.message
    );
    let a2 = admit(&s, Some(&ring), &k, "m", Some(400), T0).unwrap();
    assert_eq!(remaining_micro(&s, &a2, T0), Some(400));
    assert_eq!(rec(&s, "key:a").reserved_micro, 1_000);
    // a1 settles cheaper than reserved: room comes back.
    apply_event(
        &s,
        &usage_event(&a1, 100, &TokenUsage::default(), T0).unwrap(),
        T0,
    )
    .unwrap();
    assert_eq!(
        rec(&s, "key:a"),
        ScopeRecord {
            spend_micro: 100,
            reserved_micro: 400,
            minute: T0 / 60_000,
            requests: 2,
            parallel: 2,
            ..Default::default()
        }
    );
    assert_eq!(remaining_micro(&s, &a2, T0), Some(900));
    assert!(admit(&s, Some(&ring), &k, "m", Some(500), T0).is_ok());
    // Reservation off: admitted while spend < budget, whatever is in flight.
    let s = FakeStore::new();
    seed(&s, &ring);
    for _ in 0..5 {
        admit(&s, Some(&ring), &k, "m", None, T0).unwrap();
    }
    assert_eq!(rec(&s, "key:a").reserved_micro, 0);
    run(&s, &ring, "a", "m", None, 1_000, T0).unwrap();
    assert!(run(&s, &ring, "a", "m", None, 1, T0).is_err());
    // Budget 0 admits nothing, even a free request.
    let ring0 = ring_of(vec![key("z", budget(0))], vec![]);
    let k0 = Caller::Key(ring0.key_by_alias("z").unwrap());
    assert!(admit(&s, Some(&ring0), &k0, "m", Some(0), T0).is_err());
    assert!(admit(&s, Some(&ring0), &k0, "m", None, T0).is_err());
}

/// A store where another worker writes between every read and write of
/// the first `n` updates: every CAS meets a real conflict.
struct Racy<'a> {
    inner: &'a FakeStore,
    races: std::cell::Cell<u32>,
}
impl SharedStore for Racy<'_> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let v = self.inner.get(key);
        if self.races.get() > 0 {
            self.races.set(self.races.get() - 1);
            // Another worker rewrites the same value: token changes.
            if let Some((b, _)) = &v {
                let _ = self.inner.set(key, b, None);
            }
        }
        v
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        self.inner.set(key, value, cas)
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// 200 requests arriving interleaved with completions and the service
/// applying queued events, CAS conflicts injected: spend + reserved
/// never exceeds the budget, and the final spend is within it.
#[test]
fn reservation_never_overshoots_under_interleaving() {
    let inner = FakeStore::new();
    let s = Racy {
        inner: &inner,
        races: std::cell::Cell::new(0),
    };
    let team = TeamConfig {
        id: "t".into(),
        models: vec![],
        limits: budget(50_000),
    };
    let mut k = key("a", budget(20_000));
    k.team = Some("t".into());
    let ring = ring_of(vec![k], vec![team]);
    seed(&inner, &ring);
    let caller = Caller::Key(ring.key_by_alias("a").unwrap());
    let mut rng = Rng(7);
    let (mut arrived, mut admitted, mut refused) = (0, 0, 0);
    let mut running: Vec<Admission> = Vec::new();
    let mut queue: Vec<Vec<u8>> = Vec::new();
    while arrived < 200 || !running.is_empty() || !queue.is_empty() {
        match rng.next() % 3 {
            0 if arrived < 200 => {
                arrived += 1;
                s.races.set((rng.next() % 3) as u32);
                let reserve = 500 + rng.next() % 1_500;
                match admit(&s, Some(&ring), &caller, "m", Some(reserve), T0) {
                    Ok(a) => {
                        admitted += 1;
                        running.push(a);
                    }
                    Err(r) => {
                        assert_eq!(r.reason, RefusalReason::Budget);
                        refused += 1;
                    }
                }
            }
            1 if !running.is_empty() => {
                let a = running.swap_remove((rng.next() % running.len() as u64) as usize);
                let cost = rng.next() % (a.reserved_micro() + 1);
                release(&s, &a).unwrap();
                queue.push(usage_event(&a, cost, &TokenUsage::default(), T0).unwrap());
            }
            _ if !queue.is_empty() => {
                let ev = queue.remove(0);
                s.races.set((rng.next() % 3) as u32);
                apply_event(&s, &ev, T0).unwrap();
            }
            _ => {}
        }
        let r = rec(&inner, "key:a");
        assert!(r.spend_micro + r.reserved_micro <= 20_000, "{r:?}");
    }
    let r = rec(&inner, "key:a");
    assert_eq!((r.reserved_micro, r.parallel), (0, 0));
    assert!(r.spend_micro <= 20_000);
    assert!(admitted >= 10 && refused > 0, "{admitted} {refused}");
    let t = rec(&inner, "team:t");
    assert_eq!(
        (t.spend_micro, t.reserved_micro, t.requests),
        (r.spend_micro, 0, admitted)
    );
    assert!(inner.write_counts().1 > 0, "conflicts were injected");
}

/// Real threads on one store: exactly `budget / reservation` admitted.
#[test]
fn concurrent_threads_admit_exactly_the_budget() {
    let s = FakeStore::new();
    let ring = ring_of(vec![key("a", budget(100 * 1_000))], vec![]);
    seed(&s, &ring);
    let admitted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|sc| {
        for _ in 0..8 {
            sc.spawn(|| {
                let caller = Caller::Key(ring.key_by_alias("a").unwrap());
                for _ in 0..40 {
                    loop {
                        match admit(&s, Some(&ring), &caller, "m", Some(1_000), T0) {
                            Ok(_) => {
                                admitted.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Err(r) if r.reason == RefusalReason::Busy => continue,
                            Err(_) => break,
                        }
                    }
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::SeqCst), 100);
    let r = rec(&s, "key:a");
    assert_eq!(
        (r.reserved_micro, r.requests, r.parallel),
        (100_000, 100, 100)
    );
}

#[test]
fn window_rollover_is_aligned_and_carries_reservations() {
    let s = FakeStore::new();
    let ring = ring_of(
        vec![key(
            "a",
            Limits {
                budget_duration_ms: Some(2_000),
                ..budget(1_000)
            },
        )],
        vec![],
    );
    seed(&s, &ring);
    let caller = Caller::Key(ring.key_by_alias("a").unwrap());
    let t = 1_700_000_001_500; // window [..000_000, ..002_000)
    run(&s, &ring, "a", "m", Some(1_000), 1_000, t).unwrap();
    assert_eq!(rec(&s, "key:a").window_start_ms, 1_700_000_000_000);
    let r = run(&s, &ring, "a", "m", Some(1), 1, t + 499).unwrap_err();
    assert!(
        !r.error.message.contains("1970") && r.error.message.contains("2023-11-14T22:13:22Z"),
        "{}",
        r.error.message
    );
    // Next aligned window: admitted again, whenever the first request came.
    let held = admit(&s, Some(&ring), &caller, "m", Some(300), t + 500).unwrap();
    assert_eq!(rec(&s, "key:a").window_start_ms, 1_700_000_002_000);
    assert_eq!(rec(&s, "key:a").spend_micro, 0);
    // Roll again while `held` is in flight: its reservation carries over.
    let t2 = t + 2_500;
    assert!(admit(&s, Some(&ring), &caller, "m", Some(701), t2).is_err());
    let a = admit(&s, Some(&ring), &caller, "m", Some(700), t2).unwrap();
    // `held` settles in the new window and is charged there.
    apply_event(
        &s,
        &usage_event(&held, 300, &TokenUsage::default(), t2).unwrap(),
        t2,
    )
    .unwrap();
    let r = rec(&s, "key:a");
    assert_eq!(
        (r.window_start_ms, r.spend_micro, r.reserved_micro),
        (1_700_000_004_000, 300, 700)
    );
    apply_event(
        &s,
        &usage_event(&a, 700, &TokenUsage::default(), t2).unwrap(),
        t2,
    )
    .unwrap();
    assert_eq!(rec(&s, "key:a").spend_micro, 1_000);
}

#[test]
fn rpm_is_exact_with_cas_conflicts() {
    let s = FakeStore::new();
    let ring = ring_of(
        vec![key(
            "a",
            Limits {
                rpm_limit: Some(5),
                ..Limits::default()
            },
        )],
        vec![],
    );
    seed(&s, &ring);
    let caller = Caller::Key(ring.key_by_alias("a").unwrap());
    for i in 0..5 {
        s.inject_conflicts(3);
        let a = admit(&s, Some(&ring), &caller, "m", Some(0), T0 + i).unwrap();
        release(&s, &a).unwrap();
    }
    assert_eq!(rec(&s, "key:a").requests, 5);
    let r = admit(&s, Some(&ring), &caller, "m", Some(0), T0 + 43_200).unwrap_err();
    assert_eq!(r.reason, RefusalReason::Rpm);
    assert_eq!(
        (r.error.status, r.error.code.as_deref()),
        (429, Some("rate_limit_exceeded"))
    );
    assert_eq!(r.error.to_value()["error"]["type"], "rate_limit_error");
    assert_eq!(r.retry_after, Some(17), "43.2 s into the minute");
    assert!(r.error.message.contains("`a`") && r.error.message.contains("rpm_limit 5"));
    // Next minute.
    assert!(admit(&s, Some(&ring), &caller, "m", Some(0), T0 + 60_000).is_ok());
    assert_eq!(rec(&s, "key:a").requests, 1);
    // Conflicts beyond the retry bound: a `busy` 429, nothing counted.
    s.inject_conflicts(MAX_CAS_ATTEMPTS);
    let r = admit(&s, Some(&ring), &caller, "m", Some(0), T0 + 60_000).unwrap_err();
    assert_eq!((r.reason, r.retry_after), (RefusalReason::Busy, Some(1)));
    assert_eq!(rec(&s, "key:a").requests, 1);
}

#[test]
fn tpm_counts_settled_tokens_per_minute() {
    let s = FakeStore::new();
    let ring = ring_of(
        vec![key(
            "a",
            Limits {
                tpm_limit: Some(100),
                ..Limits::default()
            },
        )],
        vec![],
    );
    seed(&s, &ring);
    let caller = Caller::Key(ring.key_by_alias("a").unwrap());
    let a = admit(&s, Some(&ring), &caller, "m", Some(0), T0).unwrap();
    let b = admit(&s, Some(&ring), &caller, "m", Some(0), T0).unwrap();
    let u = TokenUsage {
        prompt: 60,
        completion: 39,
        ..Default::default()
    };
    s.inject_conflicts(2);
    apply_event(&s, &usage_event(&a, 0, &u, T0 + 1).unwrap(), T0 + 1).unwrap();
    assert_eq!(rec(&s, "key:a").tokens, 99);
    assert!(
        admit(&s, Some(&ring), &caller, "m", Some(0), T0 + 2).is_ok(),
        "99 < 100"
    );
    apply_event(
        &s,
        &usage_event(
            &b,
            0,
            &TokenUsage {
                prompt: 1,
                ..Default::default()
            },
            T0 + 3,
        )
        .unwrap(),
        T0 + 3,
    )
    .unwrap();
    let r = admit(&s, Some(&ring), &caller, "m", Some(0), T0 + 4).unwrap_err();
    assert_eq!(r.reason, RefusalReason::Tpm);
    assert_eq!(r.retry_after, Some(60));
    assert!(admit(&s, Some(&ring), &caller, "m", Some(0), T0 + 60_000).is_ok());
    // An event from a past minute does not count in the new one.
    let c = admit(&s, Some(&ring), &caller, "m", Some(0), T0 + 60_001).unwrap();
    apply_event(
        &s,
        &usage_event(&c, 0, &u, T0 + 59_999).unwrap(),
        T0 + 60_002,
    )
    .unwrap();
    assert_eq!(rec(&s, "key:a").tokens, 0);
}

#[test]
fn parallel_limit_and_idempotent_release() {
    let s = FakeStore::new();
    let ring = ring_of(
        vec![key(
            "a",
            Limits {
                max_parallel_requests: Some(2),
                ..Limits::default()
            },
        )],
        vec![],
    );
    seed(&s, &ring);
    let caller = Caller::Key(ring.key_by_alias("a").unwrap());
    let a = admit(&s, Some(&ring), &caller, "m", Some(0), T0).unwrap();
    let _b = admit(&s, Some(&ring), &caller, "m", Some(0), T0).unwrap();
    let r = admit(&s, Some(&ring), &caller, "m", Some(0), T0).unwrap_err();
    assert_eq!(
        (r.reason, r.retry_after),
        (RefusalReason::Parallel, Some(1))
    );
    assert_eq!(rec(&s, "key:a").parallel, 2);
    s.inject_conflicts(1);
    release(&s, &a).unwrap();
    release(&s, &a).unwrap();
    release(&s, &a).unwrap();
    assert_eq!(
        rec(&s, "key:a").parallel,
        1,
        "second and third release are no-ops"
    );
    assert!(admit(&s, Some(&ring), &caller, "m", Some(0), T0).is_ok());
    assert_eq!(rec(&s, "key:a").parallel, 2);
}

#[test]
fn team_budget_stops_a_key_with_budget_left_and_undoes_the_key() {
    let s = FakeStore::new();
    let team = TeamConfig {
        id: "search".into(),
        models: vec![],
        limits: budget(1_000),
    };
    let mut k1 = key(
        "k1",
        Limits {
            rpm_limit: Some(100),
            ..budget(10_000)
        },
    );
    k1.team = Some("search".into());
    let mut k2 = key("k2", budget(10_000));
    k2.team = Some("search".into());
    let ring = ring_of(vec![k1, k2], vec![team]);
    seed(&s, &ring);
    run(&s, &ring, "k2", "m", Some(1_000), 1_000, T0).unwrap();
    let before = rec(&s, "key:k1");
    let r = run(&s, &ring, "k1", "m", Some(10), 10, T0).unwrap_err();
    assert_eq!(
        (r.reason, r.scope.as_str()),
        (RefusalReason::Budget, "team:search")
    );
    assert!(
        r.error.message.contains("team `search` (key `k1`)"),
        "{}",
        r.error.message
    );
    let after = rec(&s, "key:k1");
    assert_eq!(
        (after.reserved_micro, after.parallel, after.requests),
        (before.reserved_micro, 0, 0),
        "key's counts undone"
    );
    assert_eq!(after.minute, T0 / 60_000);
}

#[test]
fn per_model_budget() {
    let s = FakeStore::new();
    let mut k = key("a", budget(10_000));
    k.model_budgets.insert(
        "smart".into(),
        ModelBudget {
            budget_micro: 500,
            duration_ms: Some(86_400_000),
        },
    );
    let ring = ring_of(vec![k], vec![]);
    seed(&s, &ring);
    run(&s, &ring, "a", "smart", Some(500), 500, T0).unwrap();
    let r = run(&s, &ring, "a", "smart", Some(1), 1, T0).unwrap_err();
    assert_eq!(r.scope, "keymodel:a:smart");
    assert!(
        r.error.message.contains("key `a` on model `smart`"),
        "{}",
        r.error.message
    );
    run(&s, &ring, "a", "cheap", Some(500), 500, T0).unwrap();
    assert_eq!(rec(&s, "key:a").spend_micro, 1_000);
    assert_eq!(rec(&s, "keymodel:a:smart").spend_micro, 500);
    let r = rec(&s, "key:a");
    assert_eq!(
        (r.reserved_micro, r.parallel),
        (0, 0),
        "key scope undone after the model refusal"
    );
}

#[test]
fn events_roundtrip_and_garbage_is_rejected() {
    let s = FakeStore::new();
    let mut k = key("a", budget(1_000));
    k.team = Some("t".into());
    let ring = ring_of(
        vec![k],
        vec![TeamConfig {
            id: "t".into(),
            models: vec![],
            limits: Limits::default(),
        }],
    );
    let caller = Caller::Key(ring.key_by_alias("a").unwrap());
    let a = admit(&s, Some(&ring), &caller, "smart", Some(40), T0).unwrap();
    let bytes = usage_event(
        &a,
        33,
        &TokenUsage {
            prompt: 7,
            completion: 3,
            ..Default::default()
        },
        T0,
    )
    .unwrap();
    assert_eq!(
        usage_event(&a, 33, &TokenUsage::default(), T0),
        None,
        "once per admission"
    );
    let e = UsageEvent::decode(&bytes).unwrap();
    assert_eq!(e.cost, 33);
    assert_eq!(e.tokens, 10);
    assert_eq!(e.key.as_deref(), Some("a"));
    assert_eq!(e.scopes.len(), 2);
    assert_eq!(
        e.scopes[0],
        EventScope {
            s: "key:a".into(),
            r: 40,
            d: 0,
            tpm: true
        }
    );
    assert_eq!(
        e.scopes[1],
        EventScope {
            s: "team:t".into(),
            r: 0,
            d: 0,
            tpm: true
        }
    );
    assert_eq!(UsageEvent::decode(&e.encode()).unwrap(), e);
    let writes = s.write_counts();
    let mut rng = Rng(3);
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        b"{".to_vec(),
        b"null".to_vec(),
        b"[1,2]".to_vec(),
        br#"{"v":2,"at":0,"cost":1,"tokens":0,"scopes":[]}"#.to_vec(),
        br#"{"v":1,"at":0,"cost":-1,"tokens":0,"scopes":[]}"#.to_vec(),
        br#"{"v":1,"at":0,"cost":1,"tokens":0,"scopes":[{"s":"llm-gateway/v1/deployment/x"}]}"#
            .to_vec(),
        br#"{"v":1,"at":0,"cost":1,"tokens":0,"scopes":"key:a"}"#.to_vec(),
        bytes[..bytes.len() / 2].to_vec(),
    ];
    for _ in 0..200 {
        let n = (rng.next() % 64) as usize;
        garbage.push((0..n).map(|_| rng.next() as u8).collect());
    }
    for g in &garbage {
        assert!(
            matches!(apply_event(&s, g, T0), Err(EventError::Malformed(_))),
            "{g:?}"
        );
    }
    assert_eq!(s.write_counts(), writes, "garbage writes nothing");
    apply_event(&s, &bytes, T0).unwrap();
    assert_eq!(rec(&s, "key:a").spend_micro, 33);
    assert_eq!(rec(&s, "team:t").spend_micro, 33);
    // A contended scope does not stop the others.
    let a = admit(&s, Some(&ring), &caller, "smart", Some(40), T0).unwrap();
    let bytes = usage_event(&a, 1, &TokenUsage::default(), T0).unwrap();
    s.inject_conflicts(MAX_CAS_ATTEMPTS);
    let err = apply_event(&s, &bytes, T0).unwrap_err();
    assert!(
        matches!(&err, EventError::Store(v) if v.len() == 1),
        "{err}"
    );
    assert_eq!(rec(&s, "team:t").spend_micro, 34);
}

#[test]
fn key_info_reports_spend_limits_team_and_models() {
    let s = FakeStore::new();
    let (ring, _) = keys_from_config();
    seed(&s, &ring);
    let k = ring.key_by_alias("team-search").unwrap();
    let caller = Caller::Key(k);
    let a = admit(&s, Some(&ring), &caller, "smart", Some(2_000_000), T0).unwrap();
    let done = admit(&s, Some(&ring), &caller, "smart", Some(1_000_000), T0).unwrap();
    release(&s, &done).unwrap();
    apply_event(
        &s,
        &usage_event(
            &done,
            1_250_000,
            &TokenUsage {
                prompt: 900,
                completion: 100,
                ..Default::default()
            },
            T0,
        )
        .unwrap(),
        T0,
    )
    .unwrap();
    let v = key_info(&s, &ring, k, T0 + 1);
    assert_eq!(v["key_alias"], "team-search");
    assert_eq!(v["models"], json!(["smart", "cheap"]));
    assert_eq!(v["team_id"], "search");
    assert_eq!(v["spend"], 1.25);
    assert_eq!(v["spend_micro"], 1_250_000);
    assert_eq!(v["reserved_micro"], 2_000_000);
    assert_eq!(v["max_budget"], 25.0);
    assert_eq!(v["remaining_budget"], 21.75);
    assert_eq!(v["budget_duration"], "30d");
    // 30-day windows aligned to the epoch: 1_697_760_000_000 + 30d.
    assert_eq!(v["budget_reset_at"], "2023-11-19T00:00:00Z");
    assert_eq!(
        (v["rpm_limit"].clone(), v["rpm_used"].clone()),
        (json!(120), json!(2))
    );
    assert_eq!(
        (v["tpm_limit"].clone(), v["tpm_used"].clone()),
        (json!(200000), json!(1000))
    );
    assert_eq!(
        (
            v["max_parallel_requests"].clone(),
            v["parallel_requests"].clone()
        ),
        (json!(4), json!(1))
    );
    assert_eq!(v["team"]["team_id"], "search");
    assert_eq!(v["team"]["spend"], 1.25);
    assert_eq!(v["team"]["max_budget"], 100.0);
    assert_eq!(v["model_max_budget"]["smart"]["budget_limit"], 10.0);
    assert_eq!(v["model_max_budget"]["smart"]["time_period"], "1d");
    assert_eq!(v["model_max_budget"]["smart"]["spend_micro"], 1_250_000);
    assert_eq!(
        v["model_max_budget"]["smart"]["budget_reset_at"],
        "2023-11-15T00:00:00Z"
    );
    assert_eq!(
        remaining_micro(&s, &a, T0),
        Some(8_750_000),
        "the per-model budget is the tightest"
    );
    // Next minute: rpm/tpm restart; spend stays in its window.
    let v = key_info(&s, &ring, k, T0 + 60_000);
    assert_eq!(
        (
            v["rpm_used"].clone(),
            v["tpm_used"].clone(),
            v["spend_micro"].clone()
        ),
        (json!(0), json!(0), json!(1_250_000))
    );
    let other = ring.key_by_alias("other").unwrap();
    let v = key_info(&s, &ring, other, T0);
    assert_eq!(
        (
            v["max_budget"].clone(),
            v["team"].clone(),
            v["budget_reset_at"].clone()
        ),
        (Value::Null, Value::Null, Value::Null)
    );
}

fn keys_from_config() -> (KeyRing, keys::BudgetSettings) {
    let cfg = json!({
        "model_list": [
            {"model_name": "smart", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://h:1/v1"}},
            {"model_name": "cheap", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://h:1/v1"}}
        ],
        "gateway": {"clusters": {"openai": "c"}},
        "virtual_keys": [
            {"key_hash": keys::digest_string(&digest("sk-1")), "key_alias": "team-search",
             "models": ["smart", "cheap"], "max_budget": 25.0, "budget_duration": "30d",
             "rpm_limit": 120, "tpm_limit": 200000, "max_parallel_requests": 4, "team": "search",
             "model_max_budget": {"smart": {"budget_limit": 10.0, "time_period": "1d"}}},
            {"key_hash": keys::digest_string(&digest("sk-2")), "key_alias": "other"}
        ],
        "teams": [{"team_id": "search", "max_budget": 100.0}]
    });
    let c = crate::config::parse(cfg.to_string().as_bytes(), &|_| None).unwrap();
    (c.keys.unwrap(), c.budget)
}

#[test]
fn seed_makes_every_later_write_a_cas() {
    let (ring, _) = keys_from_config();
    let s = FakeStore::new();
    seed(&s, &ring);
    for scope in [
        "key:team-search",
        "key:other",
        "team:search",
        "keymodel:team-search:smart",
    ] {
        assert!(s.get(&record_key(scope)).is_some(), "{scope}");
    }
    let n = s.write_counts().0;
    seed(&s, &ring);
    assert_eq!(s.write_counts().0, n, "seeding twice writes nothing");
}
