//! llm-gateway: an LLM gateway that runs inside Envoy as a proxy-wasm filter.
//!
//! Applications speak the OpenAI API to their Envoy; this filter turns each
//! request into the native API of the provider that serves the model, selects
//! the provider's Envoy cluster, and turns the answer (JSON or a live stream)
//! back into OpenAI shape.
//!
//! # Layout
//!
//! - [`config`]: the plugin configuration (LiteLLM `model_list` format), parsed
//!   and validated once.
//! - [`openai`]: OpenAI request types and request validation.
//! - [`error`]: the OpenAI error envelope every refusal becomes.
//! - [`provider`]: one translator per provider family, behind one trait.
//! - [`sse`]: incremental server-sent-events decoder and encoder.
//! - [`ndjson`]: incremental newline-delimited JSON line decoder (Ollama streams).
//! - [`eventstream`]: incremental AWS event-stream decoder (Bedrock streams).
//! - [`sigv4`]: AWS Signature Version 4 request signing (Bedrock).
//! - [`routing`]: alias -> ordered deployments to try; health, load and cooldowns.
//! - [`store`]: the shared-data seam (Envoy shared data with CAS) and a fake for tests.
//! - [`keys`]: virtual keys, teams and the master key: config and authentication.
//! - [`pricing`]: token prices (built-in table, config overrides) and request cost.
//! - [`budget`]: budgets, rpm/tpm/parallel limits and usage events in shared data.
//! - [`render`]: a complete Envoy bootstrap from a LiteLLM-style config.
//! - [`pipeline`]: the per-request decisions, as data, for the filter to apply.
//! - `filter` (wasm32 only): the proxy-wasm contexts; the only code that calls
//!   the host.

pub mod api;
pub mod budget;
pub mod codec;
pub mod config;
pub mod fleet;
pub mod keys;
pub mod metering;
pub mod pipeline;
pub mod pricing;
pub mod provider;
pub mod render;
pub mod routing;
pub mod sigv4;
pub mod store;
pub mod usage_batch;

#[cfg(target_arch = "wasm32")]
mod filter;
