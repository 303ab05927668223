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

/// Prefix of the shared-data lease records.
pub const LEASE_PREFIX: &str = "llm-gateway/v1/lease/";
/// Shared-data key of the Redis status the counter service publishes.
pub const STATUS_KEY: &str = "llm-gateway/v1/fleet/status";
/// Shared-data key of this Envoy's instance id.
pub const INSTANCE_KEY: &str = "llm-gateway/v1/fleet/instance";
/// Name of the shared queue workers wake the counter service on.
pub const WAKE_QUEUE: &str = "llm_gateway_fleet";
const MINUTE_MS: u64 = 60_000;

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
            out.insert(crate::accounting::budget::key_scope(&k.alias), l);
        }
        for (m, b) in &k.model_budgets {
            out.insert(
                crate::accounting::budget::keymodel_scope(&k.alias, m),
                ScopeLimits::budget_only(b.budget_micro, b.duration_ms),
            );
        }
    }
    for t in ring.teams() {
        let l = ScopeLimits::from_limits(&t.limits);
        if l.any() {
            out.insert(crate::accounting::budget::team_scope(&t.id), l);
        }
    }
    out
}

/// Start of the window of `now_ms` (aligned to the epoch, as budgets are).
pub fn window_of(window_ms: Option<u64>, now_ms: u64) -> u64 {
    crate::accounting::budget::window_start(window_ms, now_ms)
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

// ---------------------------------------------------------------------------
// Shared-data records (service writes, workers read)
// ---------------------------------------------------------------------------

/// What this Envoy holds of one resource of a scope, as of the last sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResLease {
    /// Window start the lease belongs to.
    pub window: u64,
    /// What this Envoy may use in the window: flushed + outstanding lease.
    pub allowance: u64,
    /// Local use acknowledged by Redis.
    pub flushed: u64,
    /// Fleet-wide use in Redis (includes `flushed`).
    pub fleet_used: u64,
    /// Sum of all outstanding leases in Redis (includes this Envoy's).
    pub fleet_leased: u64,
}

/// A scope's lease record: one [`ResLease`] per resource, and until when it
/// may be used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Per resource (budget, rpm, tpm).
    pub res: [ResLease; 3],
    /// Leases may be used until this local time (ms).
    pub valid_until_ms: u64,
}

const LEASE_VERSION: u8 = 1;
const LEASE_LEN: usize = 1 + 8 + 3 * 5 * 8;

impl LeaseRecord {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(LEASE_LEN);
        b.push(LEASE_VERSION);
        b.extend_from_slice(&self.valid_until_ms.to_le_bytes());
        for r in &self.res {
            for v in [
                r.window,
                r.allowance,
                r.flushed,
                r.fleet_used,
                r.fleet_leased,
            ] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    /// Read a record; anything malformed reads as no lease.
    pub fn decode(bytes: &[u8]) -> LeaseRecord {
        if bytes.len() != LEASE_LEN || bytes.first() != Some(&LEASE_VERSION) {
            return LeaseRecord::default();
        }
        let word = |i: usize| {
            let mut a = [0u8; 8];
            if let Some(s) = bytes.get(1 + i * 8..9 + i * 8) {
                a.copy_from_slice(s);
            }
            u64::from_le_bytes(a)
        };
        let mut rec = LeaseRecord {
            valid_until_ms: word(0),
            ..LeaseRecord::default()
        };
        for (i, r) in rec.res.iter_mut().enumerate() {
            let o = 1 + i * 5;
            *r = ResLease {
                window: word(o),
                allowance: word(o + 1),
                flushed: word(o + 2),
                fleet_used: word(o + 3),
                fleet_leased: word(o + 4),
            };
        }
        rec
    }
}

/// The shared-data key of a scope's lease record.
pub fn lease_key(scope: &str) -> String {
    format!("{LEASE_PREFIX}{scope}")
}

/// A scope's lease record (`None`: never synced).
pub fn read_lease(store: &dyn SharedStore, scope: &str) -> Option<LeaseRecord> {
    store
        .get(&lease_key(scope))
        .map(|(b, _)| LeaseRecord::decode(&b))
}

/// Fleet-wide view of one resource of a scope, from its lease record (as of
/// the last sync) and the local use: `(use, leased to other Envoys)`.
/// `None` without fleet counters (no record) or when the record is for
/// another window.
pub fn fleet_use(
    store: &dyn SharedStore,
    scope: &str,
    r: Resource,
    window: u64,
    local_used: u64,
) -> Option<(u64, u64)> {
    let x = read_lease(store, scope)?.res[r.index()];
    if x.window != window {
        return None;
    }
    let own_out = x.allowance.saturating_sub(x.flushed);
    Some((
        x.fleet_used
            .saturating_add(local_used.saturating_sub(x.flushed)),
        x.fleet_leased.saturating_sub(own_out),
    ))
}

/// Whether Redis answered the counter service's last call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisStatus {
    /// No call has completed yet since this Envoy started.
    Loading,
    /// The last call succeeded.
    Up,
    /// The last call failed (since `since_ms`).
    Down,
}

