//! Budgets and limits of virtual keys and teams, kept in Envoy shared data.
//!
//! Pure logic: the filter calls [`admit`] before a request goes upstream,
//! [`release`] on every ending, [`usage_event`] once the cost is known
//! (pushing the bytes onto the shared queue), and the singleton counter
//! service calls [`apply_event`] for each queued event. Time (`now_ms`,
//! unix milliseconds) is an argument; the store is the [`SharedStore`] seam.
//!
//! # Scopes
//!
//! A request by a virtual key is counted in up to three scopes:
//!
//! - `key:<key_alias>`: the key's budget, rpm, tpm and parallel limits;
//! - `team:<team_id>`: the key's team (budget and limits shared by its keys);
//! - `keymodel:<key_alias>:<model alias>`: the key's `model_max_budget`
//!   entry for the requested alias (budget only).
//!
//! Master-key and open (no keys configured) requests are not counted.
//!
//! # Shared-data layout
//!
//! One record per scope, under `llm-gateway/v1/budget/<scope>`
//! (e.g. `llm-gateway/v1/budget/key:team-search`), 57 bytes little-endian:
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 1 | version | `1`; anything else (or another length) reads as an empty record |
//! | 8 | `window_start_ms` | start of the budget window `spend` belongs to |
//! | 8 | `spend_micro` | settled cost in that window, micro-USD |
//! | 8 | `reserved_micro` | maximum cost of admitted, not yet settled requests |
//! | 8 | `minute` | unix minute (`ms / 60000`) of `requests` and `tokens` |
//! | 8 | `requests` | requests admitted in that minute (rpm) |
//! | 8 | `tokens` | prompt + completion tokens settled in that minute (tpm) |
//! | 8 | `parallel` | requests in flight |
//!
//! Why one record per scope rather than one key per window/minute: the
//! proxy-wasm ABI cannot delete shared data, so per-minute keys would grow
//! Envoy's memory by two keys per scope per minute forever; and a key that
//! does not exist yet can only be created without a CAS token, so two
//! workers creating the same fresh key could lose an increment. With one
//! record per scope, created by [`seed`] at plugin start, every write after
//! that is a compare-and-swap ([`MAX_CAS_ATTEMPTS`] retries), so counts are
//! exact across workers; and a single record makes the admission check
//! (spend + reserved) and the settlement (spend up, reservation down) atomic.
//!
//! # Who writes what
//!
//! - Filters (at admission, [`admit`]): `reserved += reservation`,
//!   `requests += 1`, `parallel += 1`, in one CAS per scope; undone by CAS
//!   if a later scope refuses. At the end ([`release`]): `parallel -= 1`.
//! - The counter service ([`apply_event`]): `spend += cost`,
//!   `reserved -= reservation`, `tokens += tokens`, in one CAS per scope.
//!   Only the service ever changes `spend` and `tokens`.
//!
//! # Windows
//!
//! Budget windows are fixed and aligned to multiples of the duration since
//! the Unix epoch (`window_start = now - now % duration`): every Envoy and
//! every worker agrees on the boundaries without coordination. (LiteLLM
//! resets at key creation + duration instead; a `30d` budget here resets
//! every 30 days counted from 1970-01-01 UTC, a `1d` budget at 00:00 UTC.)
//! No `budget_duration`: one window forever. Rolling to a new window zeroes
//! `spend` and keeps `reserved`: requests admitted in the old window and
//! still running keep their reservation, and their cost is charged to the
//! window they settle in, so the new window's budget accounts for them too.
//! rpm/tpm use the current unix minute the same way.
//!
//! # Precision
//!
//! With `budget_reservation: true` (the default), a request is admitted in a
//! scope only if `spend + reserved + its reservation <= budget` (and
//! `spend < budget`), checked and reserved in one CAS, so concurrent
//! admissions cannot together overshoot. The reservation is the request's
//! maximum cost ([`reservation_micro`]): the estimated prompt at the highest
//! prompt-token price plus `max_tokens` (or `default_max_tokens`) at the
//! output price. The recorded spend can exceed the budget only by what
//! requests cost beyond their reservation, exactly:
//!
//! `overshoot <= Σ over admitted requests of max(0, cost - reservation)`,
//! where `cost - reservation <= (prompt_tokens - prompt_estimate) x
//! max_prompt_price + (completion_tokens - max_tokens) x output_price`.
//!
//! The second term is zero when the provider honours `max_tokens` (it
//! counts reasoning tokens too); only requests without `max_tokens` (charged
//! against `default_max_tokens`) or prompts with more tokens than the
//! estimate (`bytes / 4`, see [`prompt_estimate_tokens`]) can exceed it.
//!
//! With reservation off, a request is admitted while `spend < budget`; spend
//! is recorded when requests end, so the final spend exceeds the budget by
//! at most the cost of the requests in flight when it was crossed.
//!
//! # Leaks
//!
//! Every [`admit`] that returns an [`Admission`] must be followed by one
//! [`release`] and one [`usage_event`] (cost 0 if nothing was charged),
//! whatever the ending. A VM that dies mid-request leaves its reservations
//! and parallel slots in shared data until Envoy restarts.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::accounting::fleet::{
    self, CallItem, FleetSettings, Grants, LeaseCheck, LeaseRecord, RedisStatus, Resource,
};
use crate::api::error::{ErrorKind, GatewayError};
use crate::config::keys::{format_duration, Caller, KeyConfig, KeyRing, Limits};
use crate::config::pricing::{max_cost_micro, ModelPrice, TokenUsage};
use crate::store::{update, SharedStore, StoreError, MAX_CAS_ATTEMPTS};

/// Prefix of every scope record's shared-data key.
pub const KEY_PREFIX: &str = "llm-gateway/v1/budget/";
/// Bytes of request body per estimated prompt token.
pub const BYTES_PER_TOKEN: u64 = 4;
const RECORD_VERSION: u8 = 1;
const RECORD_LEN: usize = 1 + 7 * 8;
const EVENT_VERSION: u8 = 1;
const MINUTE_MS: u64 = 60_000;

