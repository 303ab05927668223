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

use super::host::{self, WasmStore};
use super::http::GatewayHttp;
use crate::config::{self, Config};

/// `root_id` of the counter service.
pub const COUNTER_ROOT_ID: &str = "llm_gateway_counter";
/// Name of the shared queue usage events travel on.
pub const USAGE_QUEUE: &str = "llm_gateway_usage";

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
}

impl Context for GatewayRoot {}

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
        let cfg = match config::parse(&bytes, &env) {
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
            crate::budget::seed(&WasmStore, ring);
        }
        self.config = Some(Rc::new(cfg));
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if Some(queue_id) == self.queue {
            drain_usage_queue(queue_id);
        }
    }

    fn on_tick(&mut self) {
        // Events are applied as they arrive; the tick catches any left behind.
        if let Some(q) = self.queue {
            drain_usage_queue(q);
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
            crate::budget::seed(&WasmStore, ring);
        }
        let _ = hostcalls::set_tick_period(Duration::from_secs(1));
        info!("llm-gateway counter: serving usage queue {USAGE_QUEUE}");
        self.config = Some(Rc::new(cfg));
        true
    }
}

/// Apply every queued usage event to the shared totals.
fn drain_usage_queue(queue_id: u32) {
    let mut n = 0u32;
    // Bounded per call: a flood never starves the service's thread.
    while n < 10_000 {
        match hostcalls::dequeue_shared_queue(queue_id) {
            Ok(Some(event)) => {
                apply_usage_event(&event, host::now_ms());
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

/// Fold one usage event into the shared totals (also used by filters when
/// no counter service is running).
pub fn apply_usage_event(event: &[u8], now_ms: u64) {
    if let Err(e) = crate::budget::apply_event(&WasmStore, event, now_ms) {
        warn!("llm-gateway counter: usage event not fully applied: {e:?}");
    }
}
