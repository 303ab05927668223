//! The counter service (the singleton service VM): the single writer of
//! spend and token totals, and, with fleet counters, the sync with Redis.
//!
//! Filters push usage events onto [`USAGE_QUEUE`]; the service folds them
//! into the shared scope records. With `counters.redis`, it also renews
//! leases and flushes usage every `sync_interval` and whenever a worker
//! wakes it on [`fleet::WAKE_QUEUE`], one webdis call at a time.
//! `src/filter/root.rs` registers the queues and forwards the root
//! context's callbacks here.

use log::{info, warn};

use super::host::{add_counter, Host};
use super::{fleet_calls, spend_fleet, usage_sink};
use crate::accounting::fleet::{self, OnUnavailable, RedisStatus, SyncState};
use crate::accounting::usage_batch;
use crate::config::Config;

pub use super::usage_sink::SPEND_QUEUE;
pub use usage_sink::USAGE_QUEUE;

/// Messages taken off a queue per callback: a flood never starves the
/// service's thread.
const MAX_DEQUEUE: u32 = 10_000;
/// The tick period until Redis first answers: the totals are loaded
/// before (or as soon as) traffic arrives.
const FAST_TICK_MS: u64 = 50;
/// The tick period without fleet counters (catching stray usage events).
const SLOW_TICK_MS: u64 = 1_000;

/// The service's state.
pub struct CounterService {
    fleet: Option<FleetSync>,
    /// Spend rows (with their day) not yet added to Redis, and the flush in the air.
    spend_pending: Vec<(String, crate::spend::ledger::Row)>,
    spend_call: Option<(u32, Vec<(String, crate::spend::ledger::Row)>)>,
}

/// The fleet sync: one call at a time.
struct FleetSync {
    sync: SyncState,
    /// The call in the air.
    token: Option<u32>,
    /// Woken while a call was in the air: sync again when it lands.
    again: bool,
    /// The tick period now set (fast until the first answer).
    tick_ms: u64,
}

impl CounterService {
    /// Start the service for `cfg`; returns it and the tick period to set.
    pub fn start(cfg: &Config, host: &mut dyn Host) -> (CounterService, u64) {
        if let Some(ring) = cfg.keys.as_ref() {
            crate::accounting::budget::seed(host.store(), ring);
        }
        let Some(settings) = cfg.fleet.clone() else {
            info!("llm-gateway counter: serving usage queue {USAGE_QUEUE}");
            return (
                CounterService {
                    fleet: None,
                    spend_pending: Vec::new(),
                    spend_call: None,
                },
                SLOW_TICK_MS,
            );
        };
        info!(
            "llm-gateway counter: fleet counters through cluster `{}` (key prefix `{}`, sync every {} ms, {})",
            settings.cluster,
            settings.key_prefix,
            settings.sync_interval_ms,
            match settings.on_unavailable {
                OnUnavailable::FailOpen => "fail_open",
                OnUnavailable::FailClosed => "fail_closed",
            }
        );
        let instance = fleet_calls::instance(host);
        let sync = SyncState::new(settings, instance, cfg.keys.as_ref());
        let fleet = FleetSync {
            sync,
            token: None,
            again: false,
            tick_ms: FAST_TICK_MS,
        };
        info!("llm-gateway counter: serving usage queue {USAGE_QUEUE}");
        (
            CounterService {
                fleet: Some(fleet),
                spend_pending: Vec::new(),
                spend_call: None,
            },
            FAST_TICK_MS,
        )
    }

    /// A queue has messages: usage events, or scopes a worker woke.
    pub fn on_queue_ready(&mut self, queue: &'static str, host: &mut dyn Host) {
        if queue == USAGE_QUEUE {
            self.drain_usage(host);
        } else if queue == SPEND_QUEUE {
            self.drain_spend(host);
        } else if queue == fleet::WAKE_QUEUE {
            self.drain_wakes(host);
        }
    }

    /// The tick: events left behind, then the periodic sync.
    pub fn on_tick(&mut self, host: &mut dyn Host) {
        self.drain_usage(host);
        self.drain_spend(host);
        self.drain_wakes(host);
        if let Some(f) = self.fleet.as_mut() {
            f.sync_now(host);
        }
        self.flush_spend(host);
    }

    /// Apply every queued usage event to the shared totals (and note the
    /// scopes as active for the fleet sync).
    fn drain_usage(&mut self, host: &mut dyn Host) {
        for _ in 0..MAX_DEQUEUE {
            let Some(msg) = host.dequeue(USAGE_QUEUE) else {
                break;
            };
            let now = host.now_ms();
            // A message is one worker's batch of events.
            for event in usage_batch::events(&msg) {
                usage_sink::apply(host, event, now);
                if let Some(f) = self.fleet.as_mut() {
                    for (scope, reserved) in fleet::event_activity(event) {
                        f.sync.note_active(&scope, reserved, now);
                    }
                }
            }
        }
    }