// ---------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------

/// One scope's counters (see the module docs for the layout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeRecord {
    /// Start of the budget window `spend_micro` belongs to (unix ms).
    pub window_start_ms: u64,
    /// Settled cost in the window, micro-USD.
    pub spend_micro: u64,
    /// Reservations of admitted, unsettled requests, micro-USD.
    pub reserved_micro: u64,
    /// Unix minute of `requests` and `tokens`.
    pub minute: u64,
    /// Requests admitted in `minute`.
    pub requests: u64,
    /// Tokens settled in `minute`.
    pub tokens: u64,
    /// Requests in flight.
    pub parallel: u64,
}

impl ScopeRecord {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(RECORD_LEN);
        b.push(RECORD_VERSION);
        for v in [
            self.window_start_ms,
            self.spend_micro,
            self.reserved_micro,
            self.minute,
            self.requests,
            self.tokens,
            self.parallel,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Read a record; anything malformed is an empty record.
    pub fn decode(bytes: &[u8]) -> ScopeRecord {
        if bytes.len() != RECORD_LEN || bytes.first() != Some(&RECORD_VERSION) {
            return ScopeRecord::default();
        }
        let mut f = [0u64; 7];
        for (i, v) in f.iter_mut().enumerate() {
            let mut a = [0u8; 8];
            if let Some(s) = bytes.get(1 + i * 8..9 + i * 8) {
                a.copy_from_slice(s);
            }
            *v = u64::from_le_bytes(a);
        }
        ScopeRecord {
            window_start_ms: f[0],
            spend_micro: f[1],
            reserved_micro: f[2],
            minute: f[3],
            requests: f[4],
            tokens: f[5],
            parallel: f[6],
        }
    }

    fn from_store(old: Option<&[u8]>) -> ScopeRecord {
        old.map(ScopeRecord::decode).unwrap_or_default()
    }

    /// Move to the budget window of `now_ms` (spend restarts, reservations
    /// carry over) and to its minute (rpm/tpm restart). Never moves back.
    fn roll(&mut self, duration_ms: Option<u64>, now_ms: u64) {
        let w = window_start(duration_ms, now_ms);
        if w > self.window_start_ms {
            self.window_start_ms = w;
            self.spend_micro = 0;
        }
        self.roll_minute(now_ms / MINUTE_MS);
    }

    fn roll_minute(&mut self, minute: u64) {
        if minute > self.minute {
            self.minute = minute;
            self.requests = 0;
            self.tokens = 0;
        }
    }
}

/// Start of the budget window containing `now_ms`: aligned to multiples of
/// the duration since the epoch; no duration: 0 (one window forever).
pub fn window_start(duration_ms: Option<u64>, now_ms: u64) -> u64 {
    match duration_ms {
        Some(d) if d > 0 => now_ms - now_ms % d,
        _ => 0,
    }
}

/// When the window containing `now_ms` ends; `None` without a duration.
pub fn window_reset_ms(duration_ms: Option<u64>, now_ms: u64) -> Option<u64> {
    duration_ms
        .filter(|d| *d > 0)
        .map(|d| window_start(Some(d), now_ms).saturating_add(d))
}

/// The shared-data key of a scope's record.
pub fn record_key(scope: &str) -> String {
    format!("{KEY_PREFIX}{scope}")
}

/// A scope's record as stored (not rolled to the present).
pub fn read_record(store: &dyn SharedStore, scope: &str) -> ScopeRecord {
    store
        .get(&record_key(scope))
        .map(|(b, _)| ScopeRecord::decode(&b))
        .unwrap_or_default()
}

/// Scope name of a key.
pub fn key_scope(alias: &str) -> String {
    format!("key:{alias}")
}

/// Scope name of a team.
pub fn team_scope(id: &str) -> String {
    format!("team:{id}")
}

/// Scope name of a key's per-model budget.
pub fn keymodel_scope(alias: &str, model: &str) -> String {
    format!("keymodel:{alias}:{model}")
}

/// Create every scope record of `ring` that does not exist yet. Call once
/// at plugin start (root context) before traffic: a key can only be created
/// without CAS, so creating them early keeps every later write a CAS.
pub fn seed(store: &dyn SharedStore, ring: &KeyRing) {
    let mut scopes: Vec<String> = Vec::new();
    for k in ring.keys() {
        scopes.push(key_scope(&k.alias));
        for m in k.model_budgets.keys() {
            scopes.push(keymodel_scope(&k.alias, m));
        }
    }
    for t in ring.teams() {
        scopes.push(team_scope(&t.id));
    }
    for s in scopes {
        let key = record_key(&s);
        if store.get(&key).is_none() {
            // A concurrent creator wrote an equally empty record: nothing lost.
            let _ = store.set(&key, &ScopeRecord::default().encode(), None);
        }
    }
}

// ---------------------------------------------------------------------------
// Reservation
// ---------------------------------------------------------------------------

/// Estimated prompt tokens of a request body: `ceil(bytes / 4)` (about four
/// bytes of English JSON per token). An estimate, not a bound: CJK text or
/// unusual strings can have more tokens; base64 images fewer.
pub fn prompt_estimate_tokens(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(BYTES_PER_TOKEN)
}

/// A request's maximum cost, in micro-USD: `prompt_estimate_tokens` at the
/// highest prompt-token price plus `max_output_tokens` at the output price,
/// rounded up. Pass `max_tokens` (or `max_completion_tokens`) times `n`, or
/// `default_max_tokens` times `n` when the request sets neither. No price: 0.
pub fn reservation_micro(
    price: Option<&ModelPrice>,
    prompt_estimate_tokens: u64,
    max_output_tokens: u64,
) -> u64 {
    max_cost_micro(price, prompt_estimate_tokens, max_output_tokens)
}

// ---------------------------------------------------------------------------
// Admission
// ---------------------------------------------------------------------------

/// Why a request was refused (a metric label: [`RefusalReason::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// A budget is spent (429 `insufficient_quota`).
    Budget,
    /// Requests per minute (429 `rate_limit_exceeded`).
    Rpm,
    /// Tokens per minute (429 `rate_limit_exceeded`).
    Tpm,
    /// Requests in flight (429 `rate_limit_exceeded`).
    Parallel,
    /// The counters stayed contended through every CAS attempt (429, retry in 1 s).
    Busy,
    /// Fleet counters: this Envoy must lease more from Redis first
    /// ([`Refusal::needs`]); not an answer for the client.
    Lease,
    /// Fleet counters: Redis is unreachable and `fail_closed` refuses (503).
    Unavailable,
}

