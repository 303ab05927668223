//! Wire formats, incrementally: server-sent events (OpenAI, Anthropic,
//! Gemini streams), newline-delimited JSON (Ollama), the AWS event stream
//! (Bedrock), and the JSON scanner and writer the hot path uses instead of
//! a full parse. Nothing here knows a provider.

pub mod base64;
pub mod eventstream;
pub mod json_in;
pub mod json_out;
pub mod ndjson;
pub mod protobuf;
pub mod sse;
pub mod url;
