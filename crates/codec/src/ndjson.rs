//! Newline-delimited JSON (NDJSON, JSON Lines): an incremental line decoder.
//!
//! Sans-IO like [`crate::sse::SseDecoder`]: feed it whatever byte slices
//! Envoy hands the filter and it returns the lines that became complete; the
//! unfinished tail (at most one partial line) stays inside. Ollama streams its
//! answers this way (one JSON object per line, `application/x-ndjson`).
//!
//! - Lines end with `\n`; a `\r` before it is removed (`\r\n` endings).
//!   Empty and whitespace-only lines are skipped.
//! - Lines are split on bytes before any UTF-8 decoding, so a character cut
//!   across two body callbacks is simply part of the pending line until the
//!   rest arrives; a complete line that is not UTF-8 is an
//!   [`NdjsonError::InvalidUtf8`] item.
//! - A line longer than the decoder's limit ([`DEFAULT_MAX_LINE`] unless
//!   chosen) is an [`NdjsonError::LineTooLong`] item, given as soon as the
//!   limit is passed; the rest of that line is discarded up to its `\n`, so
//!   the decoder never holds more than the limit. The items produced are the
//!   same however the input is split.
//! - A last line without its `\n` is returned by [`NdjsonDecoder::finish`].
//!
//! The decoder does not parse JSON: that is the caller's business.

/// Default bound on one line: 16 MiB.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

/// A line the decoder could not return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NdjsonError {
    /// A line grew past the limit (bytes, without its line break).
    LineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// A complete line that is not valid UTF-8.
    InvalidUtf8,
}

impl std::fmt::Display for NdjsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NdjsonError::LineTooLong { limit } => {
                write!(f, "an NDJSON line is longer than {limit} bytes")
            }
            NdjsonError::InvalidUtf8 => write!(f, "an NDJSON line is not valid UTF-8"),
        }
    }
}

/// One decoded item: a complete line (without its line break), or why a line
/// could not be returned.
pub type Item = Result<String, NdjsonError>;

/// Incremental NDJSON line decoder.
#[derive(Debug)]
pub struct NdjsonDecoder {
    line: Vec<u8>,
    max_line: usize,
    /// The current line passed the limit: drop bytes up to the next `\n`.
    discarding: bool,
}

impl Default for NdjsonDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NdjsonDecoder {
    /// A decoder with the [`DEFAULT_MAX_LINE`] bound.
    pub fn new() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A decoder whose lines may be at most `max_line` bytes.
    pub fn with_max_line(max_line: usize) -> Self {
        NdjsonDecoder {
            line: Vec::new(),
            max_line,
            discarding: false,
        }
    }

    /// Bytes held for the unfinished line (never more than the limit).
    pub fn pending_bytes(&self) -> usize {
        self.line.len()
    }

    /// Feed the next bytes; returns the items completed by them, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Item> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (part, complete) = match rest.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    let part = &rest[..pos];
                    rest = &rest[pos + 1..];
                    (part, true)
                }
                None => {
                    let part = rest;
                    rest = &[];
                    (part, false)
                }
            };
            if self.discarding {
                if complete {
                    self.discarding = false;
                }
                continue;
            }
            if self.line.len().saturating_add(part.len()) > self.max_line {
                self.line.clear();
                out.push(Err(NdjsonError::LineTooLong {
                    limit: self.max_line,
                }));
                self.discarding = !complete;
                continue;
            }
            self.line.extend_from_slice(part);
            if complete {
                let line = std::mem::take(&mut self.line);
                Self::emit(line, &mut out);
            }
        }
        out
    }

    /// End of input: the last line if it had no line break.
    pub fn finish(&mut self) -> Vec<Item> {
        let mut out = Vec::new();
        self.discarding = false;
        let line = std::mem::take(&mut self.line);
        Self::emit(line, &mut out);
        out
    }

    fn emit(mut line: Vec<u8>, out: &mut Vec<Item>) {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        out.push(String::from_utf8(line).map_err(|_| NdjsonError::InvalidUtf8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(d: &mut NdjsonDecoder, pieces: &[&[u8]]) -> Vec<Item> {
        let mut out = Vec::new();
        for p in pieces {
            out.extend(d.feed(p));
        }
        out.extend(d.finish());
        out
    }

    #[test]
    fn lines_blank_lines_and_crlf() {
        let mut d = NdjsonDecoder::new();
        let got = all(&mut d, &[b"{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}"]);
        assert_eq!(
            got,
            vec![
                Ok("{\"a\":1}".to_string()),
                Ok("{\"b\":2}".to_string()),
                Ok("{\"c\":3}".to_string())
            ]
        );
    }

    #[test]
    fn character_cut_across_feeds() {
        let text = "{\"t\":\"h\u{e9}llo \u{1f44b}\"}\n";
        let bytes = text.as_bytes();
        for i in 0..=bytes.len() {
            let mut d = NdjsonDecoder::new();
            let got = all(&mut d, &[&bytes[..i], &bytes[i..]]);
            assert_eq!(got, vec![Ok(text.trim_end().to_string())], "split at {i}");
        }
    }

    #[test]
    fn invalid_utf8_is_an_item() {
        let mut d = NdjsonDecoder::new();
        let got = all(&mut d, &[b"\xff\xfe\n{}\n"]);
        assert_eq!(
            got,
            vec![Err(NdjsonError::InvalidUtf8), Ok("{}".to_string())]
        );
    }

    #[test]
    fn long_lines_are_bounded() {
        let mut d = NdjsonDecoder::with_max_line(8);
        let mut out = Vec::new();
        out.extend(d.feed(b"12345678\n"));
        for _ in 0..100 {
            out.extend(d.feed(b"abcdefghij"));
            assert!(d.pending_bytes() <= 8);
        }
        out.extend(d.feed(b"xyz\nok\n"));
        out.extend(d.finish());
        assert_eq!(
            out,
            vec![
                Ok("12345678".to_string()),
                Err(NdjsonError::LineTooLong { limit: 8 }),
                Ok("ok".to_string())
            ]
        );
    }
}
