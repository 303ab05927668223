//! Anthropic Messages stream -> OpenAI `chat.completion.chunk` events (the
//! mapping is described in the module docs of [`super`]).
//!
//! Per event: the SSE decoder hands over the event's `data` without
//! allocating, the JSON is read into structs that borrow from it (no
//! `Value` tree), and the chunk is written straight into the output after a
//! prefix (`id`, `object`, `created`, `model`) built once per stream. Text
//! is copied as the JSON literal Anthropic sent whenever its escaping is
//! already what `serde_json` writes.
//!
//! Memory per stream is the decoder's partial line and event, the prefix
//! and a few counters: it does not grow with the length of the stream.

use serde_json::Value;

use super::{
    anthropic_error, finish_reason, invalid_response, merge_counts, status_for_error_type,
    TokenCounts, JSON_TOOL_NAME,
};
use crate::api::error::{ErrorKind, GatewayError};
use crate::api::openai::Usage;
use crate::codec::json_in::{self, is_object, members, string};
use crate::codec::json_out::{self, RawStr};
use crate::codec::sse::{write_done, SseDecoder};
use crate::provider::common::chunk::{chunk_prefix, write_delta_chunk, write_usage_chunk};
use crate::provider::{stream_error_event, ResponseMeta, StreamTranslator};

/// What an open content block is, for the deltas that follow it.
#[derive(Debug, Clone, Copy)]
enum Block {
    Text,
    /// A client tool call: its OpenAI `tool_calls` index and whether
    /// argument bytes were sent.
    Tool {
        index: u32,
        args: bool,
    },
    /// The JSON-mode tool: its input is streamed as content.
    JsonTool {
        args: bool,
    },
    Thinking,
    Other,
}

/// The fields this translator reads of an event, and of the object nested
/// in it (`message`, `content_block` or `delta`), as JSON text; `None` when
/// absent. Read in one walk over the event.
#[derive(Default)]
struct Fields<'a> {
    kind: Option<&'a str>,
    index: Option<&'a str>,
    usage: Option<&'a str>,
    model: Option<&'a str>,
    text: Option<&'a str>,
    thinking: Option<&'a str>,
    partial_json: Option<&'a str>,
    stop_reason: Option<&'a str>,
    id: Option<&'a str>,
    name: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// Check an event and read its own fields and those of the object
    /// nested in it: the top level is read as it is checked, then the
    /// nested object (small) is walked.
    fn read(data: &'a str) -> Result<(Fields<'a>, Fields<'a>), serde_json::Error> {
        let mut ev = Fields::default();
        let mut nested = None;
        json_in::check_members(data, &mut |key, value| {
            let key = key.text();
            if matches!(key.as_ref(), "message" | "content_block" | "delta") && is_object(value) {
                nested = Some(value);
            } else {
                ev.take(&key, value);
            }
        })?;
        let mut inner = Fields::default();
        for (key, value) in nested.map(members).into_iter().flatten() {
            inner.take(&key.text(), value);
        }
        Ok((ev, inner))
    }

    fn take(&mut self, key: &str, value: &'a str) {
        let slot = match key {
            "type" => &mut self.kind,
            "index" => &mut self.index,
            "usage" => &mut self.usage,
            "model" => &mut self.model,
            "text" => &mut self.text,
            "thinking" => &mut self.thinking,
            "partial_json" => &mut self.partial_json,
            "stop_reason" => &mut self.stop_reason,
            "id" => &mut self.id,
            "name" => &mut self.name,
            _ => return,
        };
        *slot = Some(value);
    }
}

/// A non-empty string field.
fn text(value: Option<&str>) -> Option<RawStr<'_>> {
    string(value).filter(|s| !s.is_empty())
}

/// Translates Anthropic stream events into OpenAI chunks as they complete.
pub(super) struct AnthropicStream {
    decoder: SseDecoder,
    state: State,
}