/// The status as workers read it.
pub fn read_status(store: &dyn SharedStore) -> RedisStatus {
    match store.get(STATUS_KEY).and_then(|(b, _)| b.first().copied()) {
        Some(1) => RedisStatus::Up,
        Some(2) => RedisStatus::Down,
        _ => RedisStatus::Loading,
    }
}

fn write_status(store: &dyn SharedStore, s: RedisStatus) {
    let byte = match s {
        RedisStatus::Loading => 0,
        RedisStatus::Up => 1,
        RedisStatus::Down => 2,
    };
    let _ = update(store, STATUS_KEY, |_| vec![byte]);
}

/// This Envoy's instance id (its name in Redis lease fields): made once by
/// whoever needs it first, then shared by the service and every worker.
pub fn instance_id(store: &dyn SharedStore, fresh: impl FnOnce() -> String) -> String {
    if let Some((b, _)) = store.get(INSTANCE_KEY) {
        if !b.is_empty() {
            return String::from_utf8_lossy(&b).into_owned();
        }
    }
    let id = fresh();
    // Created without CAS: a concurrent creator may win; read back the winner.
    let _ = store.set(INSTANCE_KEY, id.as_bytes(), None);
    store
        .get(INSTANCE_KEY)
        .map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or(id)
}

// ---------------------------------------------------------------------------
// The Lua script and the webdis wire format
// ---------------------------------------------------------------------------