impl RefusalReason {
    /// `budget`, `rpm`, `tpm`, `parallel` or `busy`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Budget => "budget",
            RefusalReason::Rpm => "rpm",
            RefusalReason::Tpm => "tpm",
            RefusalReason::Parallel => "parallel",
            RefusalReason::Busy => "busy",
            RefusalReason::Lease => "lease",
            RefusalReason::Unavailable => "counters_unavailable",
        }
    }
}

/// A refused admission: the error for the client, why, and the
/// `retry-after` seconds to send with it (rpm/tpm: until the next minute;
/// parallel and busy: 1; budgets: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The OpenAI-shaped 429.
    pub error: GatewayError,
    /// The limit that refused.
    pub reason: RefusalReason,
    /// Seconds for a `retry-after` header.
    pub retry_after: Option<u64>,
    /// The scope that refused (`key:<alias>`, `team:<id>`, `keymodel:...`).
    pub scope: String,
    /// With [`RefusalReason::Lease`]: what to lease from Redis before
    /// admitting again (every scope's needs, so one call covers them).
    pub needs: Vec<CallItem>,
}

/// What one scope of an admission holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hold {
    scope: String,
    /// `key `a``, `team `t``..., for messages.
    label: String,
    budget_micro: Option<u64>,
    duration_ms: Option<u64>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    parallel_limit: Option<u64>,
    /// Counts requests, parallel and tokens (key and team scopes).
    counts_requests: bool,
    /// Reservation added to this scope.
    reserved: u64,
    /// Minute whose `requests` this admission incremented.
    minute: u64,
    /// Admitted by `fail_open` while the fleet counters were unreachable.
    fail_open: bool,
}

/// An admitted request's holds on its scopes: its reservation, its rpm
/// count and its parallel slot. Empty for master and open callers.
#[derive(Debug)]
pub struct Admission {
    key_alias: Option<String>,
    team: Option<String>,
    model: String,
    holds: Vec<Hold>,
    released: AtomicBool,
    settled: AtomicBool,
    /// Admitted with fleet counters (lease records exist to read).
    fleet: bool,
}

impl Admission {
    fn empty(model: &str) -> Admission {
        Admission {
            key_alias: None,
            team: None,
            model: model.to_string(),
            holds: Vec::new(),
            released: AtomicBool::new(false),
            settled: AtomicBool::new(false),
            fleet: false,
        }
    }

    /// Whether nothing is held (master/open caller).
    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }

    /// The key's alias (None for master/open).
    pub fn key_alias(&self) -> Option<&str> {
        self.key_alias.as_deref()
    }

    /// The key's team.
    pub fn team(&self) -> Option<&str> {
        self.team.as_deref()
    }

    /// Whether settling this request changes what an admission decides:
    /// a budget (the reservation is released, the spend counted) or a tpm
    /// limit (the tokens counted). Such usage events go to the counter
    /// service at once; the others may be batched (`usage_batch`).
    pub fn settles_limits(&self) -> bool {
        self.holds
            .iter()
            .any(|h| h.budget_micro.is_some() || h.tpm.is_some())
    }

    /// The model alias admitted.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The reservation made in each budget scope, micro-USD (0 when no
    /// scope has a budget or reservation is off).
    pub fn reserved_micro(&self) -> u64 {
        self.holds.iter().map(|h| h.reserved).max().unwrap_or(0)
    }

    /// Whether a scope was admitted by `fail_open` (fleet counters unreachable).
    pub fn fail_open(&self) -> bool {
        self.holds.iter().any(|h| h.fail_open)
    }

    /// The scopes held (for waking the fleet counter service).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.holds.iter().map(|h| h.scope.as_str())
    }

    /// Whether any admitted scope has a budget (then a remaining budget exists).
    pub fn has_budget(&self) -> bool {
        self.holds.iter().any(|h| h.budget_micro.is_some())
    }
}

fn limit_hold(scope: String, label: String, l: &Limits) -> Hold {
    Hold {
        scope,
        label,
        budget_micro: l.max_budget_micro,
        duration_ms: l.budget_duration_ms,
        rpm: l.rpm_limit,
        tpm: l.tpm_limit,
        parallel_limit: l.max_parallel_requests,
        counts_requests: true,
        reserved: 0,
        minute: 0,
        fail_open: false,
    }
}

/// The scopes a key's request to `model` is counted in, in check order:
/// key, team, key+model.
fn holds_for(ring: Option<&KeyRing>, k: &KeyConfig, model: &str) -> Vec<Hold> {
    let mut out = vec![limit_hold(
        key_scope(&k.alias),
        format!("key `{}`", k.alias),
        &k.limits,
    )];
    if let Some(t) = k.team.as_deref().and_then(|id| ring?.team(id)) {
        out.push(limit_hold(
            team_scope(&t.id),
            format!("team `{}` (key `{}`)", t.id, k.alias),
            &t.limits,
        ));
    }
    if let Some(b) = k.model_budgets.get(model) {
        out.push(Hold {
            scope: keymodel_scope(&k.alias, model),
            label: format!("key `{}` on model `{model}`", k.alias),
            budget_micro: Some(b.budget_micro),
            duration_ms: b.duration_ms,
            rpm: None,
            tpm: None,
            parallel_limit: None,
            counts_requests: false,
            reserved: 0,
            minute: 0,
            fail_open: false,
        });
    }
    out
}

