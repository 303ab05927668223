//! llm-gateway: an LLM gateway that runs inside Envoy as a proxy-wasm filter.
//!
//! Applications speak the OpenAI API to their Envoy; this filter turns each
//! request into the native API of the provider that serves the model, selects
//! the provider's Envoy cluster, and turns the answer (JSON or a live stream)
//! back into OpenAI shape.
//!
//! # Layout
//!
//! `docs/architecture.md` is the authority (picture, one request step by
//! step, recipes). In short, from the host down:
//!
//! - `filter` (wasm32 only): the proxy-wasm contexts and the [`pipeline::Host`]
//!   implementation; the only code that calls the host, and it decides nothing.
//! - [`pipeline`]: [`pipeline::RequestFlow`], one request's state and every
//!   decision, one method per callback; the exchange record and hook points.
//! - [`routing`]: alias -> ordered attempts; deployment health and cooldowns.
//! - [`accounting`]: budgets, limits, fleet leases, charging, usage batches.
//! - [`provider`], [`config`], [`guardrails`], [`api`], [`codec`], [`sort`]:
//!   the pure layers, in their own crate (`crates/core`, built for size) and
//!   re-exported here under the same names: translators, the LiteLLM-style
//!   configuration, content checks, the OpenAI types and error envelope,
//!   the wire codecs.
//! - [`store`]: the shared-data seam (Envoy shared data with CAS) and a fake.
//! - [`render`]: a complete Envoy bootstrap from a LiteLLM-style config.
//! - `yaml` (native only): LiteLLM's `config.yaml` read as PyYAML reads it.

pub mod accounting;
pub mod pipeline;
pub mod render;
pub mod routing;

pub use llm_gateway_core::{
    api, cache, codec, config, guardrails, ingress, otlp, provider, sort, spend, store,
};
#[cfg(not(target_arch = "wasm32"))]
pub mod yaml;

#[cfg(target_arch = "wasm32")]
mod filter;
