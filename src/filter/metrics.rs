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

thread_local! {
    static IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// Record `value` in the metric `name` of `kind` (histogram or gauge),
/// defining it on first use.
pub fn record(kind: MetricType, name: &str, value: u64) {
    let id = IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, name).ok()?;
        ids.insert(name.to_string(), id);
        Some(id)
    });
    if let Some(id) = id {
        let _ = hostcalls::record_metric(id, value);
    }
}

/// Add one to `event` for `dep`.
pub fn count(event: Event, dep: &Deployment) {
    add(
        &format!(
            "llm_gateway.{}.deployment.{}",
            event.name(),
            sanitize(&dep.id)
        ),
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
pub fn count_usage(key: Option<&str>, model: &str, what: &str, n: u64) {
    if let Some(k) = key {
        add(
            &format!("llm_gateway.key.{what}.key_alias.{}", sanitize(k)),
            n,
        );
    }
    add(
        &format!("llm_gateway.model.{what}.alias.{}", sanitize(model)),
        n,
    );
}

/// Add `n` to the counter `name`, defining it on first use.
pub fn add(name: &str, n: u64) {
    let id = IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(MetricType::Counter, name).ok()?;
        ids.insert(name.to_string(), id);
        Some(id)
    });
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, n.min(i64::MAX as u64) as i64);
    }
}