/// `$1.5`, `$0.000123`: micro-USD as dollars, at least two decimals.
pub fn format_usd(micro: u64) -> String {
    let frac = format!("{:06}", micro % 1_000_000);
    let trimmed = frac.trim_end_matches('0');
    let frac = if trimmed.len() < 2 {
        &frac[..2]
    } else {
        trimmed
    };
    format!("${}.{frac}", micro / 1_000_000)
}

/// Unix milliseconds as UTC ISO-8601 (`2025-10-01T00:00:00Z`).
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn reset_text(duration_ms: Option<u64>, now_ms: u64) -> String {
    match window_reset_ms(duration_ms, now_ms) {
        Some(at) => format!("the budget resets at {}", format_utc(at)),
        None => "the budget has no budget_duration and does not reset".to_string(),
    }
}

fn rate_limited(reason: RefusalReason, h: &Hold, msg: String, retry_after: u64) -> Refusal {
    Refusal {
        error: GatewayError::new(429, ErrorKind::RateLimit, msg).with_code("rate_limit_exceeded"),
        reason,
        retry_after: Some(retry_after),
        scope: h.scope.clone(),
        needs: Vec::new(),
    }
}

/// Fleet counters for one admission: the settings, Redis's status as the
/// counter service last saw it, and what this request's own lease call
/// obtained (none on the first pass).
#[derive(Debug, Clone, Copy)]
pub struct FleetAdmit<'a> {
    /// `counters.redis`.
    pub settings: &'a FleetSettings,
    /// Redis's status.
    pub status: RedisStatus,
    /// What a lease call for this request granted.
    pub grants: &'a Grants,
}

/// One hold's fleet context: the admission's and the scope's lease record.
#[derive(Clone, Copy)]
struct FleetScope<'a> {
    admit: &'a FleetAdmit<'a>,
    lease: Option<&'a LeaseRecord>,
}

impl FleetScope<'_> {
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        h: &Hold,
        r: Resource,
        limit: u64,
        window_ms: Option<u64>,
        used: u64,
        extra: u64,
        now_ms: u64,
    ) -> LeaseCheck {
        fleet::check_resource(
            self.admit.settings,
            &h.scope,
            r,
            limit,
            window_ms,
            fleet::Usage { used, extra },
            self.lease,
            self.admit.status,
            self.admit.grants,
            now_ms,
        )
    }
}

fn budget_refusal(h: &Hold, detail: String, now_ms: u64) -> Refusal {
    Refusal {
        error: GatewayError::new(
            429,
            ErrorKind::InsufficientQuota,
            format!(
                "Budget exceeded for {}: {detail}; {}.",
                h.label,
                reset_text(h.duration_ms, now_ms)
            ),
        )
        .with_code("insufficient_quota"),
        reason: RefusalReason::Budget,
        retry_after: None,
        scope: h.scope.clone(),
        needs: Vec::new(),
    }
}

fn unavailable(h: &Hold, settings: &FleetSettings) -> Refusal {
    Refusal {
        error: GatewayError::new(
            503,
            ErrorKind::Unavailable,
            format!(
                "The fleet budget counters are unavailable (Redis cannot be reached through \
                 cluster `{}`) and counters.redis.on_unavailable is fail_closed, so requests of \
                 {} are refused until it is back; retry later.",
                settings.cluster, h.label
            ),
        )
        .with_code("counters_unavailable"),
        reason: RefusalReason::Unavailable,
        retry_after: Some(1),
        scope: h.scope.clone(),
        needs: Vec::new(),
    }
}

/// What a fleet check says beyond "within the lease": `Some(refusal)`
/// ends the check; needs and fail-open are recorded.
fn fleet_outcome(
    c: LeaseCheck,
    h: &Hold,
    f: &FleetScope<'_>,
    needs: &mut Vec<CallItem>,
    fail_open: &mut bool,
    exhausted: impl FnOnce(u64, u64) -> Refusal,
) -> Option<Refusal> {
    match c {
        LeaseCheck::Ok => None,
        LeaseCheck::FailOpen { .. } => {
            *fail_open = true;
            None
        }
        LeaseCheck::Need(item) => {
            needs.push(item);
            None
        }
        LeaseCheck::Exhausted {
            used,
            held_elsewhere,
        } => Some(exhausted(used, held_elsewhere)),
        LeaseCheck::Unavailable => Some(unavailable(h, f.admit.settings)),
    }
}

fn elsewhere_text(held_elsewhere: u64, fmt: impl Fn(u64) -> String) -> String {
    if held_elsewhere > 0 {
        format!(
            " (+ {} leased to other gateways, returned when they idle)",
            fmt(held_elsewhere)
        )
    } else {
        String::new()
    }
}

