//! The proxy-wasm edge: the only module that calls the host.
//!
//! It implements the pipeline's `Host` trait over proxy-wasm host calls
//! (`host`) and forwards each callback to the request flow (`http`) or, for
//! the root contexts, to the configuration, the usage queue and the fleet
//! sync (`root`). Decisions live in `crate::pipeline`, never here. Host calls go
//! through `proxy_wasm::hostcalls` (fallible forms), never the `Context`
//! helpers that unwrap internally: a panic takes the whole VM down.

mod host;
mod http;
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
