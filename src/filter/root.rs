//! Root contexts: the HTTP filter's (reads and validates the configuration
//! once) and the counter service's.
//!
//! The same module runs in two roles, told apart by the plugin's `root_id`:
//! `llm_gateway` (the HTTP filter, one VM per worker thread) and
//! [`COUNTER_ROOT_ID`] (a singleton service VM, Envoy `envoy.bootstrap.wasm`
//! with `singleton: true` and the same `vm_id`, so both see the same shared
//! data). Filters push usage events onto the [`USAGE_QUEUE`]; the service is
//! the single writer of spend and token totals.

use std::rc::Rc;
use std::time::Duration;

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::host::{WasmHost, WasmStore};
use super::http::GatewayHttp;
use crate::accounting::fleet::{OnUnavailable, RedisStatus, SyncState};
use crate::config::Config;
use crate::pipeline::host::{add_counter, Host};
use crate::pipeline::{fleet_calls, usage_sink};

/// `root_id` of the counter service.
pub const COUNTER_ROOT_ID: &str = "llm_gateway_counter";
use crate::pipeline::usage_sink::USAGE_QUEUE;

#[derive(Default, PartialEq, Eq)]
enum Role {
    #[default]
    Filter,
    Counter,
}

/// Owns the parsed configuration; hands it to every HTTP context (filter
/// role), or drains the usage queue (counter role).
#[derive(Default)]
pub struct GatewayRoot {
    role: Role,
    config: Option<Rc<Config>>,
    queue: Option<u32>,
    /// Counter service with `counters.redis`: the fleet sync.
    fleet: Option<FleetService>,
}

/// The counter service's side of the fleet counters: one sync call at a
/// time, every `sync_interval` and whenever a worker wakes it.
struct FleetService {
    sync: SyncState,
    wake_queue: Option<u32>,
    /// The call in the air.
    token: Option<u32>,
    /// Woken while a call was in the air: sync again when it lands.
    again: bool,
    /// The tick period now set (fast until the first answer).
    tick_ms: u64,
}

impl Context for GatewayRoot {
    /// The VM is going away (shutdown, config reload): send the batched events.
    fn on_done(&mut self) -> bool {
        if self.role == Role::Filter {
            usage_sink::flush(&mut WasmHost);
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(f) = self.fleet.as_mut() else {
            return;
        };
        if f.token != Some(token) {
            return;
        }
        f.token = None;
        let n = f.sync.pending_len();
        let (status, body) = WasmHost.call_response(num_headers, body_size);
        let was = f.sync.status();
        let reply = crate::accounting::fleet::parse_reply(status.unwrap_or(0), &body, n);
        match f.sync.on_reply(&WasmStore, reply) {
            Ok(()) => {
                add_counter(&mut WasmHost, "llm_gateway.fleet.syncs", 1);
                if was == RedisStatus::Down {
                    info!("llm-gateway counter: fleet counters reachable again; unflushed usage is being flushed");
                }
            }
            Err(e) => {
                add_counter(&mut WasmHost, "llm_gateway.fleet.sync_failures", 1);
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
            let _ = hostcalls::set_tick_period(Duration::from_millis(interval));
        }
        if std::mem::take(&mut f.again) {
            f.sync_now();
        }
    }
}

impl FleetService {
    /// Send the next sync (or re-send the one that failed), unless one is
    /// in the air.
    fn sync_now(&mut self) {
        if self.token.is_some() {
            self.again = true;
            return;
        }
        let now = WasmHost.now_ms();
        let Some(call) = self.sync.next_call(&WasmStore, now) else {
            return;
        };
        let body = call.body.clone();
        match fleet_calls::post(&mut WasmHost, self.sync.settings(), &body) {
            Some(t) => self.token = Some(t),
            None => {
                let _ = self
                    .sync
                    .on_reply(&WasmStore, Err("not dispatched".to_string()));
            }
        }
    }

    fn drain_wakes(&mut self) {
        let Some(q) = self.wake_queue else {
            return;
        };
        let now = WasmHost.now_ms();
        let mut n = 0;
        while n < 10_000 {
            match hostcalls::dequeue_shared_queue(q) {
                Ok(Some(scope)) => {
                    self.sync
                        .note_active(&String::from_utf8_lossy(&scope), 0, now);
                    n += 1;
                }
                _ => break,
            }
        }
        if n > 0 {
            self.sync_now();
        }
    }
}

fn root_id() -> String {
    hostcalls::get_property(vec!["plugin_root_id"])
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl RootContext for GatewayRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        if root_id() == COUNTER_ROOT_ID {
            self.role = Role::Counter;
        }
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            Ok(None) => {
                error!("llm-gateway: no plugin configuration given; refusing to start");
                return false;
            }
            Err(status) => {
                error!("llm-gateway: cannot read plugin configuration: {status:?}");
                return false;
            }
        };
        let env = |name: &str| std::env::var(name).ok();
        let cfg = match crate::pipeline::load_config(&bytes, &env) {
            Ok(cfg) => cfg,
            Err(e) => {
                error!("llm-gateway: {e}; refusing to start");
                return false;
            }
        };
        if self.role == Role::Counter {
            return self.configure_counter(cfg);
        }
        for w in &cfg.warnings {
            warn!("llm-gateway: {w}");
        }
        info!(
            "llm-gateway: configured {} deployment(s) for {} model alias(es)",
            cfg.deployments.len(),
            cfg.aliases().len()
        );
        // Every worker runs this; seeding only creates missing records.
        crate::routing::seed(&WasmStore, &cfg);
        if let Some(ring) = cfg.keys.as_ref() {
            crate::accounting::budget::seed(&WasmStore, ring);
            // The worker's tick sends its batched usage events (usage_batch).
            let _ = hostcalls::set_tick_period(Duration::from_millis(
                crate::accounting::usage_batch::MAX_AGE_MS,
            ));
        }
        self.config = Some(Rc::new(cfg));
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if Some(queue_id) == self.queue {
            drain_usage_queue(queue_id, self.fleet.as_mut());
        } else if let Some(f) = self.fleet.as_mut() {
            f.drain_wakes();
        }
    }

