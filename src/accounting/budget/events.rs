//! Usage events: what a settled request sends to the counter service, and how the service folds it into the scope records.

#[allow(unused_imports)]
use super::*;

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
