//! The HTTP filter context: each proxy-wasm callback forwards to the
//! request flow ([`crate::pipeline::RequestFlow`]) with the Wasm host.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::WasmHost;
use super::timing;
use crate::config::Config;
use crate::pipeline::{self, RequestFlow};

pub struct GatewayHttp {
    flow: RequestFlow,
}

impl GatewayHttp {
    pub fn new(cfg: Rc<Config>) -> Self {
        GatewayHttp {
            flow: RequestFlow::new(cfg),
        }
    }
}

fn action(a: pipeline::Action) -> Action {
    match a {
        pipeline::Action::Continue => Action::Continue,
        pipeline::Action::Pause => Action::Pause,
    }
}

impl Context for GatewayHttp {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.flow
            .on_http_call_response(token, num_headers, body_size, &mut WasmHost::new());
    }
}

impl HttpContext for GatewayHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(
            self.flow
                .on_request_headers(end_of_stream, &mut WasmHost::new()),
        )
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.flow
                .on_request_body(body_size, end_of_stream, &mut WasmHost::new()),
        )
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(
            self.flow
                .on_response_headers(end_of_stream, &mut WasmHost::new()),
        )
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.flow
                .on_response_body(body_size, end_of_stream, &mut WasmHost::new()),
        )
    }

    fn on_log(&mut self) {
        self.flow.on_log(&mut WasmHost::new());
        timing::request_done();
    }
}
