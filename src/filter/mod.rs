//! The proxy-wasm edge: the only module that calls the host.
//!
//! Each callback gathers what the host knows, asks the pure code
//! (`pipeline`, `provider`) what to do, and applies the answer. Host calls go
//! through `proxy_wasm::hostcalls` (fallible forms), never the `Context`
//! helpers that unwrap internally: a panic takes the whole VM down.

mod fleet;
mod host;
mod http;
mod metrics;
mod observe;
mod root;
mod timing;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(LogLevel::Critical, &format!("llm-gateway panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::GatewayRoot::default())
    });
}}