/// The one script every call runs (atomic in Redis). `ARGV[1]` is `sync`
/// (flush `delta` once per sequence number `ARGV[3]`, then change the lease
/// by the signed `change`) or `grow` (grow the lease by up to `change`);
/// `ARGV[2]` the instance, `ARGV[4]` the lease time to live (ms); then per
/// key: limit, delta, change, key TTL (s, 0 = keep). Returns per key: own
/// lease, fleet used, fleet leased, granted now. Expired leases of other
/// instances (a killed Envoy's) are reclaimed when a grant falls short, and
/// otherwise at most once per lease lifetime per key (`n`: next scan).
pub const LUA_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local op, inst, seq, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local lf, ef, sf = 'l:' .. inst, 'e:' .. inst, 's:' .. inst
local out = {}
for i, h in ipairs(KEYS) do
  local a = 4 + (i - 1) * 4
  local lim, delta, change, kttl = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local used = tonumber(redis.call('HGET', h, 'u') or '0')
  local leased = tonumber(redis.call('HGET', h, 'L') or '0')
  local own = tonumber(redis.call('HGET', h, lf) or '0')
  local want = 0
  local granted = 0
  if op == 'sync' then
    local last = tonumber(redis.call('HGET', h, sf) or '0')
    if seq > last then
      used = used + delta
      local d = math.min(own, delta)
      own = own - d
      leased = leased - d
      if change < 0 then
        local r = math.min(own, -change)
        own = own - r
        leased = leased - r
      else
        want = change
      end
      redis.call('HSET', h, sf, seq)
    end
  else
    want = change
  end
  local short = want > 0 and lim - used - leased < want
  local due = leased > own and now >= tonumber(redis.call('HGET', h, 'n') or '0')
  if short or due then
    local f = redis.call('HGETALL', h)
    for j = 1, #f, 2 do
      local name = f[j]
      if string.sub(name, 1, 2) == 'e:' and name ~= ef and tonumber(f[j + 1]) < now then
        local other = string.sub(name, 3)
        leased = leased - tonumber(redis.call('HGET', h, 'l:' .. other) or '0')
        redis.call('HDEL', h, 'l:' .. other, name)
      end
    end
    redis.call('HSET', h, 'n', now + ttl)
  end
  if want > 0 then
    granted = math.max(0, math.min(want, lim - used - leased))
    own = own + granted
    leased = leased + granted
  end
  if leased < 0 then leased = 0 end
  redis.call('HSET', h, 'u', used, 'L', leased, lf, own, ef, now + ttl)
  if kttl > 0 then redis.call('EXPIRE', h, kttl) end
  out[#out + 1] = own
  out[#out + 1] = used
  out[#out + 1] = leased
  out[#out + 1] = granted
end
return out
"#;

/// One key of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallItem {
    /// Scope name.
    pub scope: String,
    /// Which resource.
    pub res: Resource,
    /// Window start.
    pub window: u64,
    /// The resource's limit.
    pub limit: u64,
    /// Usage to flush (sync).
    pub delta: u64,
    /// Lease change (sync: signed; grow: the amount wanted).
    pub change: i64,
    /// TTL of the Redis hash, seconds.
    pub key_ttl_s: u64,
}

/// One key's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemReply {
    /// This Envoy's outstanding lease after the call.
    pub own: u64,
    /// Fleet-wide use.
    pub used: u64,
    /// Sum of all leases.
    pub leased: u64,
    /// Granted by this call.
    pub granted: u64,
}

/// Percent-encode one webdis argument: `/` separates arguments and `.`
/// picks the output format, so everything but unreserved characters is
/// escaped.
fn webdis_arg(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[(b >> 4) as usize]));
            out.push(char::from(b"0123456789ABCDEF"[(b & 15) as usize]));
        }
    }
}

/// The body of a webdis `POST /`: `EVAL/<script>/<n>/<keys...>/<args...>`.
pub fn call_body(
    prefix: &str,
    op: &str,
    inst: &str,
    seq: u64,
    lease_ttl_ms: u64,
    items: &[CallItem],
) -> Vec<u8> {
    let mut s = String::with_capacity(LUA_SCRIPT.len() * 2 + items.len() * 120);
    s.push_str("EVAL/");
    webdis_arg(LUA_SCRIPT, &mut s);
    s.push('/');
    s.push_str(&items.len().to_string());
    for it in items {
        s.push('/');
        webdis_arg(&redis_key(prefix, &it.scope, it.res, it.window), &mut s);
    }
    for a in [op, inst, &seq.to_string(), &lease_ttl_ms.to_string()] {
        s.push('/');
        webdis_arg(a, &mut s);
    }
    for it in items {
        for a in [
            it.limit.to_string(),
            it.delta.to_string(),
            it.change.to_string(),
            it.key_ttl_s.to_string(),
        ] {
            s.push('/');
            webdis_arg(&a, &mut s);
        }
    }
    s.into_bytes()
}

