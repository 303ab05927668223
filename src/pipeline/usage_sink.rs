//! Where a settled request's usage event and its spend record go: this
//! worker's batches, then the counter service's shared queues (see
//! [`crate::accounting::usage_batch`] for when).
//!
//! The batches belong to the worker (one per thread, as a proxy-wasm VM is),
//! not to a request, so they live in thread-locals here; requests and the
//! worker's tick reach them through [`enqueue`], [`enqueue_spend`] and
//! [`flush`]. Spend records are never urgent (no admission reads them): they
//! go with the batch's age or size, or at the tick.

use std::cell::RefCell;

use log::warn;

use super::host::{add_counter, Host, Span};
use crate::accounting::usage_batch::{self, UsageBatch};

/// Name of the shared queue usage events travel on to the counter service.
pub const USAGE_QUEUE: &str = "llm_gateway_usage";
/// Name of the shared queue spend records travel on.
pub const SPEND_QUEUE: &str = "llm_gateway_spend";

thread_local! {
    /// This worker's usage events not yet handed to the counter service.
    static BATCH: RefCell<UsageBatch> = RefCell::new(UsageBatch::default());
    /// This worker's spend records not yet handed to the counter service.
    static SPEND: RefCell<UsageBatch> = RefCell::new(UsageBatch::default());
}

/// Gather a usage event for the counter service; `urgent` (it settles a
/// budget or tpm limit) sends it, and everything gathered, at once.
pub fn enqueue(host: &mut dyn Host, event: &[u8], now_ms: u64, urgent: bool) {
    if let Some(msg) = BATCH.with(|b| b.borrow_mut().push(event, now_ms, urgent)) {
        send(host, &msg, now_ms);
    }
}

/// Gather a spend record (one JSON line) for the counter service.
pub fn enqueue_spend(host: &mut dyn Host, line: &[u8], now_ms: u64) {
    if let Some(msg) = SPEND.with(|b| b.borrow_mut().push(line, now_ms, false)) {
        send_spend(host, &msg);
    }
}

/// Send what this worker has gathered (the worker's tick, and shutdown).
pub fn flush(host: &mut dyn Host) {
    if let Some(msg) = BATCH.with(|b| b.borrow_mut().take()) {
        let now = host.now_ms();
        send(host, &msg, now);
    }
    if let Some(msg) = SPEND.with(|b| b.borrow_mut().take()) {
        send_spend(host, &msg);
    }
}

/// Hand spend records to the counter service, or (none runs) fold them
/// into this Envoy's ledger here.
fn send_spend(host: &mut dyn Host, msg: &[u8]) {
    if host.enqueue(SPEND_QUEUE, msg) {
        return;
    }
    apply_spend(host, msg);
}

/// Fold a message of spend records (one per line) into the daily totals
/// and the recent records; returns their rows per day.
pub fn apply_spend(
    host: &mut dyn Host,
    msg: &[u8],
) -> Vec<(String, Vec<crate::spend::ledger::Row>)> {
    let text = String::from_utf8_lossy(msg);
    let lines: Vec<&str> = text.split('\n').filter(|l| !l.is_empty()).collect();
    match crate::spend::ledger::apply_all(host.store(), &lines) {
        Ok(rows) => rows,
        Err(e) => {
            warn!("llm-gateway: spend records not kept: {e:?}");
            add_counter(host, "llm_gateway.spend.records_lost", lines.len() as u64);
            Vec::new()
        }
    }
}

/// Hand a message of usage events to the counter service through the shared
/// queue, or, when no counter service runs (a `WasmPlugin` without the
/// bootstrap extension), apply them here: the CAS writes are exact either
/// way, the service only keeps the hot records off the request path.
fn send(host: &mut dyn Host, msg: &[u8], now_ms: u64) {
    let started = host.span_start();
    // Per message, not per request: what batching saves is visible.
    add_counter(host, "llm_gateway.usage_messages", 1);
    add_counter(
        host,
        "llm_gateway.usage_events",
        usage_batch::events(msg).count() as u64,
    );
    if !host.enqueue(USAGE_QUEUE, msg) {
        for event in usage_batch::events(msg) {
            apply(host, event, now_ms);
        }
    }
    host.span_stop(Span::UsageEnqueue, started);
}

/// Fold one usage event into the shared totals (the counter service, and
/// filters when no counter service is running).
pub fn apply(host: &dyn Host, event: &[u8], now_ms: u64) {
    if let Err(e) = crate::accounting::budget::apply_event(host.store(), event, now_ms) {
        warn!("llm-gateway counter: usage event not fully applied: {e:?}");
    }
}
