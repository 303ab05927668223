//! The OpenAI API as clients speak it: request and answer types, the
//! client's request parsed and indexed once, per-request routing overrides,
//! and the OpenAI error envelope every refusal becomes.

pub mod error;
pub mod litellm_keys;
pub mod openai;
pub mod overrides;
pub mod request;
