//! Writing JSON straight into one output buffer.
//!
//! Translators on the hot path (the OpenAI-compatible passthrough, Anthropic)
//! build their output bodies by appending to one `Vec<u8>` instead of
//! assembling a `serde_json::Value` tree and serialising it: no per-field
//! allocation, and text the client or provider sent is copied once. Strings
//! are escaped exactly as `serde_json` escapes them, so output bytes match
//! what the `Value` path produced (stream fixtures compare bytes).

use serde_json::ser::{CompactFormatter, Formatter};
use serde_json::value::RawValue;

/// Append `s` as a JSON string literal (quotes included), escaped as
/// `serde_json` does.
pub fn str(out: &mut Vec<u8>, s: &str) {
    // serde_json's own escaping; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Append `"key":`.
pub fn key(out: &mut Vec<u8>, k: &str) {
    str(out, k);
    out.push(b':');
}

/// Append an unsigned integer.
pub fn u64(out: &mut Vec<u8>, n: u64) {
    let _ = CompactFormatter.write_u64(out, n);
}

/// Append JSON text that is already valid (a [`RawValue`] the input was
/// checked into, or a literal).
pub fn raw(out: &mut Vec<u8>, json: &str) {
    out.extend_from_slice(json.as_bytes());
}

/// Append any serialisable value (for the rare, small, dynamic parts:
/// `tool_choice`, `thinking`, usage objects).
pub fn value<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(&mut *out, v);
}

/// A JSON string literal as it arrived (quotes and escapes included),
/// checked to be a string when it was read. Copied when it is written,
/// decoded only when its text must be looked at.
#[derive(Debug, Clone, Copy)]
pub struct RawStr<'a>(&'a str);

impl<'a> RawStr<'a> {
    /// The literal, if `raw` is a JSON string.
    pub fn new(raw: &'a RawValue) -> Option<Self> {
        Self::from_json(raw.get())
    }

    /// The literal, if `json` (checked JSON text) is a string.
    pub fn from_json(json: &'a str) -> Option<Self> {
        (json.len() >= 2 && json.starts_with('"') && json.ends_with('"')).then_some(RawStr(json))
    }

    /// The literal, quotes included.
    pub fn literal(&self) -> &'a str {
        self.0
    }

    /// Whether the string is empty (`""`).
    pub fn is_empty(&self) -> bool {
        self.0.len() == 2
    }

    /// The decoded text: borrowed when the literal has no escapes.
    pub fn text(&self) -> std::borrow::Cow<'a, str> {
        let inner = &self.0[1..self.0.len() - 1];
        if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
            return std::borrow::Cow::Borrowed(inner);
        }
        // A literal checked by serde_json always decodes.
        serde_json::from_str::<String>(self.0)
            .map(std::borrow::Cow::Owned)
            .unwrap_or(std::borrow::Cow::Borrowed(inner))
    }

    /// Append the literal exactly as it arrived.
    pub fn write_as_sent(&self, out: &mut Vec<u8>) {
        raw(out, self.0);
    }

    /// Append the string as [`str()`] would write its decoded text: the
    /// literal itself when its escapes are the ones serde_json writes
    /// (`\"` `\\` `\n` `\r` `\t` `\b` `\f`, the usual case), else decoded
    /// and escaped again. Output bytes then never depend on how the
    /// provider chose to escape.
    pub fn write(&self, out: &mut Vec<u8>) {
        if self.is_canonical() {
            raw(out, self.0);
        } else {
            str(out, &self.text());
        }
    }

    fn is_canonical(&self) -> bool {
        let b = self.0.as_bytes();
        let mut from = 1;
        // Hop from backslash to backslash (word-at-a-time search).
        while let Some(at) = memchr::memchr(b'\\', &b[from..]) {
            let i = from + at;
            match b.get(i + 1) {
                Some(b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'f') => from = i + 2,
                _ => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_serde_json_does() {
        let s = "a\"b\\c\nd\te\u{1}f/é😀\u{7f}";
        let mut out = Vec::new();
        str(&mut out, s);
        assert_eq!(out, serde_json::to_vec(s).unwrap());
    }

    #[test]
    fn raw_strings_decode_only_when_escaped() {
        let plain: &RawValue = serde_json::from_str(r#""hello""#).unwrap();
        let r = RawStr::new(plain).unwrap();
        assert!(matches!(r.text(), std::borrow::Cow::Borrowed("hello")));
        let esc: &RawValue = serde_json::from_str(r#""a\nb\u00e9""#).unwrap();
        assert_eq!(RawStr::new(esc).unwrap().text(), "a\nbé");
        let empty: &RawValue = serde_json::from_str(r#""""#).unwrap();
        assert!(RawStr::new(empty).unwrap().is_empty());
        let num: &RawValue = serde_json::from_str("5").unwrap();
        assert!(RawStr::new(num).is_none());
    }

    #[test]
    fn canonical_writes_match_serde_json() {
        for lit in [
            r#""plain é""#,
            r#""a\nb\"c\\d\te""#,
            r#""\u00e9\/x""#,
            r#""\u001f\b\f\r""#,
            r#""\\u00e9""#,
            r#""😀 \ud83d\ude00""#,
        ] {
            let raw: &RawValue = serde_json::from_str(lit).unwrap();
            let r = RawStr::new(raw).unwrap();
            let mut out = Vec::new();
            r.write(&mut out);
            let decoded: String = serde_json::from_str(lit).unwrap();
            assert_eq!(out, serde_json::to_vec(&decoded).unwrap(), "{lit}");
        }
    }
}
