//! Spans on their way out: each worker gathers its finished spans per
//! exporter in VM memory, and its root context sends them on its tick (one
//! OTLP/HTTP POST per exporter, one in the air at a time), never from a
//! request. A collector that is slow, down or refusing loses spans (counted:
//! `llm_gateway.otel.spans_dropped`), never requests: a request only pushes
//! bytes onto a bounded list.

use std::cell::RefCell;

use log::warn;

use crate::config::Config;
use crate::pipeline::host::{add_counter, Host};

/// Spans kept per exporter while its collector is slow or away.
pub const MAX_QUEUED: usize = 2048;
/// Spans per export call.
const MAX_PER_CALL: usize = 512;
/// How long an export call may take.
const CALL_TIMEOUT_MS: u64 = 5_000;
/// Spans wait at most this long (the tick runs at least this often).
pub const FLUSH_MS: u64 = 1_000;

#[derive(Default)]
struct Queue {
    spans: Vec<Vec<u8>>,
    /// The export call in the air, with how many spans it carries.
    in_flight: Option<(u32, usize)>,
    /// The collector failed last time (logged once until it answers).
    failing: bool,
}

thread_local! {
    static QUEUES: RefCell<Vec<Queue>> = const { RefCell::new(Vec::new()) };
}

/// Keep an encoded span for exporter `i`.
pub fn push(host: &mut dyn Host, i: usize, span: Vec<u8>) {
    let dropped = QUEUES.with(|q| {
        let mut q = q.borrow_mut();
        while q.len() <= i {
            q.push(Queue::default());
        }
        let Some(queue) = q.get_mut(i) else {
            return true;
        };
        if queue.spans.len() >= MAX_QUEUED {
            return true;
        }
        queue.spans.push(span);
        false
    });
    if dropped {
        add_counter(host, "llm_gateway.otel.spans_dropped", 1);
    }
}

/// Send what each exporter has gathered (the worker's tick, shutdown).
pub fn flush(cfg: &Config, host: &mut dyn Host) {
    let Some(traces) = cfg.traces.as_ref() else {
        return;
    };
    for (i, exp) in traces.exporters.iter().enumerate() {
        let batch = QUEUES.with(|q| {
            let mut q = q.borrow_mut();
            let queue = q.get_mut(i)?;
            if queue.in_flight.is_some() || queue.spans.is_empty() {
                return None;
            }
            let n = queue.spans.len().min(MAX_PER_CALL);
            Some(queue.spans.drain(..n).collect::<Vec<_>>())
        });
        let Some(batch) = batch else { continue };
        let body = crate::otlp::export_request(&traces.service_name, &batch);
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":path", exp.endpoint.path.as_str()),
            (":authority", exp.endpoint.authority.as_str()),
            ("content-type", "application/x-protobuf"),
        ];
        headers.extend(exp.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        match host.dispatch_http_call(&exp.endpoint.cluster, &headers, &body, CALL_TIMEOUT_MS) {
            Some(token) => QUEUES.with(|q| {
                if let Some(queue) = q.borrow_mut().get_mut(i) {
                    queue.in_flight = Some((token, batch.len()));
                }
            }),
            None => lost(host, i, batch.len(), "cannot be called"),
        }
    }
}

/// An export call answered: true when it was one.
pub fn answered(token: u32, num_headers: usize, body_size: usize, host: &mut dyn Host) -> bool {
    let found = QUEUES.with(|q| {
        q.borrow_mut()
            .iter_mut()
            .enumerate()
            .find_map(|(i, queue)| match queue.in_flight {
                Some((t, n)) if t == token => {
                    queue.in_flight = None;
                    Some((i, n))
                }
                _ => None,
            })
    });
    let Some((i, n)) = found else {
        return false;
    };
    let (status, _) = host.call_response(num_headers, body_size.min(256));
    match status {
        Some(s) if (200..300).contains(&s) => {
            add_counter(host, "llm_gateway.otel.spans_exported", n as u64);
            add_counter(host, "llm_gateway.otel.exports", 1);
            QUEUES.with(|q| {
                if let Some(queue) = q.borrow_mut().get_mut(i) {
                    queue.failing = false;
                }
            });
        }
        Some(s) => lost(host, i, n, &format!("answered {s}")),
        None => lost(host, i, n, "did not answer"),
    }
    true
}

/// `n` spans of exporter `i` could not be delivered.
fn lost(host: &mut dyn Host, i: usize, n: usize, why: &str) {
    add_counter(host, "llm_gateway.otel.spans_dropped", n as u64);
    add_counter(host, "llm_gateway.otel.export_failures", 1);
    let first = QUEUES.with(|q| {
        q.borrow_mut()
            .get_mut(i)
            .is_some_and(|queue| !std::mem::replace(&mut queue.failing, true))
    });
    if first {
        warn!("llm-gateway: the trace collector {why}; {n} span(s) dropped (requests are not affected)");
    }
}
