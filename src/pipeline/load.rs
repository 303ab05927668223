//! Loading a configuration: the parse and checks of [`crate::config`], then
//! what only the other layers can check (each provider's own requirements,
//! fleet counters that count nothing). Every entry point (the filter, the
//! `llm-gateway` command, the tests) loads through [`load_config`].

use log::{info, warn};

use super::host::Host;
use crate::accounting::fleet::fleet_scopes;
use crate::accounting::usage_batch;
use crate::config::{Config, ConfigError};

/// Parse, validate and check a plugin configuration (JSON bytes); `env`
/// resolves `os.environ/NAME` references.
pub fn load_config(
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut cfg = crate::provider::parse_config(bytes, env)?;
    if cfg.fleet.is_some() && cfg.keys.as_ref().is_none_or(|r| fleet_scopes(r).is_empty()) {
        cfg.warnings.push(
            "counters.redis is set but no key or team has a budget, rpm or tpm limit: nothing \
             is counted fleet-wide"
                .to_string(),
        );
    }
    Ok(cfg)
}

/// A worker's start with a loaded configuration: log the warnings, create
/// the shared records that do not exist yet (every worker runs this;
/// seeding only creates missing records). Returns the worker's tick period
/// (its tick sends what requests batched: counters, usage, spend, spans).
pub fn start_worker(cfg: &Config, host: &mut dyn Host) -> u64 {
    for w in &cfg.warnings {
        warn!("llm-gateway: {w}");
    }
    info!(
        "llm-gateway: configured {} deployment(s) for {} model alias(es)",
        cfg.deployments.len(),
        cfg.aliases().len()
    );
    crate::routing::seed(host.store(), cfg);
    if let Some(ring) = cfg.keys.as_ref() {
        crate::accounting::budget::seed(host.store(), ring);
    }
    // Counter increments, usage events, spend records and spans are sent
    // from the worker's tick.
    let traces = cfg
        .traces
        .as_ref()
        .map_or(u64::MAX, |_| super::trace_sink::FLUSH_MS);
    usage_batch::MAX_AGE_MS.min(traces)
}
