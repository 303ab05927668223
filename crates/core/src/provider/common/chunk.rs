//! Writing OpenAI `chat.completion.chunk` SSE events, for translators that
//! build OpenAI streams from a provider's own events (the writer: Cohere,
//! Ollama; the wire types also Anthropic and Bedrock).
//!
//! The first chunk carries `role: "assistant"` (OpenAI streams start this
//! way); every chunk carries the request's id, `created` and model; nothing is
//! written after `[DONE]`.

use serde::Serialize;

use crate::api::error::GatewayError;
use crate::api::openai::Usage;
use crate::codec::sse::{write_data, write_done};
use crate::provider::common::usage::UsageOut;
use crate::provider::{stream_error_event, ResponseMeta};

/// One `chat.completion.chunk` (shared by the translators that build OpenAI
/// streams, so every provider's chunks serialise the same way). `U` is the
/// `usage` shape: [`Usage`], or [`UsageOut`] with cached-token details.
#[derive(Serialize)]
pub(crate) struct Chunk<'a, U: Serialize = Usage> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<U>,
}

/// One choice of a chunk.
#[derive(Serialize)]
pub(crate) struct ChunkChoice {
    pub(crate) index: u64,
    pub(crate) delta: Delta,
    pub(crate) finish_reason: Option<&'static str>,
}

/// The `delta` of a chunk choice.
#[derive(Serialize, Default)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_calls: Option<Vec<ToolCallDelta>>,
}

/// One tool call's piece in a delta.
#[derive(Serialize)]
pub(crate) struct ToolCallDelta {
    pub(crate) index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<&'static str>,
    pub(crate) function: FunctionDelta,
}

/// A tool call's name and/or argument piece.
#[derive(Serialize)]
pub(crate) struct FunctionDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) arguments: Option<String>,
}

impl Delta {
    /// Text content.
    pub fn content(text: impl Into<String>) -> Self {
        Delta {
            content: Some(text.into()),
            ..Delta::default()
        }
    }

    /// Reasoning text (`reasoning_content`, LiteLLM's field).
    pub fn reasoning(text: impl Into<String>) -> Self {
        Delta {
            reasoning_content: Some(text.into()),
            ..Delta::default()
        }
    }

    /// The start of tool call `index`: id, name and (maybe) arguments.
    pub fn tool_start(index: u32, id: String, name: String, arguments: String) -> Self {
        Delta {
            tool_calls: Some(vec![ToolCallDelta {
                index,
                id: Some(id),
                kind: Some("function"),
                function: FunctionDelta {
                    name: Some(name),
                    arguments: Some(arguments),
                },
            }]),
            ..Delta::default()
        }
    }

    /// More arguments of tool call `index`.
    pub fn tool_args(index: u32, arguments: String) -> Self {
        Delta {
            tool_calls: Some(vec![ToolCallDelta {
                index,
                id: None,
                kind: None,
                function: FunctionDelta {
                    name: None,
                    arguments: Some(arguments),
                },
            }]),
            ..Delta::default()
        }
    }
}

/// Writes one OpenAI stream.
pub struct ChunkWriter {
    meta: ResponseMeta,
    model: Option<String>,
    started: bool,
    done: bool,
}

impl ChunkWriter {
    /// A writer for the request described by `meta`.
    pub fn new(meta: ResponseMeta) -> Self {
        ChunkWriter {
            meta,
            model: None,
            started: false,
            done: false,
        }
    }

    /// The request's metadata.
    pub fn meta(&self) -> &ResponseMeta {
        &self.meta
    }

    /// Use the model the provider reported in the chunks that follow.
    pub fn set_model(&mut self, model: &str) {
        if !model.is_empty() && !self.started {
            self.model = Some(model.to_string());
        }
    }

