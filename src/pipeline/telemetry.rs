//! What the flow tells Envoy about each request: counters and histograms
//! with bounded labels, and filter-state values for the access log.
//!
//! Metric names carry their labels as `.<label>.<value>` segments (values
//! come from the configuration: aliases, provider families, deployment ids,
//! status classes, never free text or keys); the rendered bootstrap's
//! `stats_config.stats_tags` turns each segment into a Prometheus label, so
//! `/stats/prometheus` shows e.g.
//! `envoy_wasmcustom_llm_gateway_requests{alias="smart",provider="anthropic",deployment="smart_0",status_class="2xx"}`.
//! Names follow OpenTelemetry's gen_ai conventions where they map
//! (`gen_ai.client.token.usage` -> `tokens` with `token_type`,
//! `gen_ai.client.operation.duration` -> `upstream_latency_ms`,
//! `gen_ai.server.time_to_first_token` -> `time_to_first_token_ms`).
//! Per-deployment routing events are `llm_gateway.<event>.deployment.<id>`
//! with the id's characters outside `[A-Za-z0-9_]` as `_` (`ha#0` -> `ha_0`).

use super::host::{Host, MetricKind, Part};
use crate::config::Deployment;

/// Filter-state keys (Envoy: `%FILTER_STATE(wasm.<key>:PLAIN)%`).
pub mod keys {
    pub const MODEL_ALIAS: &str = "llm_gateway.model_alias";
    pub const PROVIDER: &str = "llm_gateway.provider";
    pub const DEPLOYMENT: &str = "llm_gateway.deployment";
    pub const ATTEMPTS: &str = "llm_gateway.attempts";
    pub const PROMPT_TOKENS: &str = "llm_gateway.prompt_tokens";
    pub const COMPLETION_TOKENS: &str = "llm_gateway.completion_tokens";
    pub const COST_USD: &str = "llm_gateway.cost_usd";
    pub const KEY_ALIAS: &str = "llm_gateway.key_alias";
    /// What the response cache did: `hit`, `miss`, `bypass`.
    pub const CACHE: &str = "llm_gateway.cache";
    /// The request's spend record, one JSON object (`accounting::spend`).
    pub const SPEND_LOG: &str = "llm_gateway.spend_log";
}

/// A routing event counted per deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Add one to `event` for `dep`.
pub fn count(host: &mut dyn Host, event: Event, dep: &Deployment) {
    host.counter_add(
        &[
            Part::Text("llm_gateway."),
            Part::Text(event.name()),
            Part::Text(".deployment."),
            Part::Label(&dep.id),
        ],
        1,
    );
}

/// A failed attempt by its kind: `llm_gateway.failures_by_kind.kind.<kind>.deployment.<id>`
/// (`kind` as [`FailureKind::label`]), beside the plain `failures` count.
pub fn count_failure(host: &mut dyn Host, kind: crate::routing::FailureKind, dep: &Deployment) {
    count(host, Event::Failures, dep);
    host.counter_add(
        &[
            Part::Text("llm_gateway.failures_by_kind.kind."),
            Part::Label(&kind.label()),
            Part::Text(".deployment."),
            Part::Label(&dep.id),
        ],
        1,
    );
}

/// Per key alias and per model alias: `llm_gateway.key.<what>.key_alias.<alias>`
/// and `llm_gateway.model.<what>.alias.<alias>` (`requests`, `tokens`,
/// `cost_micro_usd`, `rejected_<reason>`).
pub fn count_usage(
    host: &mut dyn Host,
    key: Option<&str>,
    model: &str,
    what: &'static str,
    n: u64,
) {
    count_usage_parts(host, key, model, &[Part::Text(what)], n);
}

/// Per team: `llm_gateway.team.<what>.team.<team>` (`requests`, `tokens`,
/// `cost_micro_usd`).
pub fn count_team(host: &mut dyn Host, team: &str, what: &'static str, n: u64) {
    host.counter_add(
        &[
            Part::Text("llm_gateway.team."),
            Part::Text(what),
            Part::Text(".team."),
            Part::Label(team),
        ],
        n,
    );
}

