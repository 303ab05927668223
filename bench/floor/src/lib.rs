//! The cost floor of a proxy-wasm filter on this machine (`make bench-floor`).
//!
//! No logic: each mode does only host work that llm-gateway's filter must do
//! for a proxied request, so `make bench-floor` can say how much of the
//! filter's added CPU any proxy-wasm filter pays in Envoy before it does
//! anything useful. The mode is the plugin configuration string; its words
//! switch steps on:
//!
//! - `noop`: every callback returns at once (the VM and callbacks alone);
//! - `buf`: hold the request headers until the whole body is in;
//! - `replace`: read the body into the VM and write it back;
//! - `hdr`: remove 7 request headers and set 8 (credentials, accept-encoding,
//!   path, authority, provider key, content-length, cluster, timeout);
//! - `route`: `clear_route_cache` (the route follows the cluster header);
//! - `resp`: hold the response until its end, read it and write it back,
//!   remove `content-length`, set 3 response headers;
//! - `state`: write 8 filter-state values for the access log.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default, Clone, Copy)]
struct Mode {
    noop: bool,
    buf: bool,
    replace: bool,
    hdr: bool,
    route: bool,
    resp: bool,
    state: bool,
}

impl Mode {
    fn parse(s: &str) -> Mode {
        let has = |w: &str| {
            s.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|x| x == w)
        };
        Mode {
            noop: has("noop"),
            buf: has("buf"),
            replace: has("replace"),
            hdr: has("hdr"),
            route: has("route"),
            resp: has("resp"),
            state: has("state"),
        }
    }
}

#[derive(Default)]
struct Root {
    mode: Mode,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        if let Ok(Some(c)) = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            self.mode = Mode::parse(&String::from_utf8_lossy(&c));
        }
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http { mode: self.mode }))
    }
}

struct Http {
    mode: Mode,
}

impl Context for Http {}

/// The request headers llm-gateway strips (client credentials and
/// `accept-encoding`; src/filter/http.rs), removed here whether present or not.
const REMOVED: [&str; 7] = [
    "authorization",
    "x-api-key",
    "api-key",
    "openai-organization",
    "openai-project",
    "x-goog-api-key",
    "accept-encoding",
];

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if self.mode.noop || end_of_stream || !self.mode.buf {
            return Action::Continue;
        }
        Action::Pause
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if self.mode.noop || !self.mode.buf {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        if self.mode.replace {
            let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
                .ok()
                .flatten()
                .unwrap_or_default();
            let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, &body);
        }
        if self.mode.hdr {
            for h in REMOVED {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, h);
            }
            // The values the plain route leaves working: same path, same cluster.
            let path = hostcalls::get_map_value(MapType::HttpRequestHeaders, ":path")
                .ok()
                .flatten()
                .unwrap_or_default();
            for (k, v) in [
                ("x-envoy-original-path", path.as_str()),
                (":path", path.as_str()),
                ("authorization", "Bearer floor-provider-key"),
                ("x-floor-cluster", "floor"),
                ("x-floor-a", "1"),
                ("x-floor-b", "2"),
                ("x-floor-c", "3"),
                ("x-envoy-upstream-rq-timeout-ms", "600000"),
            ] {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, k, Some(v));
            }
        }
        if self.mode.route {
            let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if self.mode.noop || !self.mode.resp {
            return Action::Continue;
        }
        let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, "content-length");
        for (k, v) in [
            ("x-floor-attempts", "1"),
            ("x-floor-deployment", "floor"),
            ("x-floor-fallback", "false"),
        ] {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, k, Some(v));
        }
        Action::Pause
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if self.mode.noop || !self.mode.resp {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, &body);
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.mode.noop || !self.mode.state {
            return;
        }
        for i in 0..8 {
            let key = format!("floor.value_{i}");
            let _ = hostcalls::set_property(vec![key.as_str()], Some(b"value".as_slice()));
        }
    }
}
