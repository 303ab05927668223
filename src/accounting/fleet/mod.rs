//! Fleet-wide counters: budget, rpm and tpm *leases* from Redis, reached
//! over HTTP through webdis, so one budget holds across every Envoy (every
//! sidecar and gateway replica) and across restarts.
//!
//! Pure logic: settings, the Redis data model and Lua script, the webdis
//! wire format, the shared-data records workers read, and the counter
//! service's sync bookkeeping ([`SyncState`]). The filter (`src/filter/`)
//! only moves bytes: it dispatches the bodies built here and feeds the
//! replies back.
//!
//! # Leases
//!
//! Each limited resource of a scope (a key's or team's budget, rpm, tpm; a
//! key's per-model budget) has, per window, one Redis hash
//! `<prefix>:<scope>:<resource>:<window start ms>` with the fleet-wide
//! `u` (used: spend in micro-USD, requests, tokens), `L` (the sum of the
//! leases outstanding) and, per Envoy instance, `l:<inst>` (its lease),
//! `e:<inst>` (when the lease expires, Redis time) and `s:<inst>` (the last
//! flush applied, for exactly-once flushes). The script only grants while
//! `u + L <= limit`, so what the fleet can spend is what was leased before
//! being spent: fleet-wide use never exceeds the limit, whatever each Envoy
//! does with its lease.
//!
//! An Envoy admits a request from its lease with no Redis round trip:
//! `local use + reserved + this request <= allowance`, where the
//! allowance is what it flushed plus its outstanding lease. The counter
//! service renews leases every `sync_interval` (and at once when a worker
//! asks), flushing the local usage deltas in the same atomic script call;
//! a lease is returned (down to what requests in flight still hold) when
//! its scope has been idle for `idle_return`. A request whose scope holds
//! no lease yet (the first request of a key on this Envoy, or the first of
//! a new rpm minute) waits for one Redis round trip: the worker leases just
//! what it needs. That is the only wait: precision ("never above the
//! budget") costs it, and only on cold scopes.
//!
//! # Failures
//!
//! A flush that got no answer is re-sent unchanged (same sequence number)
//! until Redis acknowledges it; the script applies a sequence number once,
//! so nothing is lost or counted twice. While Redis is unreachable a lease
//! already held stays usable until it expires (`lease_ttl`, measured from
//! when it was asked for, so it ends locally before Redis may reclaim it);
//! past that, `fail_open` admits against the last fleet totals known plus
//! local use (counted and flushed when Redis returns), `fail_closed`
//! answers 503.

use std::collections::BTreeMap;

use serde_json::Value;

pub use crate::config::fleet::{FleetSettings, OnUnavailable, DEFAULT_SYNC_INTERVAL_MS};
use crate::config::keys::{KeyRing, Limits};
use crate::store::{update, SharedStore};

mod records;
pub use records::*;
mod wire;
pub use wire::*;
mod lease_admission;
pub use lease_admission::*;
mod sync;
pub use sync::*;

/// Prefix of the shared-data lease records.
pub const LEASE_PREFIX: &str = "llm-gateway/v1/lease/";
/// Shared-data key of the Redis status the counter service publishes.
pub const STATUS_KEY: &str = "llm-gateway/v1/fleet/status";
/// Shared-data key of this Envoy's instance id.
pub const INSTANCE_KEY: &str = "llm-gateway/v1/fleet/instance";
/// Name of the shared queue workers wake the counter service on.
pub const WAKE_QUEUE: &str = "llm_gateway_fleet";
use crate::accounting::scope::MINUTE_MS;

// ---------------------------------------------------------------------------
// Resources and scopes
// ---------------------------------------------------------------------------

/// A leased quantity of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// Spend in the budget window, micro-USD.
    Budget = 0,
    /// Requests in the minute.
    Rpm = 1,
    /// Tokens in the minute.
    Tpm = 2,
}

impl Resource {
    /// All three, in record order.
    pub const ALL: [Resource; 3] = [Resource::Budget, Resource::Rpm, Resource::Tpm];

    /// `budget`, `rpm`, `tpm` (in Redis keys).
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Budget => "budget",
            Resource::Rpm => "rpm",
            Resource::Tpm => "tpm",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The fleet-limited resources of one scope: limit and window length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeLimits {
    /// `(limit, window ms or None for one window forever)` per resource.
    pub res: [Option<(u64, Option<u64>)>; 3],
}

impl ScopeLimits {
    /// From a key's or team's limits (budget, rpm, tpm).
    pub fn from_limits(l: &Limits) -> ScopeLimits {
        ScopeLimits {
            res: [
                l.max_budget_micro.map(|b| (b, l.budget_duration_ms)),
                l.rpm_limit.map(|r| (r, Some(MINUTE_MS))),
                l.tpm_limit.map(|t| (t, Some(MINUTE_MS))),
            ],
        }
    }

    /// A per-model budget (budget only).
    pub fn budget_only(budget: u64, duration_ms: Option<u64>) -> ScopeLimits {
        ScopeLimits {
            res: [Some((budget, duration_ms)), None, None],
        }
    }

    /// Whether any resource is limited.
    pub fn any(&self) -> bool {
        self.res.iter().any(Option::is_some)
    }

    /// Limit and window of one resource.
    pub fn get(&self, r: Resource) -> Option<(u64, Option<u64>)> {
        self.res[r.index()]
    }
}

/// Every scope of a key ring with a fleet-limited resource.
pub fn fleet_scopes(ring: &KeyRing) -> BTreeMap<String, ScopeLimits> {
    let mut out = BTreeMap::new();
    for k in ring.keys() {
        let l = ScopeLimits::from_limits(&k.limits);
        if l.any() {
            out.insert(crate::accounting::scope::key_scope(&k.alias), l);
        }
        for (m, b) in &k.model_budgets {
            out.insert(
                crate::accounting::scope::keymodel_scope(&k.alias, m),
                ScopeLimits::budget_only(b.budget_micro, b.duration_ms),
            );
        }
    }
    for t in ring.teams() {
        let l = ScopeLimits::from_limits(&t.limits);
        if l.any() {
            out.insert(crate::accounting::scope::team_scope(&t.id), l);
        }
    }
    out
}

/// Start of the window of `now_ms` (aligned to the epoch, as budgets are).
pub fn window_of(window_ms: Option<u64>, now_ms: u64) -> u64 {
    crate::accounting::scope::window_start(window_ms, now_ms)
}

/// The Redis hash of one resource of a scope in one window.
pub fn redis_key(prefix: &str, scope: &str, r: Resource, window: u64) -> String {
    format!("{prefix}:{scope}:{}:{window}", r.as_str())
}

/// Seconds a window's hash is kept after the window ends (for `/key/info`
/// and late flushes), or 0 for a window that never ends.
fn key_ttl_s(window_ms: Option<u64>) -> u64 {
    match window_ms {
        Some(w) if w > 0 => (w / 1000) * 2 + 120,
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
