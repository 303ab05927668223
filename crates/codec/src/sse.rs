//! Server-sent events: an incremental decoder and the OpenAI-style encoder.
//!
//! The decoder is sans-IO: feed it whatever byte slices Envoy hands the filter
//! and it returns the events that became complete; the partial tail (at most
//! one unfinished line plus the fields of the event being built) stays inside.
//! It never holds a whole stream.
//!
//! Format (WHATWG HTML, "Parsing an event stream"):
//!
//! ```text
//! stream  = *event
//! event   = *( comment / field ) end-of-line
//! comment = ":" *any-char end-of-line
//! field   = name [ ":" [ " " ] *any-char ] end-of-line
//! end-of-line = CRLF / LF / CR
//! ```
//!
//! Lines are split on bytes before any UTF-8 decoding, and a line break can never
//! sit inside a multi-byte character, so a character cut across two body
//! callbacks is simply part of the pending line until the rest arrives.

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; empty when absent (the spec's "message").
    pub event: String,
    /// The `data:` fields joined with `\n`.
    pub data: String,
}

/// Incremental SSE decoder.
///
/// [`SseDecoder::feed_with`] hands each completed event to a callback as
/// borrowed `(event, data)`: on a long stream the decoder allocates nothing
/// after its buffers reach the size of the largest event, and a line that
/// arrives whole is never copied into the line buffer.
#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
}

impl SseDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next bytes; returns the events completed by them, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        self.feed_with(bytes, |event, data| {
            out.push(Event {
                event: event.to_string(),
                data: data.to_string(),
            })
        });
        out
    }

    /// Feed the next bytes; `on_event(event, data)` is called for each event
    /// they complete, in order (`event` is empty when the event had no
    /// `event:` field).
    pub fn feed_with(&mut self, bytes: &[u8], mut on_event: impl FnMut(&str, &str)) {
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', rest) {
            let was_cr = rest[pos] == b'\r';
            if self.line.is_empty() {
                self.process_line(&rest[..pos], &mut on_event);
            } else {
                self.line.extend_from_slice(&rest[..pos]);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, &mut on_event);
                // Keep the buffer's capacity for the next cut line.
                self.line = line;
                self.line.clear();
            }
            rest = &rest[pos + 1..];
            if was_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    _ => {}
                }
            }
        }
        self.line.extend_from_slice(rest);
    }

    /// End of input: an event not closed by a blank line is dispatched anyway
    /// (a lenient choice: providers sometimes omit the final blank line).
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.finish_with(|event, data| {
            out.push(Event {
                event: event.to_string(),
                data: data.to_string(),
            })
        });
        out
    }

    /// [`SseDecoder::finish`] with a callback, as [`SseDecoder::feed_with`].
    pub fn finish_with(&mut self, mut on_event: impl FnMut(&str, &str)) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut on_event);
        }
        self.dispatch(&mut on_event);
    }

    /// Bytes held for an unfinished line (for tests of the no-buffering claim).
    pub fn pending_bytes(&self) -> usize {
        self.line.len() + self.data.len() + self.event.len()
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(&str, &str)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                let v = v.strip_prefix(b" ").unwrap_or(v);
                (&line[..i], v)
            }
            None => (line, &b""[..]),
        };
        // Valid UTF-8 (the usual case) is checked word-at-a-time and borrowed.
        let value = match std::str::from_utf8(value) {
            Ok(v) => std::borrow::Cow::Borrowed(v),
            Err(_) => String::from_utf8_lossy(value),
        };
        match name {
            b"event" => {
                self.event.clear();
                self.event.push_str(&value);
            }
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            _ => {} // id, retry and unknown fields do not matter to a translator
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(&str, &str)) {
        if self.has_data || !self.event.is_empty() {
            on_event(&self.event, &self.data);
        }
        self.has_data = false;
        self.event.clear();
        self.data.clear();
    }
}

/// Append one `data: <json>\n\n` frame.
pub fn write_data(out: &mut Vec<u8>, json: &str) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Append the OpenAI end-of-stream marker.
pub fn write_done(out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: [DONE]\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "event: a\ndata: {\"x\":\"h\u{e9}llo \u{1f600}\"}\n\n: comment\r\nevent: b\r\ndata: 1\r\ndata: 2\r\n\r\ndata: last\n\n";

    fn all_at_once() -> Vec<Event> {
        let mut d = SseDecoder::new();
        let mut ev = d.feed(STREAM.as_bytes());
        ev.extend(d.finish());
        ev
    }

    #[test]
    fn decodes_events_fields_and_line_endings() {
        let ev = all_at_once();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].event, "a");
        assert_eq!(ev[0].data, "{\"x\":\"h\u{e9}llo \u{1f600}\"}");
        assert_eq!(
            ev[1],
            Event {
                event: "b".into(),
                data: "1\n2".into()
            }
        );
        assert_eq!(ev[2].data, "last");
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        let expected = all_at_once();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut d = SseDecoder::new();
                let mut ev = d.feed(&bytes[..i]);
                ev.extend(d.feed(&bytes[i..j]));
                ev.extend(d.feed(&bytes[j..]));
                ev.extend(d.finish());
                assert_eq!(ev, expected, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn lone_cr_ends_a_line() {
        let mut d = SseDecoder::new();
        let ev = d.feed(b"data: a\r\rdata: b\r");
        assert_eq!(ev.len(), 1);
        let ev2 = d.feed(b"\r");
        assert_eq!(ev2[0].data, "b");
    }
}