struct State {
    meta: ResponseMeta,
    /// The start of every chunk (see [`chunk_prefix`]), for the model
    /// `message_start` reported (the deployment's until then).
    prefix: Vec<u8>,
    /// The role chunk was sent.
    started: bool,
    /// `[DONE]` was written: nothing more may follow.
    done: bool,
    /// Open content blocks by Anthropic index (one at a time in practice).
    blocks: Vec<(u64, Block)>,
    /// Client tool calls started so far (the next `tool_calls` index).
    tool_calls: u32,
    /// A JSON-mode tool block was seen.
    json_mode: bool,
    counts: TokenCounts,
    saw_usage: bool,
}

impl AnthropicStream {
    pub(super) fn new(meta: ResponseMeta) -> Self {
        AnthropicStream {
            decoder: SseDecoder::new(),
            state: State {
                prefix: chunk_prefix(&meta.id, meta.created, &meta.model),
                meta,
                started: false,
                done: false,
                blocks: Vec::new(),
                tool_calls: 0,
                json_mode: false,
                counts: TokenCounts::default(),
                saw_usage: false,
            },
        }
    }
}

impl State {
    /// One chunk whose delta `write` writes.
    fn delta(&mut self, out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>), finish: Option<&str>) {
        self.ensure_started(out);
        write_delta_chunk(out, &self.prefix, write, finish);
    }

    /// A content (or reasoning) delta.
    fn text_delta(&mut self, out: &mut Vec<u8>, field: &[u8], text: RawStr<'_>) {
        self.delta(
            out,
            |o| {
                o.push(b'{');
                o.extend_from_slice(field);
                o.push(b':');
                text.write(o);
                o.push(b'}');
            },
            None,
        );
    }

    /// A piece of tool call `index`'s arguments.
    fn args_delta(&mut self, out: &mut Vec<u8>, index: u32, args: impl FnOnce(&mut Vec<u8>)) {
        self.delta(
            out,
            |o| {
                o.extend_from_slice(br#"{"tool_calls":[{"index":"#);
                json_out::u64(o, u64::from(index));
                o.extend_from_slice(br#","function":{"arguments":"#);
                args(o);
                o.extend_from_slice(b"}}]}");
            },
            None,
        );
    }

    /// The first chunk carries the role (OpenAI streams start this way).
    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            write_delta_chunk(
                out,
                &self.prefix,
                |o| o.extend_from_slice(br#"{"role":"assistant","content":""}"#),
                None,
            );
        }
    }

    /// End the client stream with an error event and `[DONE]`.
    fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        stream_error_event(err, out);
        write_done(out);
        self.done = true;
    }

    fn block(&mut self, index: u64) -> Option<&mut Block> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b)
    }

    fn merge_usage(&mut self, usage: Option<&str>) {
        if let Some(u) = usage.filter(|u| is_object(u)) {
            merge_counts(&mut self.counts, u);
            self.saw_usage = true;
        }
    }

    /// Translate one event. `at_end`: the event was cut off by the end of the
    /// upstream stream (no closing blank line), so unreadable data means
    /// truncation, reported by `finish`, not a malformed event.
    fn handle(&mut self, event: &str, data: &str, at_end: bool, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let (ev, inner) = if data.trim().is_empty() {
            (Fields::default(), Fields::default())
        } else {
            match Fields::read(data) {
                Ok(fields) => fields,
                Err(_) if at_end => return,
                Err(e) => {
                    let err = invalid_response(format!("stream event `{event}` is not JSON: {e}"));
                    self.fail(out, &err);
                    return;
                }
            }
        };
        let kind = string(ev.kind).map(|k| k.text());
        let kind = kind.as_deref().unwrap_or(event);
        let index = json_in::u64(ev.index).unwrap_or(0);
        match kind {
            "message_start" => {
                let m = inner;
                if let Some(model) = string(m.model) {
                    self.prefix = chunk_prefix(&self.meta.id, self.meta.created, &model.text());
                }
                self.merge_usage(m.usage);
                self.ensure_started(out);
            }
            "content_block_start" => {
                let cb = inner;
                let name = string(cb.name);
                let block = match string(cb.kind).map(|t| t.text()).as_deref() {
                    Some("text") => {
                        if let Some(t) = text(cb.text) {
                            self.text_delta(out, br#""content""#, t);
                        }
                        Block::Text
                    }
                    Some("tool_use") if name.is_some_and(|n| n.text() == JSON_TOOL_NAME) => {
                        self.json_mode = true;
                        Block::JsonTool { args: false }
                    }
                    Some("tool_use") => {
                        let i = self.tool_calls;
                        self.tool_calls = self.tool_calls.saturating_add(1);
                        let id = string(cb.id);
                        self.delta(
                            out,
                            |o| {
                                o.extend_from_slice(br#"{"tool_calls":[{"index":"#);
                                json_out::u64(o, u64::from(i));
                                o.extend_from_slice(br#","id":"#);
                                write_or_empty(o, id);
                                o.extend_from_slice(br#","type":"function","function":{"name":"#);
                                write_or_empty(o, name);
                                o.extend_from_slice(br#","arguments":""}}]}"#);
                            },
                            None,
                        );
                        Block::Tool {
                            index: i,
                            args: false,
                        }
                    }
                    Some("thinking") => Block::Thinking,
                    _ => Block::Other,
                };
                self.blocks.retain(|(i, _)| *i != index);
                self.blocks.push((index, block));
            }
            "content_block_delta" => {
                let delta = inner;
                match string(delta.kind).map(|k| k.text()).as_deref() {
                    Some("text_delta") => {
                        if let Some(t) = text(delta.text) {
                            self.text_delta(out, br#""content""#, t);
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(t) = text(delta.thinking) {
                            self.text_delta(out, br#""reasoning_content""#, t);
                        }
                    }
                    Some("input_json_delta") => {
                        let Some(partial) = text(delta.partial_json) else {
                            return;
                        };
                        match self.block(index) {
                            Some(Block::Tool { index: i, args }) => {
                                *args = true;
                                let i = *i;
                                self.args_delta(out, i, |o| partial.write(o));
                            }
                            Some(Block::JsonTool { args }) => {
                                *args = true;
                                self.text_delta(out, br#""content""#, partial);
                            }
                            _ => {}
                        }
                    }
                    // signature_delta, citations_delta and future kinds carry
                    // nothing an OpenAI client reads.
                    _ => {}
                }
            }
            "content_block_stop" => {
                let pos = self.blocks.iter().position(|(i, _)| *i == index);
                let Some(pos) = pos else { return };
                let (_, block) = self.blocks.remove(pos);
                // A call without arguments still gets a parseable `{}` (LiteLLM
                // does the same on content_block_stop).
                match block {
                    Block::Tool {
                        index: i,
                        args: false,
                    } => {
                        self.args_delta(out, i, |o| o.extend_from_slice(br#""{}""#));
                    }
                    Block::JsonTool { args: false } => {
                        self.delta(out, |o| o.extend_from_slice(br#"{"content":"{}"}"#), None);
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                self.merge_usage(ev.usage);
                let stop = string(inner.stop_reason).map(|s| s.text());
                let mut finish = finish_reason(stop.as_deref());
                if finish == "tool_calls" && self.json_mode && self.tool_calls == 0 {
                    finish = "stop";
                }
                self.delta(out, |o| o.extend_from_slice(b"{}"), Some(finish));
            }
            "message_stop" => {
                self.ensure_started(out);
                if self.meta.include_usage {
                    write_usage_chunk(out, &self.prefix, &self.counts.openai());
                }
                write_done(out);
                self.done = true;
            }
            "error" => {
                // Rare: read the whole event as a value.
                let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                let err = match v.get("error").filter(|e| e.is_object()) {
                    Some(e) => {
                        let status = status_for_error_type(
                            e.get("type").and_then(Value::as_str).unwrap_or(""),
                        );
                        anthropic_error(status, &v).unwrap_or_else(|| {
                            GatewayError::new(502, ErrorKind::Upstream, "upstream stream error")
                        })
                    }
                    None => invalid_response("stream `error` event without an error object"),
                };
                self.fail(out, &err);
            }
            // ping and event types added later carry nothing to translate.
            _ => {}
        }
    }
}

/// A string field, or `""` when it is missing.
fn write_or_empty(out: &mut Vec<u8>, s: Option<RawStr<'_>>) {
    match s {
        Some(s) => s.write(out),
        None => out.extend_from_slice(b"\"\""),
    }
}

impl StreamTranslator for AnthropicStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let AnthropicStream { decoder, state } = self;
        decoder.feed_with(bytes, |event, data| state.handle(event, data, false, out));
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let AnthropicStream { decoder, state } = self;
        decoder.finish_with(|event, data| state.handle(event, data, true, out));
        if !state.done {
            let err = GatewayError::new(
                502,
                ErrorKind::Upstream,
                "the upstream stream ended before it was complete",
            )
            .with_code("upstream_stream_truncated");
            state.fail(out, &err);
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.state.saw_usage.then(|| self.state.counts.usage())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_meta(include_usage: bool) -> ResponseMeta {
        ResponseMeta {
            id: "x".into(),
            created: 1,
            model: "m".into(),
            include_usage,
        }
    }

    #[test]
    fn stream_holds_no_more_than_a_partial_line() {
        let mut s = AnthropicStream::new(test_meta(true));
        let mut out = Vec::new();
        let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"abc\"}}\n\n";
        s.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n", &mut out);
        for _ in 0..1000 {
            s.feed(delta.as_bytes(), &mut out);
            assert_eq!(s.decoder.pending_bytes(), 0);
            assert!(s.state.blocks.len() <= 1);
        }
        s.feed(&delta.as_bytes()[..10], &mut out);
        assert_eq!(s.decoder.pending_bytes(), 10);
        assert_eq!(String::from_utf8(out).unwrap().matches("abc").count(), 1000);
    }

    #[test]
    fn nothing_follows_done() {
        let mut s = AnthropicStream::new(test_meta(false));
        let mut out = Vec::new();
        s.feed(
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            &mut out,
        );
        let done_len = out.len();
        s.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"x\"}}\n\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out.len(), done_len);
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn malformed_event_ends_the_stream() {
        let mut s = AnthropicStream::new(test_meta(false));
        let mut out = Vec::new();
        s.feed(
            b"event: content_block_delta\ndata: {not json}\n\n",
            &mut out,
        );
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("upstream_invalid_response"), "{text}");
        assert_eq!(text.matches("[DONE]").count(), 1);
    }

    #[test]
    fn odd_events_do_not_panic() {
        let events = [
            "{\"type\":\"content_block_start\",\"index\":\"x\",\"content_block\":5}",
            "{\"type\":\"content_block_delta\",\"index\":-1,\"delta\":null}",
            "{\"type\":\"content_block_delta\",\"index\":99,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}",
            "{\"type\":\"content_block_stop\",\"index\":99}",
            "{\"type\":\"message_delta\",\"delta\":null,\"usage\":[1]}",
            "{\"type\":\"message_start\",\"message\":[]}",
            "[1,2]",
            "\"str\"",
            "{\"type\":\"error\",\"error\":7}",
        ];
        for ev in events {
            let mut s = AnthropicStream::new(test_meta(true));
            let mut out = Vec::new();
            s.feed(format!("data: {ev}\n\n").as_bytes(), &mut out);
            s.finish(&mut out);
            assert_eq!(String::from_utf8(out).unwrap().matches("[DONE]").count(), 1);
        }
    }

    #[test]
    fn finish_is_idempotent() {
        let mut s = AnthropicStream::new(test_meta(false));
        let mut out = Vec::new();
        s.finish(&mut out);
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("[DONE]").count(), 1);
        assert!(text.contains("upstream_stream_truncated"));
    }
}
