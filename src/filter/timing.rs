//! Where the filter's time goes, per request, inside Envoy (a diagnostic
//! build only: `LLM_GATEWAY_TIMING=1 make build`).
//!
//! Each HTTP callback (and a few spans inside them) is timed with the host
//! clock; `crate::pipeline::timing` sums and reports. `make bench` measures
//! Envoy's whole CPU per request; this says how much of it is spent inside
//! the filter's callbacks (wasm code and the host calls it makes) and which
//! spans dominate. In a normal build `ENABLED` is false and every call here
//! compiles to nothing: no clock read, no bookkeeping.

use crate::pipeline::host::Span;
use crate::pipeline::timing;

/// Set at compile time by `LLM_GATEWAY_TIMING`.
pub const ENABLED: bool = option_env!("LLM_GATEWAY_TIMING").is_some();

fn clock_ns() -> u64 {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A start mark (0 when timing is off).
#[inline(always)]
pub fn start() -> u64 {
    if ENABLED {
        clock_ns()
    } else {
        0
    }
}

/// Add the time since `started` to `span`.
#[inline(always)]
pub fn stop(span: Span, started: u64) {
    if ENABLED {
        timing::add(span, clock_ns().saturating_sub(started));
    }
}

/// One request finished.
#[inline(always)]
pub fn request_done() {
    if ENABLED {
        timing::request_done();
    }
}