/// Check one scope's record against the hold's limits; `Ok` is the record
/// with this request counted. With fleet counters, budget, rpm and tpm are
/// checked against this Envoy's leases; a missing lease is collected in
/// `needs` (the caller refuses with [`RefusalReason::Lease`] when any is).
// A refusal is the cold path; boxing it would only burden the caller.
#[allow(clippy::result_large_err)]
fn check(
    h: &Hold,
    rec: &ScopeRecord,
    reserve: Option<u64>,
    now_ms: u64,
    fleet: Option<FleetScope<'_>>,
    needs: &mut Vec<CallItem>,
    fail_open: &mut bool,
) -> Result<ScopeRecord, Refusal> {
    let mut next = *rec;
    if let Some(budget) = h.budget_micro {
        let r = reserve.unwrap_or(0);
        if let Some(f) = &fleet {
            // At least one micro-USD must be left, as `spend < budget` asks.
            let extra = rec.reserved_micro.saturating_add(r.max(1));
            let c = f.check(
                h,
                Resource::Budget,
                budget,
                h.duration_ms,
                rec.spend_micro,
                extra,
                now_ms,
            );
            if let Some(refusal) = fleet_outcome(c, h, f, needs, fail_open, |used, elsewhere| {
                budget_refusal(
                    h,
                    format!(
                        "fleet-wide spend {}{} + {} reserved by requests in flight here + up to \
                         {} for this request would exceed max_budget {}",
                        format_usd(used),
                        elsewhere_text(elsewhere, format_usd),
                        format_usd(rec.reserved_micro),
                        format_usd(r),
                        format_usd(budget)
                    ),
                    now_ms,
                )
            }) {
                return Err(refusal);
            }
        } else {
            let held = rec.spend_micro.saturating_add(rec.reserved_micro);
            let over = rec.spend_micro >= budget || held.saturating_add(r) > budget;
            if over {
                let detail = if rec.spend_micro >= budget || reserve.is_none() {
                    format!(
                        "spend {} has reached max_budget {}",
                        format_usd(rec.spend_micro),
                        format_usd(budget)
                    )
                } else {
                    format!(
                        "spend {} + {} reserved by requests in flight + up to {} for this request \
                         would exceed max_budget {} (a lower max_tokens reserves less)",
                        format_usd(rec.spend_micro),
                        format_usd(rec.reserved_micro),
                        format_usd(r),
                        format_usd(budget)
                    )
                };
                return Err(budget_refusal(h, detail, now_ms));
            }
        }
        next.reserved_micro = next.reserved_micro.saturating_add(r);
    }
    let to_next_minute = (MINUTE_MS - now_ms % MINUTE_MS).div_ceil(1000).max(1);
    if let Some(l) = h.rpm {
        let msg = |fleet_used: Option<u64>| {
            rate_limited(
                RefusalReason::Rpm,
                h,
                match fleet_used {
                    Some(u) => format!(
                        "Rate limit exceeded for {}: rpm_limit {l} requests per minute across the \
                         fleet ({u} used this minute). Retry in {to_next_minute} s.",
                        h.label
                    ),
                    None => format!(
                        "Rate limit exceeded for {}: rpm_limit {l} requests per minute. Retry in \
                         {to_next_minute} s.",
                        h.label
                    ),
                },
                to_next_minute,
            )
        };
        if let Some(f) = &fleet {
            let c = f.check(
                h,
                Resource::Rpm,
                l,
                Some(MINUTE_MS),
                rec.requests,
                1,
                now_ms,
            );
            if let Some(r) = fleet_outcome(c, h, f, needs, fail_open, |u, _| msg(Some(u))) {
                return Err(r);
            }
        } else if rec.requests >= l {
            return Err(msg(None));
        }
    }
    if let Some(l) = h.tpm {
        let msg = |used: u64, fleet: bool| {
            rate_limited(
                RefusalReason::Tpm,
                h,
                format!(
                    "Rate limit exceeded for {}: tpm_limit {l} tokens per minute{} ({used} used \
                     this minute). Retry in {to_next_minute} s.",
                    h.label,
                    if fleet { " across the fleet" } else { "" }
                ),
                to_next_minute,
            )
        };
        if let Some(f) = &fleet {
            let c = f.check(h, Resource::Tpm, l, Some(MINUTE_MS), rec.tokens, 1, now_ms);
            if let Some(r) = fleet_outcome(c, h, f, needs, fail_open, |u, _| msg(u, true)) {
                return Err(r);
            }
        } else if rec.tokens >= l {
            return Err(msg(rec.tokens, false));
        }
    }
    if let Some(l) = h.parallel_limit {
        if rec.parallel >= l {
            return Err(rate_limited(
                RefusalReason::Parallel,
                h,
                format!(
                    "Rate limit exceeded for {}: max_parallel_requests {l} requests already in flight.",
                    h.label
                ),
                1,
            ));
        }
    }
    if !needs.is_empty() {
        return Err(lease_refusal(h, std::mem::take(needs)));
    }
    if h.counts_requests {
        next.requests = next.requests.saturating_add(1);
        next.parallel = next.parallel.saturating_add(1);
    }
    Ok(next)
}

fn lease_refusal(h: &Hold, needs: Vec<CallItem>) -> Refusal {
    Refusal {
        error: GatewayError::new(
            429,
            ErrorKind::RateLimit,
            format!(
                "No fleet lease for {} could be obtained; retry in 1 s.",
                h.label
            ),
        )
        .with_code("rate_limit_exceeded"),
        reason: RefusalReason::Lease,
        retry_after: Some(1),
        scope: h.scope.clone(),
        needs,
    }
}

/// Admit one scope: read, check, CAS-write; retried on conflicts. Writes
/// nothing when refusing.
#[allow(clippy::result_large_err)]
fn admit_scope(
    store: &dyn SharedStore,
    h: &mut Hold,
    reserve: Option<u64>,
    now_ms: u64,
    fleet: Option<&FleetAdmit<'_>>,
) -> Result<(), Refusal> {
    let key = record_key(&h.scope);
    let lease = fleet.and_then(|_| fleet::read_lease(store, &h.scope));
    let scope_fleet = fleet.map(|admit| FleetScope {
        admit,
        lease: lease.as_ref(),
    });
    for _ in 0..MAX_CAS_ATTEMPTS {
        let current = store.get(&key);
        let mut rec = ScopeRecord::from_store(current.as_ref().map(|(b, _)| b.as_slice()));
        rec.roll(h.duration_ms, now_ms);
        let mut needs = Vec::new();
        let mut fail_open = false;
        let next = check(
            h,
            &rec,
            reserve,
            now_ms,
            scope_fleet,
            &mut needs,
            &mut fail_open,
        )?;
        if store
            .set(&key, &next.encode(), current.map(|(_, cas)| cas))
            .is_ok()
        {
            h.reserved = next.reserved_micro - rec.reserved_micro;
            h.minute = rec.minute;
            h.fail_open = fail_open;
            return Ok(());
        }
    }
    Err(Refusal {
        error: GatewayError::new(
            429,
            ErrorKind::RateLimit,
            format!("The budget counters of {} are busy; retry in 1 s.", h.label),
        )
        .with_code("rate_limit_exceeded"),
        reason: RefusalReason::Busy,
        retry_after: Some(1),
        scope: h.scope.clone(),
        needs: Vec::new(),
    })
}

