//! The diagnostic timing build's bookkeeping (`LLM_GATEWAY_TIMING=1 make
//! build`): span times summed per thread, a `warn` line every
//! [`REPORT_EVERY`] requests with the mean microseconds per request of each
//! span. The host gives the clock (`src/filter/timing.rs`); in a normal
//! build nothing here is called.

use std::cell::RefCell;

use super::host::Span;

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
pub const REPORT_EVERY: u64 = 20_000;

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

/// Add `nanos` to `span`.
pub fn add(span: Span, nanos: u64) {
    TOTALS.with(|t| {
        let mut t = t.borrow_mut();
        t.nanos[span as usize] += nanos;
        t.calls[span as usize] += 1;
    });
}

/// One request finished; report every [`REPORT_EVERY`].
pub fn request_done() {
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
