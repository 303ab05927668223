//! The seam between the request flow and Envoy: everything the flow needs
//! from the host, as one trait.
//!
//! `src/filter/` implements [`Host`] over proxy-wasm host calls (and nothing
//! else: no decisions); the native tests implement it in memory
//! (`tests/support/fake_host.rs`). The flow never calls the host any other
//! way, so every decision it makes can be tested natively in milliseconds.
//!
//! Calls are infallible from the flow's point of view: a failed host call is
//! logged by the implementation and reads as "nothing there" (`None`, an
//! empty body), because the flow cannot do better than carry on, and a panic
//! would take the whole VM down.

use crate::store::SharedStore;

/// What a callback tells Envoy: go on with the request or response, or hold
/// it (the flow resumes it later, or has replied locally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// One part of a metric name: fixed text, or a label value (the host
/// replaces its characters outside `[A-Za-z0-9_]` with `_`).
///
/// Names are passed in parts so the host can look a metric up by a hash of
/// the parts without formatting the name (a request makes a dozen updates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    Text(&'static str),
    Label(&'a str),
}

/// Which header map an edit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMap {
    /// The request's (on its way to the provider).
    Request,
    /// The response's (on its way to the client).
    Response,
}

/// The kind of a recorded (non-counter) metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Histogram,
    Gauge,
}

/// The spans the diagnostic timing build measures (`LLM_GATEWAY_TIMING=1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
    Log,
    /// Inside the request body callback: validate and index the body.
    Prepare,
    /// Inside the request body callback: budgets and limits.
    Admission,
    /// Inside the request body callback: the header, body and route edits.
    RequestEdits,
    /// Settling: cost, usage event, release, metrics.
    Settle,
    /// Handing usage events to the counter service.
    UsageEnqueue,
    /// Metrics and access-log values.
    Observe,
    /// Authenticating the caller (request headers).
    Authenticate,
    /// Planning the attempts: model access, routing plan, reservation, ids.
    Plan,
    /// Starting an attempt: in-flight count, metrics, access-log values.
    BeginAttempt,
    /// A successful attempt: latency, routing statistics, in-flight release.
    AttemptSucceeded,
}

/// Everything the request flow asks of Envoy.
pub trait Host {
    // --- clock, randomness, shared state -----------------------------------

    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Fill `buf` with random bytes.
    fn random_bytes(&mut self, buf: &mut [u8]);
    /// The VM's shared data (one store for every worker of this Envoy).
    fn store(&self) -> &dyn SharedStore;
    /// Put `message` on the shared queue `queue`; false when no such queue
    /// is registered (no counter service runs).
    fn enqueue(&mut self, queue: &'static str, message: &[u8]) -> bool;
    /// Take the next message off the shared queue `queue` (the counter
    /// service, which registered it).
    fn dequeue(&mut self, queue: &'static str) -> Option<Vec<u8>>;
    /// Call the root context's tick every `period_ms`.
    fn set_tick_period(&mut self, period_ms: u64);

    // --- the client's request ----------------------------------------------

    /// Every request header (pseudo-headers included), in order.
    fn request_headers(&self) -> Vec<(String, String)>;
    fn set_request_header(&mut self, name: &str, value: &str);
    fn remove_request_header(&mut self, name: &str);
    /// Remove the headers `remove` from `map`, then set each of `set`
    /// (replacing any value it had), as the sequence of single edits would;
    /// the Wasm host does it with one read and one write of the whole map
    /// (a request's dozen edits were a dozen host calls).
    fn edit_headers(&mut self, map: HeaderMap, remove: &[&str], set: &[(&str, &str)]) {
        for name in remove {
            match map {
                HeaderMap::Request => self.remove_request_header(name),
                HeaderMap::Response => self.remove_response_header(name),
            }
        }
        for (name, value) in set {
            match map {
                HeaderMap::Request => self.set_request_header(name, value),
                HeaderMap::Response => self.set_response_header(name, value),
            }
        }
    }
    /// The first `size` bytes of the buffered request body.
    fn request_body(&self, size: usize) -> Vec<u8>;
    /// Replace the first `size` bytes of the request body with `body`.
    fn replace_request_body(&mut self, size: usize, body: &[u8]);
    /// Make Envoy pick the route again (the cluster header changed).
    fn clear_route_cache(&mut self);
    /// Let a paused request go on (after an out-of-band call answered).
    fn resume_request(&mut self);
    /// A connection or request property (`source.principal` ...).
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;

    // --- the response -------------------------------------------------------

    fn response_header(&self, name: &str) -> Option<String>;
    fn set_response_header(&mut self, name: &str, value: &str);
    fn remove_response_header(&mut self, name: &str);
    /// The first `size` bytes of the response body chunk (or buffered body).
    fn response_body(&self, size: usize) -> Vec<u8>;
    /// Replace the first `size` bytes of the response body with `body`.
    fn replace_response_body(&mut self, size: usize, body: &[u8]);
    /// Answer the client directly; replaces any upstream response not yet sent.
    fn send_local_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]);

    // --- out-of-band calls --------------------------------------------------

    /// Send a request to `cluster`; the call's token, or `None` when it
    /// could not be dispatched (unknown cluster ...).
    fn dispatch_http_call(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<u32>;
    /// Status (`None`: no headers at all, the call failed to connect, was
    /// reset or timed out) and body of the call whose answer is being
    /// delivered.
    fn call_response(&self, num_headers: usize, body_size: usize) -> (Option<u16>, Vec<u8>);
    /// A header of the call whose answer is being delivered (`retry-after`).
    fn call_response_header(&self, name: &str) -> Option<String>;

    // --- what Envoy reports -------------------------------------------------

    /// Add `n` to the counter named by `parts`.
    fn counter_add(&mut self, parts: &[Part<'_>], n: u64);
    /// Record `value` in the histogram or gauge named by `parts`.
    fn metric_record(&mut self, kind: MetricKind, parts: &[Part<'_>], value: u64);
    /// A value the access log can read (`%FILTER_STATE(wasm.<key>:PLAIN)%`).
    fn set_filter_state(&mut self, key: &str, value: &str);

    // --- diagnostics (the timing build) ---------------------------------------

    /// A start mark for [`Host::span_stop`]; 0 when timing is off.
    fn span_start(&self) -> u64 {
        0
    }
    /// Add the time since `started` to `span`.
    fn span_stop(&mut self, _span: Span, _started: u64) {}
}

/// The counter `name` (fixed text).
pub fn add_counter(host: &mut dyn Host, name: &'static str, n: u64) {
    host.counter_add(&[Part::Text(name)], n);
}

/// Eight random bytes as a number (routing picks).
pub fn random_u64(host: &mut dyn Host) -> u64 {
    let mut b = [0u8; 8];
    host.random_bytes(&mut b);
    u64::from_le_bytes(b)
}