/// Read webdis's answer (`{"EVAL": [own, used, leased, granted, ...]}`);
/// an error reply, another shape or a wrong count is an error.
pub fn parse_reply(status: u16, body: &[u8], n: usize) -> Result<Vec<ItemReply>, String> {
    if status != 200 {
        return Err(format!("webdis answered HTTP {status}"));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("webdis answer: {e}"))?;
    let arr = v
        .get("EVAL")
        .and_then(Value::as_array)
        .ok_or_else(|| "webdis answer has no EVAL array".to_string())?;
    if arr.first() == Some(&Value::Bool(false)) {
        return Err(format!(
            "Redis error: {}",
            arr.get(1).and_then(Value::as_str).unwrap_or("unknown")
        ));
    }
    if arr.len() != n * 4 {
        return Err(format!(
            "webdis answer has {} numbers, expected {}",
            arr.len(),
            n * 4
        ));
    }
    let num = |i: usize| -> Result<u64, String> {
        let v = arr.get(i).ok_or("short answer")?;
        v.as_i64()
            .map(|x| x.max(0) as u64)
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| format!("webdis answer item {i} is not a number"))
    };
    (0..n)
        .map(|i| {
            Ok(ItemReply {
                own: num(i * 4)?,
                used: num(i * 4 + 1)?,
                leased: num(i * 4 + 2)?,
                granted: num(i * 4 + 3)?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Admission from leases (workers)
// ---------------------------------------------------------------------------

/// What a worker's own lease call obtained for this request, per scope and
/// resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Grants {
    /// No call made (first pass).
    #[default]
    None,
    /// The call answered: granted amounts (and the fleet state seen).
    Got(Vec<(String, Resource, u64, ItemReply)>),
    /// The call failed: Redis is unreachable for this request.
    Failed,
}

impl Grants {
    fn get(&self, scope: &str, r: Resource) -> Option<(u64, ItemReply)> {
        match self {
            Grants::Got(v) => v
                .iter()
                .find(|(s, res, _, _)| s == scope && *res == r)
                .map(|(_, _, g, rep)| (*g, *rep)),
            _ => None,
        }
    }
}

/// How a request stands against one resource of one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseCheck {
    /// Within what this Envoy may use.
    Ok,
    /// The limit is reached fleet-wide (`used` fleet-wide as best known,
    /// `held_elsewhere` leased to other Envoys).
    Exhausted {
        /// Fleet-wide use, best known (with local use not yet flushed).
        used: u64,
        /// Leases outstanding at other Envoys.
        held_elsewhere: u64,
    },
    /// This Envoy must lease `want` more (one Redis round trip) first.
    Need(CallItem),
    /// Redis is unreachable and `fail_closed` refuses.
    Unavailable,
    /// Redis is unreachable; `fail_open` admitted against this estimate of
    /// fleet-wide use.
    FailOpen {
        /// Fleet-wide use estimate the check was made against.
        used: u64,
    },
}

/// Inputs of one resource check.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Local use in the current window (spend, requests or tokens).
    pub used: u64,
    /// What this request adds on top, with what is already reserved
    /// locally (budget: reserved + reservation; rpm: 1; tpm: 1).
    pub extra: u64,
}

/// Check one resource of one scope against this Envoy's lease (pure).
#[allow(clippy::too_many_arguments)]
pub fn check_resource(
    settings: &FleetSettings,
    scope: &str,
    r: Resource,
    limit: u64,
    window_ms: Option<u64>,
    usage: Usage,
    lease: Option<&LeaseRecord>,
    status: RedisStatus,
    grants: &Grants,
    now_ms: u64,
) -> LeaseCheck {
    let window = window_of(window_ms, now_ms);
    let need = usage.used.saturating_add(usage.extra);
    let held = lease
        .map(|l| l.res[r.index()])
        .filter(|l| l.window == window);
    let valid = lease.is_some_and(|l| now_ms < l.valid_until_ms);
    let mut allowance = match (held, valid) {
        (Some(h), true) => h.allowance,
        _ => 0,
    };
    let granted = grants.get(scope, r);
    if let Some((g, _)) = granted {
        allowance = allowance.saturating_add(g);
    }
    if need <= allowance {
        return LeaseCheck::Ok;
    }
    // Fleet-wide use as best known: Redis's total plus what is not flushed.
    let (fleet_used, fleet_leased, own_out) = match (granted, held) {
        (Some((_, rep)), _) => (rep.used, rep.leased, rep.own),
        (None, Some(h)) => (
            h.fleet_used,
            h.fleet_leased,
            h.allowance.saturating_sub(h.flushed),
        ),
        (None, None) => (0, 0, 0),
    };
    let flushed = held.map_or(0, |h| h.flushed);
    let est_used = fleet_used.saturating_add(usage.used.saturating_sub(flushed));
    let elsewhere = fleet_leased.saturating_sub(own_out);
    let unreachable = matches!(grants, Grants::Failed)
        || (status == RedisStatus::Down && matches!(grants, Grants::None));
    if unreachable {
        return match settings.on_unavailable {
            OnUnavailable::FailClosed => LeaseCheck::Unavailable,
            OnUnavailable::FailOpen => {
                let est_need = est_used.saturating_add(usage.extra);
                if est_need <= limit {
                    LeaseCheck::FailOpen { used: est_used }
                } else {
                    LeaseCheck::Exhausted {
                        used: est_used,
                        held_elsewhere: 0,
                    }
                }
            }
        };
    }
    if granted.is_some() {
        // Leased what Redis could give and still short: the fleet is out.
        return LeaseCheck::Exhausted {
            used: est_used,
            held_elsewhere: elsewhere,
        };
    }
    // Known (fresh) to be out fleet-wide: refuse without a round trip.
    if let (Some(h), true) = (held, valid) {
        let free = limit
            .saturating_sub(h.fleet_used)
            .saturating_sub(h.fleet_leased);
        if free < need - allowance && est_used.saturating_add(usage.extra) > limit {
            return LeaseCheck::Exhausted {
                used: est_used,
                held_elsewhere: elsewhere,
            };
        }
    }
    LeaseCheck::Need(CallItem {
        scope: scope.to_string(),
        res: r,
        window,
        limit,
        delta: 0,
        change: (need - allowance) as i64,
        key_ttl_s: key_ttl_s(window_ms),
    })
}

// ---------------------------------------------------------------------------
// The counter service's sync bookkeeping
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct ResTrack {
    window: u64,
    flushed: u64,
    own: u64,
    fleet_used: u64,
    fleet_leased: u64,
    /// Use flushed by the last sync (the rate the next lease is sized for).
    last_delta: u64,
}

#[derive(Debug, Clone, Default)]
struct ScopeTrack {
    limits: ScopeLimits,
    res: [ResTrack; 3],
    last_active_ms: u64,
    /// Largest single reservation seen (a lease covers at least two).
    max_reservation: u64,
    /// When a sync for it was last built (local ms).
    last_synced_ms: u64,
}

/// A scope used on this Envoy since it started is refreshed at least every
/// this many sync intervals, idle or not, so the fleet totals it shows
/// (`/key/info`, remaining-budget header, fail-open estimates) stay recent.
const REFRESH_INTERVALS: u64 = 10;

/// A sync call in the air (or to re-send: same sequence number, same
/// deltas, until Redis acknowledges it).
#[derive(Debug, Clone)]
pub struct SyncCall {
    /// Sequence number (applied once per key by the script).
    pub seq: u64,
    /// The keys.
    pub items: Vec<CallItem>,
    /// The webdis body.
    pub body: Vec<u8>,
    /// When it was first built (local ms): leases it brings are valid for
    /// `lease_ttl` from then.
    pub built_ms: u64,
}

/// Local use of one resource in the current window, from the scope's
/// budget record (`ScopeRecord`, kept by workers and the service).
pub fn local_use(
    rec: &crate::accounting::budget::ScopeRecord,
    r: Resource,
    window: u64,
) -> (u64, u64) {
    match r {
        Resource::Budget if rec.window_start_ms == window => (rec.spend_micro, rec.reserved_micro),
        Resource::Budget => (0, rec.reserved_micro),
        Resource::Rpm if rec.minute * MINUTE_MS == window => (rec.requests, 0),
        Resource::Tpm if rec.minute * MINUTE_MS == window => (rec.tokens, 0),
        _ => (0, 0),
    }
}

/// The counter service's view of the fleet: what it flushed and holds per
/// scope, and the call in the air. One per Envoy (the singleton service).
#[derive(Debug)]
pub struct SyncState {
    settings: FleetSettings,
    inst: String,
    scopes: BTreeMap<String, ScopeTrack>,
    last_seq: u64,
    /// Built and not yet acknowledged.
    pending: Option<SyncCall>,
    /// Whether `pending` is in the air right now.
    in_air: bool,
    /// Whether every scope is synced next time (the first sync loads all).
    load_all: bool,
    status: RedisStatus,
}

impl SyncState {
    /// A fresh state for the scopes of `ring`.
    pub fn new(settings: FleetSettings, inst: String, ring: Option<&KeyRing>) -> SyncState {
        let scopes = ring
            .map(fleet_scopes)
            .unwrap_or_default()
            .into_iter()
            .map(|(s, limits)| {
                (
                    s,
                    ScopeTrack {
                        limits,
                        ..ScopeTrack::default()
                    },
                )
            })
            .collect();
        SyncState {
            settings,
            inst,
            scopes,
            last_seq: 0,
            pending: None,
            in_air: false,
            load_all: true,
            status: RedisStatus::Loading,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    /// The status of Redis as of the last call.
    pub fn status(&self) -> RedisStatus {
        self.status
    }

    /// Whether a call is in the air.
    pub fn in_air(&self) -> bool {
        self.in_air
    }

    /// Keys in the call in the air (or to re-send).
    pub fn pending_len(&self) -> usize {
        self.pending.as_ref().map_or(0, |c| c.items.len())
    }

    /// A request in `scope` was seen (a usage event, or a worker's wake);
    /// `reservation` sizes the next lease.
    pub fn note_active(&mut self, scope: &str, reservation: u64, now_ms: u64) {
        if let Some(t) = self.scopes.get_mut(scope) {
            t.last_active_ms = now_ms;
            t.max_reservation = t.max_reservation.max(reservation);
        }
    }

    /// The next call to send, or `None` (nothing to sync, or one is in the
    /// air). A call that failed is re-sent as it was.
    pub fn next_call(&mut self, store: &dyn SharedStore, now_ms: u64) -> Option<&SyncCall> {
        if self.in_air {
            return None;
        }
        if self.pending.is_none() {
            let items = self.build_items(store, now_ms);
            if items.is_empty() {
                return None;
            }
            self.last_seq = (self.last_seq + 1).max(now_ms);
            let body = call_body(
                &self.settings.key_prefix,
                "sync",
                &self.inst,
                self.last_seq,
                self.settings.lease_ttl_ms,
                &items,
            );
            self.pending = Some(SyncCall {
                seq: self.last_seq,
                items,
                body,
                built_ms: now_ms,
            });
        }
        self.in_air = true;
        self.pending.as_ref()
    }

    fn build_items(&mut self, store: &dyn SharedStore, now_ms: u64) -> Vec<CallItem> {
        let mut items = Vec::new();
        let load_all = self.load_all;
        for (scope, t) in self.scopes.iter_mut() {
            let rec = crate::accounting::budget::read_record(store, scope);
            let active = now_ms.saturating_sub(t.last_active_ms) < self.settings.idle_return_ms
                && t.last_active_ms > 0
                || rec.reserved_micro > 0
                || rec.parallel > 0;
            for r in Resource::ALL {
                let Some((limit, window_ms)) = t.limits.get(r) else {
                    continue;
                };
                let window = window_of(window_ms, now_ms);
                let tr = &mut t.res[r.index()];
                if tr.window != window {
                    *tr = ResTrack {
                        window,
                        ..ResTrack::default()
                    };
                }
                let (used, reserved) = local_use(&rec, r, window);
                let delta = used.saturating_sub(tr.flushed);
                let rate = tr.last_delta.max(delta).saturating_mul(2);
                let floor = match r {
                    Resource::Budget => t.max_reservation.saturating_mul(2),
                    _ => 1,
                };
                let slice = ((limit as f64 * self.settings.lease_fraction).ceil() as u64)
                    .max(floor)
                    .max(rate)
                    .min(limit);
                let target = reserved.saturating_add(if active { slice } else { 0 });
                let own_after = tr.own - tr.own.min(delta);
                let change = target as i64 - own_after as i64;
                let refresh = t.last_active_ms > 0
                    && now_ms.saturating_sub(t.last_synced_ms)
                        >= self.settings.sync_interval_ms * REFRESH_INTERVALS;
                if delta == 0 && change == 0 && tr.own == 0 && !load_all && !refresh {
                    continue;
                }
                items.push(CallItem {
                    scope: scope.clone(),
                    res: r,
                    window,
                    limit,
                    delta,
                    change,
                    key_ttl_s: key_ttl_s(window_ms),
                });
            }
        }
        items
    }

    /// Redis answered the call in the air (`Ok`: one reply per item) or
    /// did not (`Err`: it is re-sent next time). Updates the lease records
    /// and the status workers read.
    pub fn on_reply(
        &mut self,
        store: &dyn SharedStore,
        reply: Result<Vec<ItemReply>, String>,
    ) -> Result<(), String> {
        self.in_air = false;
        let replies = match reply {
            Ok(r) => r,
            Err(e) => {
                self.status = RedisStatus::Down;
                write_status(store, RedisStatus::Down);
                return Err(e);
            }
        };
        let Some(call) = self.pending.take() else {
            return Ok(());
        };
        self.load_all = false;
        let valid_until = call.built_ms.saturating_add(self.settings.lease_ttl_ms);
        let mut by_scope: BTreeMap<&str, Vec<(Resource, ResLease)>> = BTreeMap::new();
        for (it, rep) in call.items.iter().zip(replies.iter()) {
            let Some(t) = self.scopes.get_mut(&it.scope) else {
                continue;
            };
            t.last_synced_ms = call.built_ms;
            let tr = &mut t.res[it.res.index()];
            if tr.window != it.window {
                continue;
            }
            tr.flushed = tr.flushed.saturating_add(it.delta);
            tr.last_delta = it.delta;
            tr.own = rep.own;
            tr.fleet_used = rep.used;
            tr.fleet_leased = rep.leased;
            by_scope.entry(&it.scope).or_default().push((
                it.res,
                ResLease {
                    window: it.window,
                    allowance: tr.flushed.saturating_add(tr.own),
                    flushed: tr.flushed,
                    fleet_used: tr.fleet_used,
                    fleet_leased: tr.fleet_leased,
                },
            ));
        }
        for (scope, leases) in by_scope {
            let _ = update(store, &lease_key(scope), |old| {
                let mut rec = old.map(LeaseRecord::decode).unwrap_or_default();
                for (r, l) in &leases {
                    rec.res[r.index()] = *l;
                }
                rec.valid_until_ms = valid_until;
                rec.encode()
            });
        }
        self.status = RedisStatus::Up;
        write_status(store, RedisStatus::Up);
        Ok(())
    }
}

/// The usage-event scopes and reservations (the service notes activity
/// from every event it applies).
pub fn event_activity(event: &[u8]) -> Vec<(String, u64)> {
    crate::accounting::budget::UsageEvent::decode(event)
        .map(|e| e.scopes.into_iter().map(|s| (s.s, s.r)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
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
        use crate::accounting::budget::{record_key, ScopeRecord};
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
}
