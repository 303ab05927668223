//! Envoy counters per deployment, defined on first use.
//!
//! Names are `llm_gateway.<event>.deployment.<deployment id>` with the id's characters
//! outside `[A-Za-z0-9_]` replaced by `_` (`ha#0` -> `ha_0`); Envoy lists them
//! under its custom Wasm stats (admin `/stats?filter=llm_gateway`, Prometheus
//! `/stats/prometheus`).

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::config::Deployment;

/// What is counted.
#[derive(Clone, Copy)]
pub enum Event {
    /// A request was sent to the deployment.
    Attempts,
    /// The deployment answered with a retryable failure (or none at all).
    Failures,
    /// The deployment was tried as a retry of a failed attempt.
    Retries,
    /// The deployment served as (or was tried as) a fallback alias.
    Fallbacks,
    /// The deployment was put in cooldown.
    Cooldowns,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Attempts => "attempts",
            Event::Failures => "failures",
            Event::Retries => "retries",
            Event::Fallbacks => "fallbacks",
            Event::Cooldowns => "cooldowns",
        }
    }
}

/// One part of a metric name: fixed text, or a label value (its characters
/// outside `[A-Za-z0-9_]` become `_`).
#[derive(Clone, Copy)]
pub enum Part<'a> {
    Text(&'static str),
    Label(&'a str),
}

thread_local! {
    /// Metric ids by a 64-bit FNV-1a hash of (kind, name parts): a request's
    /// dozen metric updates look their ids up without formatting a name
    /// (formatting and hashing the full names cost about 0.5 µs per update).
    /// A name is built only the first time, to define the metric. With at
    /// most thousands of metric names per VM, a 64-bit collision is not a
    /// practical concern.
    static IDS: RefCell<HashMap<u64, u32>> = RefCell::new(HashMap::new());
}

fn fnv(kind: MetricType, parts: &[Part<'_>]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ kind as u64;
    for p in parts {
        let (tag, bytes) = match p {
            Part::Text(t) => (1u8, t.as_bytes()),
            Part::Label(l) => (2u8, l.as_bytes()),
        };
        for &b in std::iter::once(&tag).chain(bytes) {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

fn name_of(parts: &[Part<'_>]) -> String {
    let mut name = String::new();
    for p in parts {
        match p {
            Part::Text(t) => name.push_str(t),
            Part::Label(l) => name.push_str(&sanitize(l)),
        }
    }
    name
}

/// The id of the metric of `kind` named by `parts`, defined on first use.
fn id(kind: MetricType, parts: &[Part<'_>]) -> Option<u32> {
    let h = fnv(kind, parts);
    IDS.with(|ids| {
        if let Some(id) = ids.borrow().get(&h) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, &name_of(parts)).ok()?;
        ids.borrow_mut().insert(h, id);
        Some(id)
    })
}

/// Record `value` in the metric named by `parts` of `kind` (histogram or
/// gauge), defining it on first use.
pub fn record(kind: MetricType, parts: &[Part<'_>], value: u64) {
    if let Some(id) = id(kind, parts) {
        let _ = hostcalls::record_metric(id, value);
    }
}

/// Add `n` to the counter named by `parts`, defining it on first use.
pub fn add_parts(parts: &[Part<'_>], n: u64) {
    if let Some(id) = id(MetricType::Counter, parts) {
        let _ = hostcalls::increment_metric(id, n.min(i64::MAX as u64) as i64);
    }
}

/// Add `n` to the counter `name` (fixed text), defining it on first use.
pub fn add(name: &'static str, n: u64) {
    add_parts(&[Part::Text(name)], n);
}

/// Add one to `event` for `dep`.
pub fn count(event: Event, dep: &Deployment) {
    add_parts(
        &[
            Part::Text("llm_gateway."),
            Part::Text(event.name()),
            Part::Text(".deployment."),
            Part::Label(&dep.id),
        ],
        1,
    );
}

/// A name part with every character outside `[A-Za-z0-9_]` as `_`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Per key alias and per model alias: `llm_gateway.key.<what>.key_alias.<alias>`
/// and `llm_gateway.model.<what>.alias.<alias>` (`requests`, `tokens`,
/// `cost_micro_usd`, `rejected_<reason>`).
pub fn count_usage(key: Option<&str>, model: &str, what: &'static str, n: u64) {
    count_usage_parts(key, model, &[Part::Text(what)], n);
}

/// [`count_usage`] of `rejected_<reason>`.
pub fn count_rejected(key: Option<&str>, model: &str, reason: &'static str) {
    count_usage_parts(
        key,
        model,
        &[Part::Text("rejected_"), Part::Text(reason)],
        1,
    );
}

fn count_usage_parts(key: Option<&str>, model: &str, what: &[Part<'_>], n: u64) {
    let one = |head: &'static str, label_name: &'static str, label: &str| {
        let mut parts = [Part::Text(""); 8];
        let mut i = 0;
        for p in std::iter::once(Part::Text(head))
            .chain(what.iter().copied())
            .chain([Part::Text(label_name), Part::Label(label)])
            .take(parts.len())
        {
            parts[i] = p;
            i += 1;
        }
        add_parts(&parts[..i], n);
    };
    if let Some(k) = key {
        one("llm_gateway.key.", ".key_alias.", k);
    }
    one("llm_gateway.model.", ".alias.", model);
}
