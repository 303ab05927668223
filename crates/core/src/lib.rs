//! llm-gateway's pure layers: what a request and an answer mean, with no
//! host in sight. The filter crate (`llm-gateway`, the repository root)
//! re-exports every module here under its own name, so `crate::provider`
//! reads the same on both sides; `docs/architecture.md` is the authority on
//! what lives where.
//!
//! A crate of its own so that it can be built for size (opt-level "z", the
//! root Cargo.toml says why) while the per-request bookkeeping is not.
//!
//! - [`provider`]: one translator per provider family, behind one trait.
//! - [`config`]: the LiteLLM-style configuration, keys, prices, provider prefixes.
//! - [`guardrails`]: content checks, masking, guardrail-service verdicts.
//! - [`api`]: OpenAI request/response types, the parsed client request,
//!   per-request overrides, the OpenAI error envelope.
//! - [`codec`]: SSE, NDJSON, AWS event stream, JSON scanning and writing
//!   (re-exported from crates/codec, which runs per byte and per chunk and
//!   is built at "s").
//! - [`sort`]: the one small sort for short lists.

pub mod api;
pub mod cache;
pub mod config;
pub mod guardrails;
pub mod ingress;
pub mod otlp;
pub mod provider;
pub mod sort;
pub mod spend;
pub mod store;

/// The wire formats (crates/codec, built for speed), under the name the
/// filter crate uses too.
pub use llm_gateway_codec as codec;