/// The lease needs of a scope, read only (to ask for every scope's lease in
/// one call when an earlier scope already needs one).
fn scope_needs(
    store: &dyn SharedStore,
    h: &Hold,
    reserve: Option<u64>,
    now_ms: u64,
    fleet: &FleetAdmit<'_>,
) -> Vec<CallItem> {
    let lease = fleet::read_lease(store, &h.scope);
    let mut rec = read_record(store, &h.scope);
    rec.roll(h.duration_ms, now_ms);
    let mut needs = Vec::new();
    let mut fail_open = false;
    let f = FleetScope {
        admit: fleet,
        lease: lease.as_ref(),
    };
    match check(
        h,
        &rec,
        reserve,
        now_ms,
        Some(f),
        &mut needs,
        &mut fail_open,
    ) {
        Err(r) if r.reason == RefusalReason::Lease => r.needs,
        _ => Vec::new(),
    }
}

/// Take back what an admitted scope added (on a later scope's refusal).
fn undo(store: &dyn SharedStore, h: &Hold) -> Result<(), StoreError> {
    update(store, &record_key(&h.scope), |old| {
        let mut r = ScopeRecord::from_store(old);
        r.reserved_micro = r.reserved_micro.saturating_sub(h.reserved);
        if h.counts_requests {
            r.parallel = r.parallel.saturating_sub(1);
            if r.minute == h.minute {
                r.requests = r.requests.saturating_sub(1);
            }
        }
        r.encode()
    })
    .map(|_| ())
}

/// Admit a request for `model_alias` (the alias the client asked for).
///
/// For a virtual key, checks and counts, scope by scope (key, team,
/// key+model): the budget (`reserve: Some(max cost)` with reservation on:
/// `spend < budget` and `spend + reserved + max cost <= budget`, then
/// reserves it; `None` with reservation off: `spend < budget`), rpm
/// (`requests this minute < rpm_limit`, then counts this one), tpm
/// (`tokens this minute < tpm_limit`) and parallel (`in flight <
/// max_parallel_requests`, then takes a slot). A refusal undoes every
/// increment made in earlier scopes. Master and open callers get an empty
/// [`Admission`]. Call [`authenticate`](crate::config::keys::authenticate) and
/// [`authorize_model`](crate::config::keys::authorize_model) first.
#[allow(clippy::result_large_err)]
pub fn admit(
    store: &dyn SharedStore,
    ring: Option<&KeyRing>,
    caller: &Caller<'_>,
    model_alias: &str,
    reserve: Option<u64>,
    now_ms: u64,
) -> Result<Admission, Refusal> {
    admit_fleet(store, ring, caller, model_alias, reserve, now_ms, None)
}

/// [`admit`], with fleet counters when `fleet` is given: budget, rpm and
/// tpm are checked against this Envoy's leases (see [`crate::accounting::fleet`]). A
/// refusal with [`RefusalReason::Lease`] lists, in [`Refusal::needs`], what
/// to lease (in one call) before calling again with the grants; nothing is
/// held meanwhile.
#[allow(clippy::result_large_err)]
pub fn admit_fleet(
    store: &dyn SharedStore,
    ring: Option<&KeyRing>,
    caller: &Caller<'_>,
    model_alias: &str,
    reserve: Option<u64>,
    now_ms: u64,
    fleet: Option<&FleetAdmit<'_>>,
) -> Result<Admission, Refusal> {
    let Caller::Key(k) = caller else {
        return Ok(Admission::empty(model_alias));
    };
    let mut holds = holds_for(ring, k, model_alias);
    for i in 0..holds.len() {
        if let Err(mut refusal) = admit_scope(store, &mut holds[i], reserve, now_ms, fleet) {
            for h in &holds[..i] {
                // Best effort: a failed undo leaves a conservative over-count.
                let _ = undo(store, h);
            }
            if let (RefusalReason::Lease, Some(f)) = (refusal.reason, fleet) {
                for h in &holds[i + 1..] {
                    refusal
                        .needs
                        .extend(scope_needs(store, h, reserve, now_ms, f));
                }
            }
            return Err(refusal);
        }
    }
    Ok(Admission {
        key_alias: Some(k.alias.clone()),
        team: k.team.clone(),
        model: model_alias.to_string(),
        holds,
        released: AtomicBool::new(false),
        settled: AtomicBool::new(false),
        fleet: fleet.is_some(),
    })
}

/// The request ended (however: success, error, client abort, upstream
/// reset): give back its parallel slots. Idempotent: only the first call
/// on an admission writes. The reservation is given back by the service
/// when it applies the request's [`usage_event`].
pub fn release(store: &dyn SharedStore, adm: &Admission) -> Result<(), StoreError> {
    if adm.released.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let mut result = Ok(());
    for h in adm.holds.iter().filter(|h| h.counts_requests) {
        let r = update(store, &record_key(&h.scope), |old| {
            let mut r = ScopeRecord::from_store(old);
            r.parallel = r.parallel.saturating_sub(1);
            r.encode()
        });
        if let Err(e) = r {
            result = Err(e);
        }
    }
    result
}