    fn drain_wakes(&mut self, host: &mut dyn Host) {
        let Some(f) = self.fleet.as_mut() else {
            return;
        };
        let now = host.now_ms();
        let mut woken = false;
        for _ in 0..MAX_DEQUEUE {
            let Some(scope) = host.dequeue(fleet::WAKE_QUEUE) else {
                break;
            };
            f.sync.note_active(&String::from_utf8_lossy(&scope), 0, now);
            woken = true;
        }
        if woken {
            f.sync_now(host);
        }
    }

    /// Fold queued spend records into this Envoy's daily totals and recent
    /// ring, and (fleet counters) into the rows waiting for Redis.
    fn drain_spend(&mut self, host: &mut dyn Host) {
        for _ in 0..MAX_DEQUEUE {
            let Some(msg) = host.dequeue(SPEND_QUEUE) else {
                break;
            };
            // A message is one worker's batch of records, one per line.
            let per_day = usage_sink::apply_spend(host, &msg);
            if self.fleet.is_some() {
                for (day, rows) in &per_day {
                    spend_fleet::pend(&mut self.spend_pending, day, rows);
                }
            }
        }
        let over = self
            .spend_pending
            .len()
            .saturating_sub(spend_fleet::MAX_PENDING_ROWS);
        if over > 0 {
            self.spend_pending.drain(..over);
            add_counter(host, "llm_gateway.spend.fleet_rows_dropped", over as u64);
        }
    }

    /// Send the pending spend rows to Redis (one call in the air).
    fn flush_spend(&mut self, host: &mut dyn Host) {
        let Some(settings) = self.fleet.as_ref().map(|f| f.sync.settings().clone()) else {
            return;
        };
        if self.spend_call.is_some() || self.spend_pending.is_empty() {
            return;
        }
        let n = self.spend_pending.len().min(spend_fleet::MAX_ROWS_PER_CALL);
        let rows: Vec<_> = self.spend_pending.drain(..n).collect();
        let body = spend_fleet::flush_body(&settings, &rows);
        match fleet_calls::post(host, &settings, &body) {
            Some(t) => self.spend_call = Some((t, rows)),
            None => self.spend_pending.extend(rows),
        }
    }

    /// A call answered (or failed): a fleet sync, or a spend flush.
    pub fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        host: &mut dyn Host,
    ) {
        if self.spend_call.as_ref().is_some_and(|(t, _)| *t == token) {
            let Some((_, rows)) = self.spend_call.take() else {
                return;
            };
            let (status, body) = host.call_response(num_headers, body_size);
            if spend_fleet::flushed(status, &body) {
                add_counter(host, "llm_gateway.spend.fleet_flushes", 1);
            } else {
                add_counter(host, "llm_gateway.spend.fleet_flush_failures", 1);
                for (day, row) in rows {
                    spend_fleet::pend(&mut self.spend_pending, &day, &[row]);
                }
            }
            return;
        }
        let Some(f) = self.fleet.as_mut() else {
            return;
        };
        if f.token != Some(token) {
            return;
        }
        f.token = None;
        let n = f.sync.pending_len();
        let (status, body) = host.call_response(num_headers, body_size);
        let was = f.sync.status();
        let reply = fleet::parse_reply(status.unwrap_or(0), &body, n);
        match f.sync.on_reply(host.store(), reply) {
            Ok(()) => {
                add_counter(host, "llm_gateway.fleet.syncs", 1);
                if was == RedisStatus::Down {
                    info!("llm-gateway counter: fleet counters reachable again; unflushed usage is being flushed");
                }
            }
            Err(e) => {
                add_counter(host, "llm_gateway.fleet.sync_failures", 1);
                if was != RedisStatus::Down {
                    let mode = match f.sync.settings().on_unavailable {
                        OnUnavailable::FailOpen => "fail_open: admitting against local counts",
                        OnUnavailable::FailClosed => {
                            "fail_closed: refusing budgeted requests once leases run out"
                        }
                    };
                    warn!("llm-gateway counter: fleet counters unreachable ({e}); {mode}");
                }
            }
        }
        let interval = f.sync.settings().sync_interval_ms;
        if f.tick_ms != interval && f.sync.status() == RedisStatus::Up {
            f.tick_ms = interval;
            host.set_tick_period(interval);
        }
        if std::mem::take(&mut f.again) {
            f.sync_now(host);
        }
    }
}

impl FleetSync {
    /// Send the next sync (or re-send the one that failed), unless one is
    /// in the air.
    fn sync_now(&mut self, host: &mut dyn Host) {
        if self.token.is_some() {
            self.again = true;
            return;
        }
        let now = host.now_ms();
        let Some(call) = self.sync.next_call(host.store(), now) else {
            return;
        };
        let body = call.body.clone();
        match fleet_calls::post(host, self.sync.settings(), &body) {
            Some(t) => self.token = Some(t),
            None => {
                let _ = self
                    .sync
                    .on_reply(host.store(), Err("not dispatched".to_string()));
            }
        }
    }
}
