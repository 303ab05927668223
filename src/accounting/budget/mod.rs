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

mod refusal;
pub use refusal::*;
mod admission;
pub use admission::*;
mod events;
pub use events::*;
mod key_info;
pub use key_info::*;

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

#[cfg(test)]
mod tests;
