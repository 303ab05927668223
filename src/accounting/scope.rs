//! Budget scopes, shared by budgets and fleet leases: scope names, the
//! per-scope record in shared data and its windows, and the usage event a
//! settled request sends to the counter service. Both `budget` (local
//! admission and settling) and `fleet` (leases, sync) build on these, so
//! neither needs the other's internals.

use serde::{Deserialize, Serialize};

use crate::store::{SharedStore, StoreError};

/// Prefix of every scope record's shared-data key.
pub const KEY_PREFIX: &str = "llm-gateway/v1/budget/";
pub const RECORD_VERSION: u8 = 1;
pub const RECORD_LEN: usize = 1 + 7 * 8;
pub const EVENT_VERSION: u8 = 1;
/// One rpm/tpm window.
pub const MINUTE_MS: u64 = 60_000;

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

    pub(crate) fn from_store(old: Option<&[u8]>) -> ScopeRecord {
        old.map(ScopeRecord::decode).unwrap_or_default()
    }

    /// Move to the budget window of `now_ms` (spend restarts, reservations
    /// carry over) and to its minute (rpm/tpm restart). Never moves back.
    pub(crate) fn roll(&mut self, duration_ms: Option<u64>, now_ms: u64) {
        let w = window_start(duration_ms, now_ms);
        if w > self.window_start_ms {
            self.window_start_ms = w;
            self.spend_micro = 0;
        }
        self.roll_minute(now_ms / MINUTE_MS);
    }

    pub(crate) fn roll_minute(&mut self, minute: u64) {
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
