//! Guardrails on the answer (`post_call`): the content filter over the
//! text the model wrote, before the client sees it.
//!
//! A whole answer is checked at once ([`OutputGuard::check_body`]). A
//! stream is checked as it passes ([`OutputGuard::feed_stream`], over the
//! OpenAI SSE the translator wrote): each choice's text is held back just
//! long enough that a match cut across chunks is still seen whole — the
//! last whitespace-free run (the token still being written) plus
//! [`CONTEXT`] bytes before it, and more while a match reaches into the
//! held text; never more than [`MAX_HOLD`]. Released text goes out masked;
//! a blocking match ends the stream with one OpenAI error event and
//! `[DONE]`, and nothing held or after it reaches the client. LiteLLM
//! checks each chunk on its own, so a card number split over two chunks
//! passes it; this does not.
//!
//! A stream also gives the caller its masked values back here
//! (`output_parse_pii`, [`super::vault`]): released text is un-masked last,
//! and a token is never cut by a release. (A whole answer is un-masked by
//! the guardrail hook after its services, the last step before the client.)

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::spec::{FilterAction, GuardrailSpec, Matcher};
use super::vault::Vault;
use super::{hits, masked, violation, Hit};
use crate::api::error::GatewayError;
use crate::codec::sse::{write_data, write_done, SseDecoder};

/// Bytes of context held before the token being written: enough for the
/// prebuilt patterns that span spaces or dashes (phone and card numbers,
/// IBANs in groups), and for multi-word keywords up to this long.
pub const CONTEXT: usize = 64;

/// The most text held back for one choice: a whitespace-free run longer
/// than this (a long base64 blob) is released from its start.
pub const MAX_HOLD: usize = 8192;

/// What a guardrail did to the answer (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Masked,
    Blocked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Masked => "masked",
            Outcome::Blocked => "blocked",
        }
    }
}

/// The `post_call` guardrails of one attempt, with their stream state.
pub struct OutputGuard {
    specs: Vec<Arc<GuardrailSpec>>,
    outcomes: Vec<Outcome>,
    /// Context held before the token being written (see [`CONTEXT`]).
    window: usize,
    decoder: SseDecoder,
    /// Text not yet released, by choice index.
    held: Vec<(u64, String)>,
    /// `id`, `created`, `model` of the last chunk, for the chunk that
    /// releases held text at the end.
    head: Option<Map<String, Value>>,
    /// The stream was ended (blocked, or `[DONE]` written).
    closed: bool,
    /// Masked request values to give back in the stream.
    vault: Option<Arc<Vault>>,
}

impl OutputGuard {
    pub fn new(specs: Vec<Arc<GuardrailSpec>>) -> Self {
        let longest_keyword = specs
            .iter()
            .flat_map(|s| s.rules.iter())
            .filter_map(|r| match &r.matcher {
                Matcher::Keyword(k) => Some(k.len()),
                Matcher::Prebuilt(_) | Matcher::Regex { .. } => None,
            })
            .max()
            .unwrap_or(0);
        OutputGuard {
            outcomes: vec![Outcome::Passed; specs.len()],
            specs,
            window: CONTEXT.max(longest_keyword + 8),
            decoder: SseDecoder::default(),
            held: Vec::new(),
            head: None,
            closed: false,
            vault: None,
        }
    }

    /// Give the caller's masked values back in the stream.
    pub fn with_vault(mut self, vault: Arc<Vault>) -> Self {
        self.vault = Some(vault);
        self
    }

    /// A blocking match ended the stream (nothing more will change).
    pub fn is_blocked(&self) -> bool {
        self.outcomes.contains(&Outcome::Blocked)
    }

    /// Each guardrail's name and what it did so far.
    pub fn outcomes(&self) -> impl Iterator<Item = (&str, Outcome)> {
        self.specs
            .iter()
            .zip(&self.outcomes)
            .map(|(s, o)| (s.name.as_str(), *o))
    }