/// What a key's budget has left, micro-USD (`budget headroom`):
/// `llm_gateway.key.remaining_budget_micro_usd.key_alias.<alias>`.
pub fn remaining_budget(host: &mut dyn Host, key: &str, micro: u64) {
    host.metric_record(
        MetricKind::Gauge,
        &[
            Part::Text("llm_gateway.key.remaining_budget_micro_usd.key_alias."),
            Part::Label(key),
        ],
        micro,
    );
}

/// [`count_usage`] of `rejected_<reason>`.
pub fn count_rejected(host: &mut dyn Host, key: Option<&str>, model: &str, reason: &'static str) {
    count_usage_parts(
        host,
        key,
        model,
        &[Part::Text("rejected_"), Part::Text(reason)],
        1,
    );
}

fn count_usage_parts(
    host: &mut dyn Host,
    key: Option<&str>,
    model: &str,
    what: &[Part<'_>],
    n: u64,
) {
    let mut one = |head: &'static str, label_name: &'static str, label: &str| {
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
        host.counter_add(&parts[..i], n);
    };
    if let Some(k) = key {
        one("llm_gateway.key.", ".key_alias.", k);
    }
    one("llm_gateway.model.", ".alias.", model);
}

/// `2xx`, `4xx`, `5xx` ...
pub fn status_class(status: u16) -> &'static str {
    const CLASSES: [&str; 10] = [
        "0xx", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx",
    ];
    CLASSES[usize::from((status / 100).min(9))]
}

/// One finished request (after all its attempts).
pub fn request_done(
    host: &mut dyn Host,
    alias: &str,
    provider: &str,
    deployment: &str,
    status: u16,
) {
    host.counter_add(
        &[
            Part::Text("llm_gateway.requests.alias."),
            Part::Label(alias),
            Part::Text(".provider."),
            Part::Label(provider),
            Part::Text(".deployment."),
            Part::Label(deployment),
            Part::Text(".status_class."),
            Part::Text(status_class(status)),
        ],
        1,
    );
}

/// Tokens by type (`input` / `output`), as `gen_ai.client.token.usage`.
pub fn tokens(host: &mut dyn Host, alias: &str, prompt: u64, completion: u64) {
    for (kind, n) in [
        (".token_type.input", prompt),
        (".token_type.output", completion),
    ] {
        host.counter_add(
            &[
                Part::Text("llm_gateway.tokens.alias."),
                Part::Label(alias),
                Part::Text(kind),
            ],
            n,
        );
    }
}

/// Cost in micro-USD.
pub fn cost(host: &mut dyn Host, alias: &str, micro: u64) {
    host.counter_add(
        &[
            Part::Text("llm_gateway.cost_micro_usd.alias."),
            Part::Label(alias),
        ],
        micro,
    );
}

/// Upstream latency and time to first byte of one successful attempt.
pub fn latency(host: &mut dyn Host, deployment: &str, total_ms: u64, ttft_ms: Option<u64>) {
    host.metric_record(
        MetricKind::Histogram,
        &[
            Part::Text("llm_gateway.upstream_latency_ms.deployment."),
            Part::Label(deployment),
        ],
        total_ms,
    );
    if let Some(t) = ttft_ms {
        host.metric_record(
            MetricKind::Histogram,
            &[
                Part::Text("llm_gateway.time_to_first_token_ms.deployment."),
                Part::Label(deployment),
            ],
            t,
        );
    }
}

/// A metric name part with every character outside `[A-Za-z0-9_]` as `_`.
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

/// The full metric name of `parts` (what the host defines on first use).
pub fn metric_name(parts: &[Part<'_>]) -> String {
    let mut name = String::new();
    for p in parts {
        match p {
            Part::Text(t) => name.push_str(t),
            Part::Label(l) => name.push_str(&sanitize(l)),
        }
    }
    name
}

/// A 64-bit FNV-1a hash of a metric's kind and name parts: the host caches
/// metric ids by it, so an update needs no formatted name (formatting and
/// hashing the full names cost about 0.5 µs per update). With at most
/// thousands of names per VM, a collision is not a practical concern.
pub fn parts_hash(kind: u8, parts: &[Part<'_>]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(kind);
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
