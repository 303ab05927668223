//! Gemini's `alt=sse` stream as OpenAI `chat.completion.chunk` events, translated as events arrive.

#[allow(unused_imports)]
use super::*;

// Chunks are the shared `chunk::Chunk` written with serde, not
// `chunk::ChunkWriter`, which writes choice 0 only: Gemini streams `n`
// candidates at their own indices, and its usage chunk has reasoning details.

/// Per-candidate stream state.
#[derive(Debug, Clone, Copy)]
pub(super) struct CandidateState {
    pub(super) index: u64,
    /// Tool calls sent for this candidate (its next `tool_calls` index).
    pub(super) calls: u32,
    pub(super) finished: bool,
}

/// Translates Gemini's `alt=sse` stream into OpenAI chunks as events arrive.
///
/// Holds only the SSE decoder's unfinished line and a few counters per
/// candidate.
pub(super) struct GeminiStream {
    pub(super) api: Api,
    pub(super) decoder: SseDecoder,
    pub(super) meta: ResponseMeta,
    pub(super) model: Option<String>,
    pub(super) candidates: Vec<CandidateState>,
    /// Tool calls in the whole response (for unique ids).
    pub(super) calls: u32,
    /// The prompt was blocked: the content_filter choice was sent.
    pub(super) blocked: bool,
    /// `[DONE]` was written: nothing more may follow.
    pub(super) done: bool,
    pub(super) counts: TokenCounts,
    pub(super) saw_usage: bool,
}

impl GeminiStream {
    pub(super) fn new(api: Api, meta: ResponseMeta) -> Self {
        GeminiStream {
            api,
            decoder: SseDecoder::new(),
            meta,
            model: None,
            candidates: Vec::new(),
            calls: 0,
            blocked: false,
            done: false,
            counts: TokenCounts::default(),
            saw_usage: false,
        }
    }

    pub(super) fn write_chunk(
        &self,
        out: &mut Vec<u8>,
        choices: Vec<ChunkChoice>,
        usage: Option<UsageOut>,
    ) {
        let chunk: Chunk<'_, UsageOut> = Chunk {
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

    /// The state of candidate `index`; the first time, the role chunk is sent.
    pub(super) fn candidate(&mut self, index: u64, out: &mut Vec<u8>) -> usize {
        if let Some(pos) = self.candidates.iter().position(|c| c.index == index) {
            return pos;
        }
        self.candidates.push(CandidateState {
            index,
            calls: 0,
            finished: false,
        });
        let delta = Delta {
            role: Some("assistant"),
            content: Some(String::new()),
            ..Delta::default()
        };
        self.write_delta(out, index, delta, None);
        self.candidates.len() - 1
    }

    pub(super) fn write_delta(
        &self,
        out: &mut Vec<u8>,
        index: u64,
        delta: Delta,
        finish: Option<&'static str>,
    ) {
        self.write_chunk(
            out,
            vec![ChunkChoice {
                index,
                delta,
                finish_reason: finish,
            }],
            None,
        );
    }

    /// End the client stream with an error event and `[DONE]`.
    pub(super) fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        stream_error_event(err, out);
        write_done(out);
        self.done = true;
    }

    /// Translate one event. `at_end`: the event was cut off by the end of the
    /// upstream stream, so unreadable data means truncation (reported by
    /// `finish`), not a malformed event.
    pub(super) fn handle(&mut self, data: &str, at_end: bool, out: &mut Vec<u8>) {
        if self.done || data.trim().is_empty() {
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) if at_end => return,
            Err(e) => {
                let err = invalid_response(self.api, format!("stream event is not JSON: {e}"));
                self.fail(out, &err);
                return;
            }
        };
        let v = match v {
            Value::Array(mut a) if a.len() == 1 => a.remove(0),
            v => v,
        };
        if v.get("error").is_some_and(Value::is_object) {
            let err = error_from_value(self.api, stream_error_status(&v), &v);
            self.fail(out, &err);
            return;
        }
        if !v.is_object() {
            let err = invalid_response(self.api, "stream event is not a JSON object");
            self.fail(out, &err);
            return;
        }
        if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
            self.model = Some(m.to_string());
        }
        if let Some(um) = v.get("usageMetadata").filter(|u| u.is_object()) {
            self.counts.merge(um);
            self.saw_usage = true;
        }
        let candidates = v.get("candidates").and_then(Value::as_array);
        if candidates.is_none_or(|c| c.is_empty()) {
            let blocked = v
                .get("promptFeedback")
                .and_then(|p| p.get("blockReason"))
                .is_some();
            if blocked && !self.blocked && self.candidates.is_empty() {
                self.blocked = true;
                let pos = self.candidate(0, out);
                if let Some(c) = self.candidates.get_mut(pos) {
                    c.finished = true;
                }
                self.write_delta(out, 0, Delta::default(), Some("content_filter"));
            }
            return;
        }
        for (n, cand) in candidates.into_iter().flatten().enumerate() {
            let index = cand
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(n as u64);
            let pos = self.candidate(index, out);
            let parts = cand
                .get("content")
                .and_then(|c| c.get("parts"))
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for part in parts {
                self.part(pos, index, part, out);
            }
            if let Some(reason) = cand.get("finishReason").and_then(Value::as_str) {
                let Some(state) = self.candidates.get_mut(pos) else {
                    continue;
                };
                if state.finished {
                    continue;
                }
                state.finished = true;
                let finish = if state.calls > 0 {
                    "tool_calls"
                } else {
                    finish_reason(Some(reason))
                };
                self.write_delta(out, index, Delta::default(), Some(finish));
            }
        }
    }

    /// One part of candidate `index` (at `pos` in `self.candidates`).
    pub(super) fn part(&mut self, pos: usize, index: u64, part: &Value, out: &mut Vec<u8>) {
        if let Some(fc) = part.get("functionCall") {
            let name = fc
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let arguments = match fc.get("args") {
                None | Some(Value::Null) => "{}".to_string(),
                Some(a) => a.to_string(),
            };
            let sig = part.get("thoughtSignature").and_then(Value::as_str);
            let id = call_id(&self.meta, self.calls, sig);
            self.calls = self.calls.saturating_add(1);
            let Some(state) = self.candidates.get_mut(pos) else {
                return;
            };
            let call_index = state.calls;
            state.calls = state.calls.saturating_add(1);
            let delta = Delta::tool_start(call_index, id, name, arguments);
            self.write_delta(out, index, delta, None);
        } else if let Some(t) = part.get("text").and_then(Value::as_str) {
            if t.is_empty() {
                return;
            }
            let delta = if part.get("thought").and_then(Value::as_bool) == Some(true) {
                Delta::reasoning(t)
            } else {
                Delta::content(t)
            };
            self.write_delta(out, index, delta, None);
        }
    }
}

impl StreamTranslator for GeminiStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for ev in self.decoder.feed(bytes) {
            self.handle(&ev.data, false, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        for ev in self.decoder.finish() {
            self.handle(&ev.data, true, out);
        }
        if self.done {
            return;
        }
        let complete = !self.candidates.is_empty() && self.candidates.iter().all(|c| c.finished);
        if complete {
            if self.meta.include_usage {
                self.write_chunk(out, Vec::new(), Some(self.counts.openai()));
            }
            write_done(out);
            self.done = true;
        } else {
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
        self.saw_usage.then(|| self.counts.usage())
    }
}
