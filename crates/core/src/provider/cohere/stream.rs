//! Cohere's v2 stream (`message-start`, `content-delta`, `tool-call-*`,
//! `message-end`) as OpenAI chunks, framed as SSE or as bare JSON lines.

#[allow(unused_imports)]
use super::*;
use crate::codec::ndjson::NdjsonDecoder;

/// How the stream is framed. Cohere documents SSE (`event:` / `data:`
/// lines), but its v1 and v2 APIs have also answered with one bare JSON
/// object per line (what LiteLLM's iterator reads); the first byte that is
/// not whitespace tells which: `{` starts a JSON line, anything else an SSE
/// field or comment. Leading whitespace means nothing in either framing, so
/// it is dropped while undecided, which keeps the choice the same however
/// the bytes are split.
pub(super) enum Framing {
    Undecided,
    Sse(SseDecoder),
    Lines(NdjsonDecoder),
}

/// Translates Cohere v2 stream events into OpenAI chunks as they complete.
pub(super) struct CohereStream {
    pub(super) framing: Framing,
    pub(super) w: ChunkWriter,
    /// Cohere tool-call index -> OpenAI `tool_calls` index, in start order.
    pub(super) tools: Vec<(u64, u32)>,
    pub(super) usage: Option<Usage>,
}

impl CohereStream {
    pub(super) fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        self.w.fail(out, err);
    }

    pub(super) fn handle(&mut self, data: &str, at_end: bool, out: &mut Vec<u8>) {
        if self.w.is_done() || data.trim().is_empty() || data == "[DONE]" {
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            // Cut off by the end of the stream: `finish` reports truncation.
            Err(_) if at_end => return,
            Err(e) => {
                let err = invalid_response(format!("stream event is not JSON ({e})"));
                self.fail(out, &err);
                return;
            }
        };
        let delta_msg = v.get("delta").and_then(|d| d.get("message"));
        let text_of = |k: &str| {
            delta_msg
                .and_then(|m| m.get("content"))
                .and_then(|c| c.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        match v.get("type").and_then(Value::as_str).unwrap_or("") {
            "message-start" => self.w.start(out),
            "content-start" | "content-delta" => {
                let text = text_of("text");
                if !text.is_empty() {
                    self.w.delta(out, Delta::content(text), None);
                }
                let thinking = text_of("thinking");
                if !thinking.is_empty() {
                    self.w.delta(out, Delta::reasoning(thinking), None);
                }
            }
            "tool-plan-delta" => {
                let plan = delta_msg
                    .and_then(|m| m.get("tool_plan"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !plan.is_empty() {
                    self.w.delta(out, Delta::content(plan), None);
                }
            }
            "tool-call-start" => {
                let call = match delta_msg.and_then(|m| m.get("tool_calls")) {
                    Some(Value::Array(a)) => a.first(),
                    other => other,
                };
                let ours = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                let cohere_index = v
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(ours.into());
                self.tools.retain(|(c, _)| *c != cohere_index);
                self.tools.push((cohere_index, ours));
                let f = call.and_then(|c| c.get("function"));
                let id = call
                    .and_then(|c| c.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("call_{}_{ours}", self.w.meta().id));
                let name = f
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let args = arguments_string(f.and_then(|f| f.get("arguments")));
                self.w
                    .delta(out, Delta::tool_start(ours, id, name, args), None);
            }
            "tool-call-delta" => {
                let cohere_index = v.get("index").and_then(Value::as_u64);
                let ours = match cohere_index {
                    Some(c) => self.tools.iter().find(|(i, _)| *i == c).map(|(_, o)| *o),
                    None => self.tools.last().map(|(_, o)| *o),
                };
                let Some(ours) = ours else { return };
                let call = match delta_msg.and_then(|m| m.get("tool_calls")) {
                    Some(Value::Array(a)) => a.first(),
                    other => other,
                };
                let args = arguments_string(
                    call.and_then(|c| c.get("function"))
                        .and_then(|f| f.get("arguments")),
                );
                if !args.is_empty() {
                    self.w.delta(out, Delta::tool_args(ours, args), None);
                }
            }
            "message-end" => {
                let delta = v.get("delta");
                if let Some(u) = delta.and_then(|d| d.get("usage")).and_then(usage_of) {
                    self.usage = Some(u);
                }
                let error = delta
                    .and_then(|d| d.get("error"))
                    .and_then(Value::as_str)
                    .filter(|e| !e.is_empty());
                let reason = delta
                    .and_then(|d| d.get("finish_reason"))
                    .and_then(Value::as_str);
                // An `error` next to a safety stop explains the stop (the
                // answer is still `content_filter`); next to any other
                // reason it means the generation failed.
                let finish = match (error, finish_reason(reason, error)) {
                    (Some(msg), Ok(f)) if f != CONTENT_FILTER => Err(GatewayError::new(
                        502,
                        ErrorKind::Upstream,
                        format!("{PROVIDER} stream error: {msg}"),
                    )
                    .with_code("upstream_generation_error")),
                    (_, r) => r,
                };
                match finish {
                    Ok(f) => {
                        self.w.delta(out, Delta::default(), Some(f));
                        self.w.end(out, self.usage);
                    }
                    Err(e) => self.fail(out, &e),
                }
            }
            // content-end, tool-call-end, citation-start/end, debug and
            // event types added later carry nothing to translate.
            _ => {}
        }
    }

    /// Decode `bytes` (or, at the end, what the decoder still holds) and
    /// translate the events.
    fn decode(&mut self, bytes: &[u8], at_end: bool, out: &mut Vec<u8>) {
        match &mut self.framing {
            Framing::Sse(d) => {
                let events = if at_end { d.finish() } else { d.feed(bytes) };
                for ev in events {
                    self.handle(&ev.data, at_end, out);
                }
            }
            Framing::Lines(d) => {
                let lines = if at_end { d.finish() } else { d.feed(bytes) };
                for line in lines {
                    match line {
                        Ok(line) => self.handle(&line, at_end, out),
                        Err(e) => self.fail(out, &invalid_response(e)),
                    }
                }
            }
            Framing::Undecided => {}
        }
    }
}

impl StreamTranslator for CohereStream {
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        if let Framing::Undecided = self.framing {
            let Some(at) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else {
                return;
            };
            bytes = &bytes[at..];
            self.framing = if bytes.first() == Some(&b'{') {
                Framing::Lines(NdjsonDecoder::new())
            } else {
                Framing::Sse(SseDecoder::new())
            };
        }
        self.decode(bytes, false, out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.decode(&[], true, out);
        if !self.w.is_done() {
            let err = GatewayError::new(
                502,
                ErrorKind::Upstream,
                "the upstream stream ended before it was complete",
            )
            .with_code("upstream_stream_truncated");
            self.fail(out, &err);
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}
