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

use serde_json::{json, Map, Value};

use crate::accounting::fleet::{
    self, CallItem, FleetSettings, Grants, LeaseCheck, LeaseRecord, RedisStatus, Resource,
};
use crate::api::error::{ErrorKind, GatewayError};
use crate::config::keys::{format_duration, Caller, KeyConfig, KeyRing, Limits};
use crate::config::pricing::{max_cost_micro, ModelPrice, TokenUsage};
use crate::store::{update, SharedStore, StoreError, MAX_CAS_ATTEMPTS};

pub use crate::accounting::scope::*;

/// Bytes of request body per estimated prompt token.
pub const BYTES_PER_TOKEN: u64 = 4;

mod refusal;
pub use refusal::*;
mod admission;
pub use admission::*;
mod events;
pub use events::*;
mod key_info;
pub use key_info::*;

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
