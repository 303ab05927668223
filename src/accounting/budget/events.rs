//! Usage events: what a settled request sends to the counter service, and how the service folds it into the scope records.

#[allow(unused_imports)]
use super::*;

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
