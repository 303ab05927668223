//! The counter service's sync bookkeeping: which scopes to flush and renew, sequence numbers, replies.

#[allow(unused_imports)]
use super::*;

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ResTrack {
    pub(super) window: u64,
    pub(super) flushed: u64,
    pub(super) own: u64,
    pub(super) fleet_used: u64,
    pub(super) fleet_leased: u64,
    /// Use flushed by the last sync (the rate the next lease is sized for).
    pub(super) last_delta: u64,
}

#[derive(Debug, Clone, Default)]
pub(super) struct ScopeTrack {
    pub(super) limits: ScopeLimits,
    pub(super) res: [ResTrack; 3],
    pub(super) last_active_ms: u64,
    /// Largest single reservation seen (a lease covers at least two).
    pub(super) max_reservation: u64,
    /// When a sync for it was last built (local ms).
    pub(super) last_synced_ms: u64,
}

/// A scope used on this Envoy since it started is refreshed at least every
/// this many sync intervals, idle or not, so the fleet totals it shows
/// (`/key/info`, remaining-budget header, fail-open estimates) stay recent.
pub(super) const REFRESH_INTERVALS: u64 = 10;

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
    rec: &crate::accounting::scope::ScopeRecord,
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
    pub(super) settings: FleetSettings,
    pub(super) inst: String,
    pub(super) scopes: BTreeMap<String, ScopeTrack>,
    pub(super) last_seq: u64,
    /// Built and not yet acknowledged.
    pub(super) pending: Option<SyncCall>,
    /// Whether `pending` is in the air right now.
    pub(super) in_air: bool,
    /// Whether every scope is synced next time (the first sync loads all).
    pub(super) load_all: bool,
    pub(super) status: RedisStatus,
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

    pub(super) fn build_items(&mut self, store: &dyn SharedStore, now_ms: u64) -> Vec<CallItem> {
        let mut items = Vec::new();
        let load_all = self.load_all;
        for (scope, t) in self.scopes.iter_mut() {
            let rec = crate::accounting::scope::read_record(store, scope);
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
    crate::accounting::scope::UsageEvent::decode(event)
        .map(|e| e.scopes.into_iter().map(|s| (s.s, s.r)).collect())
        .unwrap_or_default()
}
