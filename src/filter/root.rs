//! Root context: reads and validates the plugin configuration once.

use std::rc::Rc;

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::http::GatewayHttp;
use crate::config::{self, Config};

/// Owns the parsed configuration; hands it to every HTTP context.
#[derive(Default)]
pub struct GatewayRoot {
    config: Option<Rc<Config>>,
}

impl Context for GatewayRoot {}

impl RootContext for GatewayRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
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
        match config::parse(&bytes, &env) {
            Ok(cfg) => {
                for w in &cfg.warnings {
                    warn!("llm-gateway: {w}");
                }
                info!(
                    "llm-gateway: configured {} deployment(s) for {} model alias(es)",
                    cfg.deployments.len(),
                    cfg.aliases().len()
                );
                // Every worker runs this; seeding only creates missing records.
                crate::routing::seed(&super::host::WasmStore, &cfg);
                self.config = Some(Rc::new(cfg));
                true
            }
            Err(e) => {
                error!("llm-gateway: {e}; refusing to start");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let cfg = self.config.clone()?;
        Some(Box::new(GatewayHttp::new(cfg)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
