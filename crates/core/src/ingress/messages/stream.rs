//! An OpenAI chunk stream re-emitted as Anthropic's Messages events:
//! `message_start` and `ping` at the first chunk, one
//! `content_block_start` / `content_block_delta`... / `content_block_stop`
//! per thinking, text or tool-call run (a new block whenever the kind or
//! the tool call changes), and at `[DONE]` `message_delta` (the
//! `stop_reason`, and the usage the last chunks reported: chat streams
//! report it at the end, so the `message_start` usage is zero) and
//! `message_stop`. An OpenAI error event becomes Anthropic's `error`
//! event and ends the stream; an OpenAI stream that ends without `[DONE]`
//! ends with an `api_error` event, never a clean `message_stop`.
//!
//! Fed the OpenAI bytes in any split (an OpenAI-compatible provider's
//! stream is passed on as it came); holds at most one unfinished event.

use crate::api::error::{ErrorKind, GatewayError};
use crate::codec::json_in::{elements, first, string, u64 as num, valid};
use crate::codec::json_out;
use crate::codec::sse::SseDecoder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    /// A tool call: its chat `index`.
    Tool(u64),
}

/// The re-emitter's state.
#[derive(Default)]
pub struct MessagesStream {
    sse: SseDecoder,
    started: bool,
    /// `message_stop` or an `error` event was written: nothing follows.
    ended: bool,
    open: Option<Open>,
    /// Blocks started so far (the next block's `index`).
    blocks: u64,
    finish: Option<String>,
    /// Prompt (cache reads included), cached, completion tokens.
    usage: (u64, u64, u64),
}

fn event(out: &mut Vec<u8>, name: &str, body: &[&[u8]]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    for b in body {
        out.extend_from_slice(b);
    }
    out.extend_from_slice(b"\n\n");
}

fn quoted(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 2);
    json_out::str(&mut v, s);
    v
}

impl MessagesStream {
    fn on_event(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        let data = data.trim();
        if data == "[DONE]" {
            self.close(out);
            return;
        }
        if !valid(data) {
            return;
        }
        if let Some(err) = first(data, "error").filter(|e| e.starts_with('{')) {
            let text = |k| string(first(err, k)).map(|s| s.text().into_owned());
            let mut e = GatewayError::new(
                500,
                ErrorKind::Upstream,
                text("message").unwrap_or_else(|| "the provider's stream failed".into()),
            );
            e.code = text("code").or_else(|| text("type"));
            self.fail(&e, out);
            return;
        }
        if !self.started {
            let id = string(first(data, "id")).map(|s| s.text().into_owned());
            let model = string(first(data, "model")).map(|s| s.text().into_owned());
            self.start(
                id.as_deref().unwrap_or(""),
                model.as_deref().unwrap_or(""),
                out,
            );
        }
        if let Some(u) = first(data, "usage").filter(|u| u.starts_with('{')) {
            let cached =
                first(u, "prompt_tokens_details").and_then(|d| num(first(d, "cached_tokens")));
            self.usage = (
                num(first(u, "prompt_tokens")).unwrap_or(0),
                cached.unwrap_or(0),
                num(first(u, "completion_tokens")).unwrap_or(0),
            );
        }
        let Some(choice) = elements(first(data, "choices").unwrap_or("[]"))
            .find(|c| num(first(c, "index")).unwrap_or(0) == 0)
        else {
            return;
        };
        if let Some(delta) = first(choice, "delta") {
            self.delta(delta, out);
        }
        if let Some(f) = string(first(choice, "finish_reason")) {
            self.finish = Some(f.text().into_owned());
            self.stop_block(out);
        }
    }