    /// `[DONE]` was written.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn write(&self, out: &mut Vec<u8>, choices: Vec<ChunkChoice>, usage: Option<Usage>) {
        let chunk = Chunk {
            id: &self.meta.id,
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: self.model.as_deref().unwrap_or(&self.meta.model),
            choices,
            usage,
        };
        if let Ok(s) = serde_json::to_string(&chunk) {
            write_data(out, &s);
        }
    }

    /// The role chunk, if not yet sent.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started && !self.done {
            self.started = true;
            let delta = Delta {
                role: Some("assistant"),
                content: Some(String::new()),
                ..Delta::default()
            };
            self.write(
                out,
                vec![ChunkChoice {
                    index: 0,
                    delta,
                    finish_reason: None,
                }],
                None,
            );
        }
    }

    /// One delta (after the role chunk), with a finish reason or not.
    pub fn delta(&mut self, out: &mut Vec<u8>, delta: Delta, finish: Option<&'static str>) {
        if self.done {
            return;
        }
        self.start(out);
        self.write(
            out,
            vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
            }],
            None,
        );
    }

    /// Close the stream: the usage chunk (when the client asked for it and
    /// usage is known), then `[DONE]`.
    pub fn end(&mut self, out: &mut Vec<u8>, usage: Option<Usage>) {
        if self.done {
            return;
        }
        self.start(out);
        if self.meta.include_usage {
            if let Some(u) = usage {
                self.write(out, Vec::new(), Some(u));
            }
        }
        write_done(out);
        self.done = true;
    }

    /// End the stream with an error event and `[DONE]`.
    pub fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        if self.done {
            return;
        }
        stream_error_event(err, out);
        write_done(out);
        self.done = true;
    }
}

/// The bytes every chunk of one stream starts with, up to its `choices`:
/// `data: {"id":..,"object":"chat.completion.chunk","created":..,"model":..,"choices":`.
/// Built once per stream (again when the model changes), so a chunk written
/// with [`write_delta_chunk`] costs a copy of it instead of serialising the
/// same fields again. Byte for byte what [`Chunk`] serialises to.
pub(crate) fn chunk_prefix(id: &str, created: u64, model: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(80 + id.len() + model.len());
    p.extend_from_slice(br#"data: {"id":"#);
    crate::codec::json_out::str(&mut p, id);
    p.extend_from_slice(br#","object":"chat.completion.chunk","created":"#);
    crate::codec::json_out::u64(&mut p, created);
    p.extend_from_slice(br#","model":"#);
    crate::codec::json_out::str(&mut p, model);
    p.extend_from_slice(br#","choices":"#);
    p
}

/// Append one chunk event with one choice: `delta` writes the delta object.
pub(crate) fn write_delta_chunk(
    out: &mut Vec<u8>,
    prefix: &[u8],
    delta: impl FnOnce(&mut Vec<u8>),
    finish: Option<&str>,
) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(br#"[{"index":0,"delta":"#);
    delta(out);
    out.extend_from_slice(br#","finish_reason":"#);
    match finish {
        Some(f) => crate::codec::json_out::str(out, f),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}]}\n\n");
}

/// Append the usage-only chunk event (`"choices": []`).
pub(crate) fn write_usage_chunk(out: &mut Vec<u8>, prefix: &[u8], usage: &UsageOut) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(br#"[],"usage":"#);
    usage.write(out);
    out.extend_from_slice(b"}\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::common::usage::PromptTokensDetails;

    fn framed(chunk: &Chunk<'_, UsageOut>) -> Vec<u8> {
        let mut out = Vec::new();
        write_data(&mut out, &serde_json::to_string(chunk).unwrap());
        out
    }

    #[test]
    fn hand_written_chunks_match_the_serialised_ones() {
        let (id, model) = ("chatcmpl-\"1\"", "m/é");
        let prefix = chunk_prefix(id, 17, model);
        let chunk = |delta, finish_reason, usage: Option<UsageOut>| Chunk {
            id,
            object: "chat.completion.chunk",
            created: 17,
            model,
            choices: if usage.is_some() {
                Vec::new()
            } else {
                vec![ChunkChoice {
                    index: 0,
                    delta,
                    finish_reason,
                }]
            },
            usage,
        };
        let mut out = Vec::new();
        write_delta_chunk(
            &mut out,
            &prefix,
            |o| o.extend_from_slice(br#"{"content":"a\nb"}"#),
            None,
        );
        assert_eq!(out, framed(&chunk(Delta::content("a\nb"), None, None)));
        let mut out = Vec::new();
        write_delta_chunk(
            &mut out,
            &prefix,
            |o| o.extend_from_slice(b"{}"),
            Some("stop"),
        );
        assert_eq!(out, framed(&chunk(Delta::default(), Some("stop"), None)));
        let usage = || UsageOut {
            prompt_tokens: 1,
            completion_tokens: 2,
            total_tokens: 3,
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: 1 }),
            completion_tokens_details: None,
        };
        let mut out = Vec::new();
        write_usage_chunk(&mut out, &prefix, &usage());
        assert_eq!(out, framed(&chunk(Delta::default(), None, Some(usage()))));
        let plain = UsageOut {
            prompt_tokens_details: None,
            ..usage()
        };
        let mut out = Vec::new();
        plain.write(&mut out);
        assert_eq!(out, serde_json::to_vec(&plain).unwrap());
    }
}
