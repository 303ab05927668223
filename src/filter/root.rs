//! Root contexts: the HTTP filter's (reads and validates the configuration
//! once) and the counter service's.
//!
//! The same module runs in two roles, told apart by the plugin's `root_id`:
//! `llm_gateway` (the HTTP filter, one VM per worker thread) and
//! [`COUNTER_ROOT_ID`] (a singleton service VM, Envoy `envoy.bootstrap.wasm`
//! with `singleton: true` and the same `vm_id`, so both see the same shared
//! data). What each role does is in `crate::pipeline` (`load`,
//! `counter_service`); this file only registers queues and forwards.

use std::rc::Rc;

use log::{error, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::host::{self, remember_queue, WasmHost};
use super::http::GatewayHttp;
use crate::accounting::fleet::WAKE_QUEUE;
use crate::config::Config;
use crate::pipeline::counter_service::{CounterService, SPEND_QUEUE, USAGE_QUEUE};
use crate::pipeline::host::Host;
use crate::pipeline::trace_sink;
use crate::pipeline::{load, usage_sink};

/// `root_id` of the counter service.
pub const COUNTER_ROOT_ID: &str = "llm_gateway_counter";

/// Owns the parsed configuration; hands it to every HTTP context (filter
/// role), or runs the counter service (counter role).
#[derive(Default)]
pub struct GatewayRoot {
    config: Option<Rc<Config>>,
    /// The counter role's service and its registered queues.
    counter: Option<(CounterService, Vec<(u32, &'static str)>)>,
    is_counter: bool,
}

impl Context for GatewayRoot {
    /// The VM is going away (shutdown, config reload): send the batched events.
    fn on_done(&mut self) -> bool {
        if !self.is_counter {
            usage_sink::flush(&mut WasmHost::new());
            if let Some(cfg) = self.config.as_ref() {
                trace_sink::flush(cfg, &mut WasmHost::new());
            }
        }
        host::flush_counters();
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        match self.counter.as_mut() {
            Some((service, _)) => {
                service.on_http_call_response(token, num_headers, body_size, &mut WasmHost::new())
            }
            None => {
                trace_sink::answered(token, num_headers, body_size, &mut WasmHost::new());
            }
        }
        host::flush_counters();
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
        self.is_counter = root_id() == COUNTER_ROOT_ID;
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
        let cfg = match load::load_config(&bytes, &env) {
            Ok(cfg) => cfg,
            Err(e) => {
                error!("llm-gateway: {e}; refusing to start");
                return false;
            }
        };
        if self.is_counter {
            return self.configure_counter(cfg);
        }
        let tick_ms = load::start_worker(&cfg, &mut WasmHost::new());
        WasmHost::new().set_tick_period(tick_ms);
        self.config = Some(Rc::new(cfg));
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Some((service, queues)) = self.counter.as_mut() {
            if let Some((_, name)) = queues.iter().find(|(id, _)| *id == queue_id) {
                service.on_queue_ready(name, &mut WasmHost::new());
            }
        }
        host::flush_counters();
    }

    fn on_tick(&mut self) {
        match self.counter.as_mut() {
            Some((service, _)) => service.on_tick(&mut WasmHost::new()),
            None => {
                usage_sink::flush(&mut WasmHost::new());
                if let Some(cfg) = self.config.as_ref() {
                    trace_sink::flush(cfg, &mut WasmHost::new());
                }
            }
        }
        host::flush_counters();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let cfg = self.config.clone()?;
        Some(Box::new(GatewayHttp::new(cfg)))
    }

    fn get_type(&self) -> Option<ContextType> {
        (!self.is_counter).then_some(ContextType::HttpContext)
    }
}

impl GatewayRoot {
    fn configure_counter(&mut self, cfg: Config) -> bool {
        let mut queues = Vec::new();
        match hostcalls::register_shared_queue(USAGE_QUEUE) {
            Ok(q) => queues.push((q, USAGE_QUEUE)),
            Err(s) => {
                error!("llm-gateway counter: cannot register queue {USAGE_QUEUE}: {s:?}");
                return false;
            }
        }
        match hostcalls::register_shared_queue(SPEND_QUEUE) {
            Ok(q) => queues.push((q, SPEND_QUEUE)),
            Err(s) => warn!("llm-gateway counter: cannot register queue {SPEND_QUEUE}: {s:?}"),
        }
        if cfg.fleet.is_some() {
            match hostcalls::register_shared_queue(WAKE_QUEUE) {
                Ok(q) => queues.push((q, WAKE_QUEUE)),
                Err(s) => warn!("llm-gateway counter: cannot register queue {WAKE_QUEUE}: {s:?}"),
            }
        }
        for (id, name) in &queues {
            remember_queue(name, *id);
        }
        let (service, tick_ms) = CounterService::start(&cfg, &mut WasmHost::new());
        WasmHost::new().set_tick_period(tick_ms);
        self.counter = Some((service, queues));
        self.config = Some(Rc::new(cfg));
        true
    }
}