/// What a budget scope has left for this request, micro-USD: the smallest,
/// over the admission's scopes with a budget, of `budget - spend -
/// (reserved - this request's reservation)` (saturating at 0), as of
/// `now_ms`. `None` when no scope has a budget (master, open, or a key
/// without one). For mid-stream enforcement (compare the running cost)
/// and the remaining-budget response header.
pub fn remaining_micro(store: &dyn SharedStore, adm: &Admission, now_ms: u64) -> Option<u64> {
    let settled = adm.settled.load(Ordering::SeqCst);
    adm.holds
        .iter()
        .filter_map(|h| {
            let budget = h.budget_micro?;
            let mut rec = read_record(store, &h.scope);
            rec.roll(h.duration_ms, now_ms);
            let own = if settled { 0 } else { h.reserved };
            let others = rec.reserved_micro.saturating_sub(own);
            // Fleet counters: spend fleet-wide, and what other Envoys hold
            // (read only with fleet counters: one host call less per request).
            let (spend, elsewhere) = adm
                .fleet
                .then(|| {
                    fleet::fleet_use(
                        store,
                        &h.scope,
                        Resource::Budget,
                        rec.window_start_ms,
                        rec.spend_micro,
                    )
                })
                .flatten()
                .unwrap_or((rec.spend_micro, 0));
            Some(
                budget
                    .saturating_sub(spend)
                    .saturating_sub(elsewhere)
                    .saturating_sub(others),
            )
        })
        .min()
}

// ---------------------------------------------------------------------------
// Usage events (filter -> queue -> counter service)
// ---------------------------------------------------------------------------

/// One scope's part of a usage event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventScope {
    /// Scope name (`key:...`, `team:...`, `keymodel:...`).
    pub s: String,
    /// Reservation to give back, micro-USD.
    #[serde(default)]
    pub r: u64,
    /// Budget duration of the scope (ms; 0 = none), to roll its window.
    #[serde(default)]
    pub d: u64,
    /// Whether the scope counts tokens (tpm).
    #[serde(default)]
    pub tpm: bool,
}

/// A usage event as queued: JSON, small, versioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// Format version, 1.
    pub v: u8,
    /// When the request ended (unix ms): the tpm minute.
    pub at: u64,
    /// Cost, micro-USD.
    pub cost: u64,
    /// Prompt + completion tokens.
    pub tokens: u64,
    /// Key alias (for logs).
    #[serde(default)]
    pub key: Option<String>,
    /// Model alias (for logs).
    #[serde(default)]
    pub model: Option<String>,
    /// The scopes to charge.
    pub scopes: Vec<EventScope>,
}

impl UsageEvent {
    /// Decode queued bytes; anything malformed is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<UsageEvent, EventError> {
        let e: UsageEvent =
            serde_json::from_slice(bytes).map_err(|e| EventError::Malformed(e.to_string()))?;
        if e.v != EVENT_VERSION {
            return Err(EventError::Malformed(format!(
                "unknown event version {}",
                e.v
            )));
        }
        for s in &e.scopes {
            let ok = s.s.len() <= 300
                && (s.s.starts_with("key:")
                    || s.s.starts_with("team:")
                    || s.s.starts_with("keymodel:"));
            if !ok {
                return Err(EventError::Malformed("bad scope name".to_string()));
            }
        }
        Ok(e)
    }

    /// The event's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The bytes to push onto the usage queue for a finished request: its cost
/// (micro-USD, from [`pricing::cost_micro`](crate::config::pricing::cost_micro)),
/// its tokens, and the reservations to give back. Call once per admission,
/// cost 0 when nothing is charged (an error before any usage), so the
/// reservation is given back. `None` for an empty admission (master/open)
/// and on any call after the first.
pub fn usage_event(
    adm: &Admission,
    cost_micro: u64,
    usage: &TokenUsage,
    now_ms: u64,
) -> Option<Vec<u8>> {
    if adm.holds.is_empty() || adm.settled.swap(true, Ordering::SeqCst) {
        return None;
    }
    let e = UsageEvent {
        v: EVENT_VERSION,
        at: now_ms,
        cost: cost_micro,
        tokens: usage.total(),
        key: adm.key_alias.clone(),
        model: Some(adm.model.clone()),
        scopes: adm
            .holds
            .iter()
            .map(|h| EventScope {
                s: h.scope.clone(),
                r: h.reserved,
                d: h.duration_ms.unwrap_or(0),
                tpm: h.counts_requests,
            })
            .collect(),
    };
    Some(e.encode())
}

/// Why an event was not (fully) applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    /// The bytes are not a usage event (dropped).
    Malformed(String),
    /// Some scopes stayed contended; the others were applied.
    Store(Vec<StoreError>),
}

impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventError::Malformed(m) => write!(f, "malformed usage event: {m}"),
            EventError::Store(errs) => {
                write!(f, "usage event partly applied:")?;
                for e in errs {
                    write!(f, " {e};")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for EventError {}

/// Counter service: apply one queued usage event. Per scope, in one CAS:
/// roll the budget window to `now_ms` (spend restarts, reservations carry),
/// `spend += cost`, `reserved -= reservation`, and for key/team scopes
/// `tokens += tokens` in the event's minute (dropped if that minute is
/// already past in the record). Scopes are independent: a contended one
/// does not stop the others ([`EventError::Store`] lists the failures).
pub fn apply_event(store: &dyn SharedStore, bytes: &[u8], now_ms: u64) -> Result<(), EventError> {
    let e = UsageEvent::decode(bytes)?;
    let minute = e.at / MINUTE_MS;
    let mut errs = Vec::new();
    for s in &e.scopes {
        let dur = Some(s.d).filter(|d| *d > 0);
        let r = update(store, &record_key(&s.s), |old| {
            let mut rec = ScopeRecord::from_store(old);
            let w = window_start(dur, now_ms);
            if w > rec.window_start_ms {
                rec.window_start_ms = w;
                rec.spend_micro = 0;
            }
            rec.spend_micro = rec.spend_micro.saturating_add(e.cost);
            rec.reserved_micro = rec.reserved_micro.saturating_sub(s.r);
            if s.tpm {
                rec.roll_minute(minute);
                if rec.minute == minute {
                    rec.tokens = rec.tokens.saturating_add(e.tokens);
                }
            }
            rec.encode()
        });
        if let Err(err) = r {
            errs.push(err);
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(EventError::Store(errs))
    }
}

// ---------------------------------------------------------------------------
// /key/info
// ---------------------------------------------------------------------------

fn usd(micro: u64) -> Value {
    json!(micro as f64 / 1e6)
}

fn scope_info(store: &dyn SharedStore, scope: &str, l: &Limits, now_ms: u64) -> Map<String, Value> {
    let mut rec = read_record(store, scope);
    rec.roll(l.budget_duration_ms, now_ms);
    let mut m = Map::new();
    // Fleet counters: fleet-wide use as of the last sync plus what this
    // Envoy has not flushed yet; leases other Envoys hold count as held.
    let minute = rec.minute * MINUTE_MS;
    let budget_fleet = fleet::fleet_use(
        store,
        scope,
        Resource::Budget,
        rec.window_start_ms,
        rec.spend_micro,
    );
    let mut elsewhere = 0;
    if let Some((spend, held)) = budget_fleet {
        rec.spend_micro = spend;
        elsewhere = held;
        m.insert("fleet".into(), json!(true));
        m.insert("leased_elsewhere_micro".into(), json!(held));
    }
    if let Some((requests, _)) = fleet::fleet_use(store, scope, Resource::Rpm, minute, rec.requests)
    {
        rec.requests = requests;
    }
    if let Some((tokens, _)) = fleet::fleet_use(store, scope, Resource::Tpm, minute, rec.tokens) {
        rec.tokens = tokens;
    }
    m.insert("spend".into(), usd(rec.spend_micro));
    m.insert("spend_micro".into(), json!(rec.spend_micro));
    m.insert("reserved".into(), usd(rec.reserved_micro));
    m.insert("reserved_micro".into(), json!(rec.reserved_micro));
    m.insert(
        "max_budget".into(),
        l.max_budget_micro.map_or(Value::Null, usd),
    );
    m.insert(
        "budget_duration".into(),
        l.budget_duration_ms
            .map_or(Value::Null, |d| json!(format_duration(d))),
    );
    m.insert(
        "budget_reset_at".into(),
        window_reset_ms(l.budget_duration_ms, now_ms).map_or(Value::Null, |t| json!(format_utc(t))),
    );
    m.insert(
        "remaining_budget".into(),
        l.max_budget_micro.map_or(Value::Null, |b| {
            usd(b
                .saturating_sub(rec.spend_micro)
                .saturating_sub(rec.reserved_micro)
                .saturating_sub(elsewhere))
        }),
    );
    m.insert("rpm_limit".into(), json!(l.rpm_limit));
    m.insert("rpm_used".into(), json!(rec.requests));
    m.insert("tpm_limit".into(), json!(l.tpm_limit));
    m.insert("tpm_used".into(), json!(rec.tokens));
    m.insert(
        "max_parallel_requests".into(),
        json!(l.max_parallel_requests),
    );
    m.insert("parallel_requests".into(), json!(rec.parallel));
    m
}

/// `GET /key/info` for one key, as of `now_ms` (LiteLLM's `info` object
/// names where they exist): `key_alias`, `models`, `team_id`, `spend`
/// (USD) / `spend_micro`, `reserved` / `reserved_micro`, `max_budget`,
/// `budget_duration`, `budget_reset_at` (UTC ISO-8601), `remaining_budget`,
/// `rpm_limit` / `rpm_used` and `tpm_limit` / `tpm_used` (this minute),
/// `max_parallel_requests` / `parallel_requests`, `team` (the same fields
/// for the team, plus `team_id` and `models`; null without a team) and
/// `model_max_budget` (per model alias: `budget_limit`, `time_period`,
/// `spend`, `spend_micro`, `reserved_micro`, `budget_reset_at`).
pub fn key_info(store: &dyn SharedStore, ring: &KeyRing, key: &KeyConfig, now_ms: u64) -> Value {
    let mut info = Map::new();
    info.insert("key_alias".into(), json!(key.alias));
    info.insert("models".into(), json!(key.models));
    info.insert("team_id".into(), json!(key.team));
    info.extend(scope_info(
        store,
        &key_scope(&key.alias),
        &key.limits,
        now_ms,
    ));
    let team = key.team.as_deref().and_then(|id| ring.team(id)).map(|t| {
        let mut m = Map::new();
        m.insert("team_id".into(), json!(t.id));
        m.insert("models".into(), json!(t.models));
        m.extend(scope_info(store, &team_scope(&t.id), &t.limits, now_ms));
        Value::Object(m)
    });
    info.insert("team".into(), team.unwrap_or(Value::Null));
    let mut per_model = Map::new();
    for (model, b) in &key.model_budgets {
        let mut rec = read_record(store, &keymodel_scope(&key.alias, model));
        rec.roll(b.duration_ms, now_ms);
        per_model.insert(
            model.clone(),
            json!({
                "budget_limit": usd(b.budget_micro),
                "time_period": b.duration_ms.map(format_duration),
                "spend": usd(rec.spend_micro),
                "spend_micro": rec.spend_micro,
                "reserved_micro": rec.reserved_micro,
                "budget_reset_at": window_reset_ms(b.duration_ms, now_ms).map(format_utc),
            }),
        );
    }
    info.insert("model_max_budget".into(), Value::Object(per_model));
    Value::Object(info)
}

#[cfg(test)]
mod tests {
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
            m.contains("`team-search`")
                && m.contains("$0.001")
                && m.contains("2023-11-15T00:00:00Z"),
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
}