    /// A whole `chat.completion`: `Ok(None)` passes it unchanged,
    /// `Ok(Some(body))` is it with masked spans, `Err` a 400 for a block.
    pub fn check_body(&mut self, body: &[u8]) -> Result<Option<Vec<u8>>, GatewayError> {
        let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
            return Ok(None);
        };
        let mut changed = false;
        let choices = v.get_mut("choices").and_then(Value::as_array_mut);
        for choice in choices.into_iter().flatten() {
            let Some(Value::String(text)) = choice.pointer_mut("/message/content") else {
                continue;
            };
            let (release, _) = self.release(text, true, false)?;
            if release != *text {
                *text = release;
                changed = true;
            }
        }
        Ok(changed.then(|| serde_json::to_vec(&v).unwrap_or_default()))
    }

    /// The next OpenAI SSE bytes of a stream; returns what to send instead.
    /// At `end` whatever is still held is checked and released.
    pub fn feed_stream(&mut self, sse: &[u8], end: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(sse.len() + 64);
        if self.closed {
            return out;
        }
        let mut events = self.decoder.feed(sse);
        if end {
            events.extend(self.decoder.finish());
        }
        for e in events {
            self.event(&e.data, &mut out);
            if self.closed {
                return out;
            }
        }
        if end {
            self.flush(&mut out);
        }
        out
    }

    fn event(&mut self, data: &str, out: &mut Vec<u8>) {
        if data == "[DONE]" {
            self.flush(out);
            if !self.closed {
                write_done(out);
                self.closed = true;
            }
            return;
        }
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            write_data(out, data);
            return;
        };
        if v.get("error").is_some() {
            self.flush(out);
            if !self.closed {
                write_data(out, data);
            }
            return;
        }
        if let Some(o) = v.as_object() {
            let head: Map<String, Value> = ["id", "object", "created", "model"]
                .iter()
                .filter_map(|k| o.get(*k).map(|x| (k.to_string(), x.clone())))
                .collect();
            self.head = Some(head);
        }
        let mut changed = false;
        let choices = v.get_mut("choices").and_then(Value::as_array_mut);
        for choice in choices.into_iter().flatten() {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
            let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) else {
                continue;
            };
            let piece = match delta.get("content") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            if piece.is_none() && !finished {
                continue;
            }
            let held = self.held_mut(index);
            held.push_str(piece.as_deref().unwrap_or(""));
            let text = std::mem::take(held);
            match self.release(&text, finished, true) {
                Ok((release, keep)) => {
                    *self.held_mut(index) = text[keep..].to_string();
                    if piece.is_some() || !release.is_empty() {
                        delta.insert("content".into(), Value::String(release));
                        changed = true;
                    }
                }
                Err(e) => {
                    self.block(&e, out);
                    return;
                }
            }
        }
        if changed {
            write_data(out, &v.to_string());
        } else {
            write_data(out, data);
        }
    }

    /// Check and release everything still held, in one chunk.
    fn flush(&mut self, out: &mut Vec<u8>) {
        let held = std::mem::take(&mut self.held);
        let mut choices = Vec::new();
        for (index, text) in held {
            if text.is_empty() {
                continue;
            }
            match self.release(&text, true, true) {
                Ok((release, _)) => choices.push(json!({
                    "index": index, "delta": {"content": release}, "finish_reason": null,
                })),
                Err(e) => return self.block(&e, out),
            }
        }
        if choices.is_empty() {
            return;
        }
        let mut chunk = self.head.clone().unwrap_or_default();
        chunk.insert("choices".into(), Value::Array(choices));
        write_data(out, &Value::Object(chunk).to_string());
    }

    fn block(&mut self, e: &GatewayError, out: &mut Vec<u8>) {
        // The same event a translator ends a broken stream with.
        write_data(out, &String::from_utf8_lossy(&e.to_body()));
        write_done(out);
        self.held.clear();
        self.closed = true;
    }

    fn held_mut(&mut self, index: u64) -> &mut String {
        let pos = match self.held.iter().position(|(i, _)| *i == index) {
            Some(p) => p,
            None => {
                self.held.push((index, String::new()));
                self.held.len() - 1
            }
        };
        &mut self.held[pos].1
    }

    /// What of `text` can go out now, masked (and, in a stream, un-masked
    /// by the vault), and where the held rest starts (`last`: all of it).
    /// A blocking match in what goes out is the guardrail's 400.
    fn release(
        &mut self,
        text: &str,
        last: bool,
        unmask: bool,
    ) -> Result<(String, usize), GatewayError> {
        let mut cut = if last {
            text.len()
        } else {
            boundary(text, self.window)
        };
        let mut found: Vec<(usize, Hit)> = Vec::new();
        for (i, spec) in self.specs.iter().enumerate() {
            found.extend(hits(spec, text).into_iter().map(|h| (i, h)));
        }
        // A match reaching into the held text is held whole.
        while let Some(start) = found
            .iter()
            .filter(|(_, h)| h.start < cut && h.end > cut)
            .map(|(_, h)| h.start)
            .min()
        {
            cut = start;
        }
        if let (Some(v), false) = (&self.vault, last) {
            // A match cut off by this is checked again with the held rest.
            cut = v.safe_cut(text, cut);
        }
        found.retain(|(_, h)| h.end <= cut);
        if let Some((i, h)) = found.iter().find(|(_, h)| h.action == FilterAction::Block) {
            self.outcomes[*i] = Outcome::Blocked;
            return Err(violation(&self.specs[*i].name, &h.what));
        }
        for (i, _) in &found {
            self.outcomes[*i] = Outcome::Masked;
        }
        let release = masked(
            &text[..cut],
            found.into_iter().map(|(_, h)| h).collect(),
            None,
        );
        let release = match (&self.vault, unmask) {
            (Some(v), true) => v.unmask(&release, last),
            _ => release,
        };
        Ok((release, cut))
    }
}

/// Where held text can be cut: after the last whitespace at least `window`
/// bytes before the token being written (so what is held starts a token),
/// and never more than [`MAX_HOLD`] bytes from the end.
fn boundary(text: &str, window: usize) -> usize {
    let b = text.as_bytes();
    let token_start = b
        .iter()
        .rposition(u8::is_ascii_whitespace)
        .map_or(0, |i| i + 1);
    let limit = token_start.saturating_sub(window);
    let mut cut = b[..limit]
        .iter()
        .rposition(u8::is_ascii_whitespace)
        .map_or(0, |i| i + 1);
    if b.len() - cut > MAX_HOLD {
        cut = b.len() - MAX_HOLD;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_holds_the_token_and_its_context() {
        let text = format!("{} tail", "word ".repeat(40));
        let cut = boundary(&text, 16);
        assert!(text[cut..].ends_with("tail"));
        assert!(
            text.len() - cut >= 16 + 4,
            "holds context: {}",
            &text[cut..]
        );
        assert!(text[..cut].ends_with(' '), "cut after whitespace");
        assert_eq!(boundary("short", 16), 0);
        let blob = "x".repeat(MAX_HOLD * 2);
        assert_eq!(blob.len() - boundary(&blob, 16), MAX_HOLD);
    }
}
