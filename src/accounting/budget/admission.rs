//! Admission and release: check and reserve every scope of a request in one CAS each, undo on refusal, release at the end.

#[allow(unused_imports)]
use super::*;

/// Check one scope's record against the hold's limits; `Ok` is the record
/// with this request counted. With fleet counters, budget, rpm and tpm are
/// checked against this Envoy's leases; a missing lease is collected in
/// `needs` (the caller refuses with [`RefusalReason::Lease`] when any is).
// A refusal is the cold path; boxing it would only burden the caller.
#[allow(clippy::result_large_err)]
pub(super) fn check(
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

pub(super) fn lease_refusal(h: &Hold, needs: Vec<CallItem>) -> Refusal {
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
pub(super) fn admit_scope(
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
pub(super) fn scope_needs(
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
pub(super) fn undo(store: &dyn SharedStore, h: &Hold) -> Result<(), StoreError> {
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