    fn on_tick(&mut self) {
        if self.role == Role::Filter {
            usage_sink::flush(&mut WasmHost);
            return;
        }
        // Events are applied as they arrive; the tick catches any left behind.
        if let Some(q) = self.queue {
            drain_usage_queue(q, self.fleet.as_mut());
        }
        if let Some(f) = self.fleet.as_mut() {
            f.drain_wakes();
            f.sync_now();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let cfg = self.config.clone()?;
        Some(Box::new(GatewayHttp::new(cfg)))
    }

    fn get_type(&self) -> Option<ContextType> {
        match self.role {
            Role::Filter => Some(ContextType::HttpContext),
            Role::Counter => None,
        }
    }
}

impl GatewayRoot {
    fn configure_counter(&mut self, cfg: Config) -> bool {
        match hostcalls::register_shared_queue(USAGE_QUEUE) {
            Ok(q) => self.queue = Some(q),
            Err(s) => {
                error!("llm-gateway counter: cannot register queue {USAGE_QUEUE}: {s:?}");
                return false;
            }
        }
        if let Some(ring) = cfg.keys.as_ref() {
            crate::accounting::budget::seed(&WasmStore, ring);
        }
        let mut tick_ms = 1_000;
        if let Some(settings) = cfg.fleet.clone() {
            let wake_queue =
                match hostcalls::register_shared_queue(crate::accounting::fleet::WAKE_QUEUE) {
                    Ok(q) => Some(q),
                    Err(s) => {
                        warn!(
                            "llm-gateway counter: cannot register queue {}: {s:?}",
                            crate::accounting::fleet::WAKE_QUEUE
                        );
                        None
                    }
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
            // Fast ticks until Redis first answers: the totals are loaded
            // before (or as soon as) traffic arrives.
            tick_ms = 50;
            self.fleet = Some(FleetService {
                sync: SyncState::new(
                    settings,
                    fleet_calls::instance(&mut WasmHost),
                    cfg.keys.as_ref(),
                ),
                wake_queue,
                token: None,
                again: false,
                tick_ms,
            });
        }
        let _ = hostcalls::set_tick_period(Duration::from_millis(tick_ms));
        info!("llm-gateway counter: serving usage queue {USAGE_QUEUE}");
        self.config = Some(Rc::new(cfg));
        true
    }
}

/// Apply every queued usage event to the shared totals (and note the
/// scopes as active for the fleet sync).
fn drain_usage_queue(queue_id: u32, mut fleet: Option<&mut FleetService>) {
    let mut n = 0u32;
    // Bounded per call: a flood never starves the service's thread.
    while n < 10_000 {
        match hostcalls::dequeue_shared_queue(queue_id) {
            Ok(Some(msg)) => {
                let now = WasmHost.now_ms();
                // A message is one worker's batch of events.
                for event in crate::accounting::usage_batch::events(&msg) {
                    usage_sink::apply(&WasmHost, event, now);
                    if let Some(f) = fleet.as_deref_mut() {
                        for (scope, reserved) in crate::accounting::fleet::event_activity(event) {
                            f.sync.note_active(&scope, reserved, now);
                        }
                    }
                }
                n += 1;
            }
            Ok(None) => break,
            Err(s) => {
                warn!("llm-gateway counter: dequeue failed: {s:?}");
                break;
            }
        }
    }
}
