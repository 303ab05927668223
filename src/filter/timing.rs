//! Where the filter's time goes, per request, inside Envoy (a diagnostic
//! build only: `LLM_GATEWAY_TIMING=1 make build`).
//!
//! Each HTTP callback (and a few spans inside them) is timed with the host
//! clock and summed per thread; every 20,000 finished requests a `warn` log
//! line gives the mean microseconds per request of each span. `make bench`
//! measures Envoy's whole CPU per request; this says how much of it is spent
//! inside the filter's callbacks (wasm code and the host calls it makes) and
//! which spans dominate. In a normal build `ENABLED` is false and every call
//! here compiles to nothing: no clock read, no bookkeeping.

use std::cell::RefCell;

/// Set at compile time by `LLM_GATEWAY_TIMING`.
pub const ENABLED: bool = option_env!("LLM_GATEWAY_TIMING").is_some();

pub use crate::pipeline::host::Span;

const SPANS: usize = 15;
const NAMES: [&str; SPANS] = [
    "request_headers",
    "request_body",
    "response_headers",
    "response_body",
    "log",
    "prepare",
    "admission",
    "request_edits",
    "settle",
    "usage_enqueue",
    "observe",
    "authenticate",
    "plan",
    "begin_attempt",
    "attempt_succeeded",
];
const REPORT_EVERY: u64 = 20_000;

struct Totals {
    nanos: [u64; SPANS],
    calls: [u64; SPANS],
    requests: u64,
}

thread_local! {
    static TOTALS: RefCell<Totals> = const {
        RefCell::new(Totals { nanos: [0; SPANS], calls: [0; SPANS], requests: 0 })
    };
}

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
        let d = clock_ns().saturating_sub(started);
        TOTALS.with(|t| {
            let mut t = t.borrow_mut();
            t.nanos[span as usize] += d;
            t.calls[span as usize] += 1;
        });
    }
}

/// One request finished; report every [`REPORT_EVERY`].
#[inline(always)]
pub fn request_done() {
    if ENABLED {
        TOTALS.with(|t| {
            let mut t = t.borrow_mut();
            t.requests += 1;
            if t.requests < REPORT_EVERY {
                return;
            }
            let n = t.requests as f64;
            let parts: Vec<String> = (0..SPANS)
                .filter(|&i| t.calls[i] > 0)
                .map(|i| {
                    format!(
                        "{}={:.2}us({:.2} calls)",
                        NAMES[i],
                        t.nanos[i] as f64 / n / 1000.0,
                        t.calls[i] as f64 / n
                    )
                })
                .collect();
            log::warn!(
                "llm-gateway timing: per request over {} requests: {}",
                t.requests,
                parts.join(" ")
            );
            *t = Totals {
                nanos: [0; SPANS],
                calls: [0; SPANS],
                requests: 0,
            };
        });
    }
}