    fn delta(&mut self, delta: &str, out: &mut Vec<u8>) {
        let text = |k| {
            string(first(delta, k))
                .map(|s| s.text().into_owned())
                .filter(|t| !t.is_empty())
        };
        if let Some(t) = text("reasoning_content") {
            self.ensure(
                Open::Thinking,
                br#"{"type":"thinking","thinking":"","signature":""}"#,
                out,
            );
            self.block_delta(out, br#"{"type":"thinking_delta","thinking":"#, &t);
        }
        if let Some(t) = text("content") {
            self.ensure(Open::Text, br#"{"type":"text","text":""}"#, out);
            self.block_delta(out, br#"{"type":"text_delta","text":"#, &t);
        }
        for call in elements(first(delta, "tool_calls").unwrap_or("[]")) {
            let index = num(first(call, "index")).unwrap_or(0);
            let f = first(call, "function").unwrap_or("{}");
            let id = string(first(call, "id")).map(|s| s.text().into_owned());
            let name = string(first(f, "name")).map(|s| s.text().into_owned());
            if self.open != Some(Open::Tool(index)) || (id.is_some() && name.is_some()) {
                let mut start = br#"{"type":"tool_use","id":"#.to_vec();
                start.extend(quoted(id.as_deref().unwrap_or("")));
                start.extend_from_slice(br#","name":"#);
                start.extend(quoted(name.as_deref().unwrap_or("")));
                start.extend_from_slice(br#","input":{}}"#);
                self.stop_block(out);
                self.ensure(Open::Tool(index), &start, out);
            }
            if let Some(a) = string(first(f, "arguments"))
                .map(|s| s.text().into_owned())
                .filter(|a| !a.is_empty())
            {
                self.block_delta(out, br#"{"type":"input_json_delta","partial_json":"#, &a);
            }
        }
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        self.started = true;
        let id = quoted(&super::message_id(id));
        let model = quoted(model);
        event(out, "message_start", &[
            br#"{"type":"message_start","message":{"id":"#, &id,
            br#","type":"message","role":"assistant","model":"#, &model,
            br#","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}"#,
        ]);
        event(out, "ping", &[br#"{"type":"ping"}"#]);
    }

    /// Open a block of kind `kind` unless one is open.
    fn ensure(&mut self, kind: Open, block: &[u8], out: &mut Vec<u8>) {
        if self.open == Some(kind) {
            return;
        }
        self.stop_block(out);
        let mut index = Vec::new();
        json_out::u64(&mut index, self.blocks);
        event(
            out,
            "content_block_start",
            &[
                br#"{"type":"content_block_start","index":"#,
                &index,
                br#","content_block":"#,
                block,
                b"}",
            ],
        );
        self.open = Some(kind);
        self.blocks += 1;
    }

    fn block_delta(&mut self, out: &mut Vec<u8>, head: &[u8], text: &str) {
        let mut index = Vec::new();
        json_out::u64(&mut index, self.blocks.saturating_sub(1));
        event(
            out,
            "content_block_delta",
            &[
                br#"{"type":"content_block_delta","index":"#,
                &index,
                br#","delta":"#,
                head,
                &quoted(text),
                b"}}",
            ],
        );
    }

    fn stop_block(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            let mut index = Vec::new();
            json_out::u64(&mut index, self.blocks.saturating_sub(1));
            event(
                out,
                "content_block_stop",
                &[br#"{"type":"content_block_stop","index":"#, &index, b"}"],
            );
        }
    }

    /// `[DONE]`: the closing events.
    fn close(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start("", "", out);
        }
        self.stop_block(out);
        let reason = quoted(super::stop_reason(self.finish.as_deref()));
        let mut usage = Vec::new();
        let (prompt, cached, completion) = self.usage;
        super::write_usage(&mut usage, prompt, cached, completion);
        event(
            out,
            "message_delta",
            &[
                br#"{"type":"message_delta","delta":{"stop_reason":"#,
                &reason,
                br#","stop_sequence":null},"usage":"#,
                &usage,
                b"}",
            ],
        );
        event(out, "message_stop", &[br#"{"type":"message_stop"}"#]);
        self.ended = true;
    }

    fn fail(&mut self, e: &GatewayError, out: &mut Vec<u8>) {
        event(out, "error", &[&super::error_body(e)]);
        self.ended = true;
    }
}

impl crate::ingress::ClientStream for MessagesStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut sse = std::mem::take(&mut self.sse);
        sse.feed_with(bytes, |_, data| self.on_event(data, out));
        self.sse = sse;
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let mut sse = std::mem::take(&mut self.sse);
        sse.finish_with(|_, data| self.on_event(data, out));
        if !self.ended {
            let e = GatewayError::new(
                502,
                ErrorKind::Upstream,
                "the provider's stream ended before its end",
            );
            self.fail(&e, out);
        }
    }
}
