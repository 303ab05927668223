//! What the filter tells Envoy about each request: metrics with bounded
//! labels, and filter-state values for the access log.
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

use proxy_wasm::types::MetricType;

use super::metrics::{add_parts, record, Part};

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
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

/// Publish a value for the access log. Uses the raw ABI call: the SDK's
/// wrapper panics on any status but Ok, and a failed write must not take the
/// VM down.
pub fn publish(key: &str, value: &str) {
    // SAFETY: both slices outlive the call; the host copies them.
    let _ = unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) };
}

/// `2xx`, `4xx`, `5xx` ...
pub fn status_class(status: u16) -> &'static str {
    const CLASSES: [&str; 10] = [
        "0xx", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx",
    ];
    CLASSES[usize::from((status / 100).min(9))]
}

/// One finished request (after all its attempts).
pub fn request_done(alias: &str, provider: &str, deployment: &str, status: u16) {
    add_parts(
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
pub fn tokens(alias: &str, prompt: u64, completion: u64) {
    for (kind, n) in [
        (".token_type.input", prompt),
        (".token_type.output", completion),
    ] {
        add_parts(
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
pub fn cost(alias: &str, micro: u64) {
    add_parts(
        &[
            Part::Text("llm_gateway.cost_micro_usd.alias."),
            Part::Label(alias),
        ],
        micro,
    );
}

/// Upstream latency and time to first byte of one successful attempt.
pub fn latency(deployment: &str, total_ms: u64, ttft_ms: Option<u64>) {
    record(
        MetricType::Histogram,
        &[
            Part::Text("llm_gateway.upstream_latency_ms.deployment."),
            Part::Label(deployment),
        ],
        total_ms,
    );
    if let Some(t) = ttft_ms {
        record(
            MetricType::Histogram,
            &[
                Part::Text("llm_gateway.time_to_first_token_ms.deployment."),
                Part::Label(deployment),
            ],
            t,
        );
    }
}
