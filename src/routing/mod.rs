//! Model alias -> the ordered deployments to try, and the shared health and
//! load records that ordering reads.
//!
//! The filter asks [`plan_attempts`] once per request: the deployment the
//! configured strategy picks among the alias's healthy deployments, then the
//! alias's other healthy deployments (up to `num_retries` retries), then the
//! deployments of each fallback alias. It reports what happened with
//! [`begin`] / [`end`] (requests in flight), [`record_success`] (latency, time
//! to first token, tokens) and [`record_failure`] (which may cool the
//! deployment down). Those records live in Envoy shared data, reached through
//! [`SharedStore`], so every worker thread sees the same cooldowns and loads.
//!
//! Nothing here calls the host: time (`now_ms`, unix milliseconds) and
//! randomness (`rand`, a `u64` from getrandom) are arguments, so every
//! decision is reproducible in native tests.
//!
//! Where LiteLLM's router behaviour is adopted, the doc comment names the
//! LiteLLM file it comes from (BerriAI/litellm, `litellm/router.py`,
//! `litellm/router_utils/cooldown_handlers.py`, `litellm/router_strategy/*.py`).

use serde_json::Value;

use crate::api::error::{ErrorKind, GatewayError};
use crate::api::overrides::{FallbackOverride, Overrides};
use crate::config::{fallbacks_in, Config, Deployment, RoutingStrategy, MAX_FALLBACKS};
use crate::store::{update, SharedStore, StoreError};

mod classify;
pub use classify::*;
mod health;
pub use health::*;
mod plan;
pub use plan::*;

// ---------------------------------------------------------------------------
// Alias lookup and the single weighted choice
// ---------------------------------------------------------------------------

/// The 404 for an alias no deployment serves, naming the ones that exist.
pub fn model_not_found(cfg: &Config, alias: &str) -> GatewayError {
    GatewayError::new(
        404,
        ErrorKind::NotFound,
        format!(
            "The model `{alias}` does not exist on this gateway. Available models: {}. \
             GET /v1/models lists them.",
            cfg.aliases().join(", ")
        ),
    )
    .with_param("model")
    .with_code("model_not_found")
}

/// The deployment that serves `alias` for random draw `rand`, by
/// `simple-shuffle` weights alone (no shared state). [`plan_attempts`] is
/// the full decision; this stays for callers that need one deployment.
pub fn choose<'a>(cfg: &'a Config, alias: &str, rand: u64) -> Result<&'a Deployment, GatewayError> {
    let candidates = cfg.deployments_for(alias);
    let weights = shuffle_weights(&candidates);
    let i = weighted_index(&weights, rand).ok_or_else(|| model_not_found(cfg, alias))?;
    candidates
        .get(i)
        .copied()
        .ok_or_else(|| model_not_found(cfg, alias))
}

/// `simple-shuffle` proportions, as LiteLLM's
/// `router_strategy/simple_shuffle.py`: by `weight` when one is set, else by
/// `rpm`, else by `tpm`, else uniform.
///
/// Two deliberate differences: a deployment without a `weight` among weighted
/// ones counts as 1 (LiteLLM counts it 0, so it would never be picked first,
/// which is rarely what a config means); and `rpm` / `tpm` proportions apply
/// only when every candidate has one (a missing limit has no proportion).
fn shuffle_weights(candidates: &[&Deployment]) -> Vec<u64> {
    if candidates.iter().any(|d| d.weight.is_some()) {
        return candidates
            .iter()
            .map(|d| u64::from(d.weight.unwrap_or(1)))
            .collect();
    }
    if let Some(rpms) = candidates.iter().map(|d| d.rpm).collect::<Option<Vec<_>>>() {
        return rpms;
    }
    if let Some(tpms) = candidates.iter().map(|d| d.tpm).collect::<Option<Vec<_>>>() {
        return tpms;
    }
    vec![1; candidates.len()]
}

/// Index drawn in proportion to `weights` (all zero: uniform); `None` if empty.
fn weighted_index(weights: &[u64], rand: u64) -> Option<usize> {
    if weights.is_empty() {
        return None;
    }
    let total = weights.iter().fold(0u64, |a, w| a.saturating_add(*w));
    if total == 0 {
        return Some((rand % weights.len() as u64) as usize);
    }
    let mut ticket = rand % total;
    for (i, w) in weights.iter().enumerate() {
        if ticket < *w {
            return Some(i);
        }
        ticket -= w;
    }
    Some(weights.len() - 1)
}

/// SplitMix64: many well-mixed draws from the one random number a request gets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests;
