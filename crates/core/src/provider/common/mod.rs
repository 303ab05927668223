//! The translators' toolkit: what every native translator needs and must
//! do the same way, in one copy.
//!
//! - [`params`]: the parameter policy (which OpenAI parameters a provider
//!   maps, passes through, ignores or cannot take) and the one check that
//!   turns it into a 400 or, with `drop_params`, lets the request through.
//! - [`media`]: `data:` URLs and http(s) URLs in content parts.
//! - [`reasoning`]: `reasoning_effort` as Claude's `thinking` budgets
//!   (Anthropic and Bedrock).
//! - [`usage`]: token counts as OpenAI `usage`, cached prompt tokens and
//!   reasoning tokens included.
//! - [`chunk`]: OpenAI `chat.completion.chunk` events for translators that
//!   build a stream from a provider's own events.
//! - [`embedding`]: the OpenAI embeddings request view and `list` answer.
//! - [`errors`]: the unsupported-parameter 400, the unreadable-answer 502,
//!   the error event that ends a broken stream, a body excerpt for messages.

pub mod chunk;
pub mod embedding;
pub mod errors;
pub mod media;
pub mod params;
pub mod reasoning;
pub mod usage;
