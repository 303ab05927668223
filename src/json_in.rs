//! Reading JSON text that has already been checked, without building
//! anything: iterate an object's members or an array's elements as slices
//! of the text, and look at a value's type by its first byte.
//!
//! Why not serde structs: the hot translators read a handful of fields out
//! of large documents. A derived `Deserialize` per input shape cost as much
//! code as the rest of a translator (every struct, field type and
//! deserializer combination is compiled separately), and a second serde pass
//! re-checks text that was checked when the request arrived. Here one small,
//! non-generic scanner serves every shape, and skipping a string is a
//! word-at-a-time search for the next quote or backslash.
//!
//! The text must be valid JSON (checked by serde_json first: the request
//! indexer, or [`check`] for provider data). On anything else the functions
//! still never panic and never loop: they end early or return `None`.

use std::borrow::Cow;

use crate::json_out::RawStr;

/// Check that `text` is one valid JSON value (serde_json's parser, nothing
/// built). The error is serde_json's, with its position.
pub fn check(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).map(|_| ())
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// The end of the string literal opening at `b[i]` (a quote).
fn skip_string(b: &[u8], i: usize) -> usize {
    // Keys and short values end within a few bytes: a plain loop is cheaper
    // there than setting up a word-at-a-time search.
    let mut j = i + 1;
    let short_end = (j + 24).min(b.len());
    while j < short_end {
        match b[j] {
            b'"' => return j + 1,
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
    while let Some(k) = b
        .get(j..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        let p = j + k;
        if b[p] == b'\\' {
            j = p + 2;
        } else {
            return p + 1;
        }
    }
    b.len()
}

/// The end of the value starting at `b[i]`.
fn skip_value(b: &[u8], mut i: usize) -> usize {
    match b.get(i) {
        Some(b'"') => skip_string(b, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            while let Some(&c) = b.get(i) {
                match c {
                    b'"' => {
                        i = skip_string(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        Some(_) => {
            while !matches!(
                b.get(i),
                None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            ) {
                i += 1;
            }
            i
        }
        None => i,
    }
}

/// A member's key: its literal, compared decoded.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a>(&'a str);

impl<'a> Key<'a> {
    /// Whether the key is `name`.
    pub fn is(&self, name: &str) -> bool {
        let inner = self.0.get(1..self.0.len().saturating_sub(1)).unwrap_or("");
        if inner.len() == name.len() && inner == name {
            return true;
        }
        inner.contains('\\') && self.text() == name
    }

    /// The key's text (borrowed unless it has escapes).
    pub fn text(&self) -> Cow<'a, str> {
        let inner = self.0.get(1..self.0.len().saturating_sub(1)).unwrap_or("");
        if !inner.as_bytes().contains(&b'\\') {
            return Cow::Borrowed(inner);
        }
        match RawStr::from_json(self.0) {
            Some(s) => s.text(),
            None => Cow::Borrowed(""),
        }
    }
}

/// The members of an object, in order: key and value text.
///
/// Besides iterating, a walk can stop at a value and descend into it
/// ([`Members::key`], [`Members::value_start`], then [`Members::resume`] at
/// the end of the nested walk), so a document is read in one pass instead of
/// skipping a nested object and then walking it again.
pub struct Members<'a> {
    text: &'a str,
    /// The next byte to read: `{`, `,` or `}` between members, or the
    /// value after [`Members::key`].
    at: usize,
    /// Where the object ended (after its `}`), once the walk got there.
    end: Option<usize>,
}

/// Iterate the members of `obj` (no members when it is not an object).
pub fn members(obj: &str) -> Members<'_> {
    members_at(obj, 0)
}

/// Iterate the members of the object starting at `text[at..]`.
pub fn members_at(text: &str, at: usize) -> Members<'_> {
    let b = text.as_bytes();
    let at = skip_ws(b, at);
    let at = if b.get(at) == Some(&b'{') {
        at
    } else {
        b.len()
    };
    Members {
        text,
        at,
        end: None,
    }
}

impl<'a> Members<'a> {
    /// The next key; the walk then stands at its value, which must be
    /// consumed with [`Members::value`] or walked and [`Members::resume`]d.
    pub fn key(&mut self) -> Option<Key<'a>> {
        let b = self.text.as_bytes();
        let mut i = skip_ws(b, self.at);
        if !matches!(b.get(i), Some(b'{' | b',')) {
            self.stop(i);
            return None;
        }
        i = skip_ws(b, i + 1);
        if b.get(i) != Some(&b'"') {
            self.stop(i);
            return None;
        }
        let key_end = skip_string(b, i);
        let key = self.text.get(i..key_end);
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') || key.is_none() {
            self.stop(b.len());
            return None;
        }
        self.at = skip_ws(b, i + 1);
        key.map(Key)
    }

    /// The value the walk stands at (skipped).
    pub fn value(&mut self) -> &'a str {
        let end = skip_value(self.text.as_bytes(), self.at);
        let v = self.text.get(self.at..end).unwrap_or("");
        self.at = end.max(self.at + 1);
        v
    }

    /// Where the value the walk stands at starts in the text.
    pub fn value_start(&self) -> usize {
        self.at
    }

    /// Continue after a value walked by the caller, which ended at `end`.
    pub fn resume(&mut self, end: usize) {
        self.at = end.max(self.at + 1);
    }

    /// Where the object ended (after its `}`), once every member was read.
    pub fn end(&self) -> usize {
        self.end.unwrap_or(self.text.len())
    }

    fn stop(&mut self, i: usize) {
        let b = self.text.as_bytes();
        self.end = Some(if b.get(i) == Some(&b'}') {
            i + 1
        } else {
            b.len()
        });
        self.at = b.len();
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = (Key<'a>, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let key = self.key()?;
        Some((key, self.value()))
    }
}

/// The elements of an array, in order; like [`Members`], a walk can descend
/// into an element ([`Elements::start`], then [`Elements::resume`]).
pub struct Elements<'a> {
    text: &'a str,
    at: usize,
}

/// Iterate the elements of `arr` (none when it is not an array).
pub fn elements(arr: &str) -> Elements<'_> {
    let b = arr.as_bytes();
    let at = skip_ws(b, 0);
    let at = if b.get(at) == Some(&b'[') {
        at
    } else {
        b.len()
    };
    Elements { text: arr, at }
}

impl<'a> Elements<'a> {
    /// Where the next element starts; the caller walks it and
    /// [`Elements::resume`]s at its end.
    pub fn start(&mut self) -> Option<usize> {
        let b = self.text.as_bytes();
        let i = skip_ws(b, self.at);
        if !matches!(b.get(i), Some(b'[' | b',')) {
            self.at = b.len();
            return None;
        }
        let i = skip_ws(b, i + 1);
        if matches!(b.get(i), None | Some(b']')) {
            self.at = b.len();
            return None;
        }
        self.at = i;
        Some(i)
    }

    /// Continue after an element walked by the caller, which ended at `end`.
    pub fn resume(&mut self, end: usize) {
        self.at = end.max(self.at + 1);
    }

    /// The whole text the elements are in.
    pub fn text(&self) -> &'a str {
        self.text
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let i = self.start()?;
        let end = skip_value(self.text.as_bytes(), i);
        self.at = end.max(i + 1);
        self.text.get(i..end)
    }
}

/// Member `key` of `obj` (the last one, as a JSON object's last duplicate wins).
pub fn get<'a>(obj: &'a str, key: &str) -> Option<&'a str> {
    members(obj)
        .filter(|(k, _)| k.is(key))
        .last()
        .map(|(_, v)| v)
}

/// A value that is not `null`.
pub fn present(value: Option<&str>) -> Option<&str> {
    value.filter(|v| *v != "null")
}

/// A string value.
pub fn string(value: Option<&str>) -> Option<RawStr<'_>> {
    value.and_then(RawStr::from_json)
}

/// A non-negative integer value.
pub fn u64(value: Option<&str>) -> Option<u64> {
    value.and_then(|v| v.parse().ok())
}

/// Whether a value is an object.
pub fn is_object(value: &str) -> bool {
    value.starts_with('{')
}

/// Whether a value is an array.
pub fn is_array(value: &str) -> bool {
    value.starts_with('[')
}

/// Whether a value is a number.
pub fn is_number(value: &str) -> bool {
    matches!(value.as_bytes().first(), Some(b'-' | b'0'..=b'9'))
}

/// What a value is, for error messages ("invalid type: integer").
pub fn type_name(value: &str) -> &'static str {
    match value.as_bytes().first() {
        Some(b'"') => "string",
        Some(b'{') => "map",
        Some(b'[') => "sequence",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#" { "a" : 1, "b\u0022c": "x\"}y\\", "n": null, "o": {"k": [1, {"z": "]"}], "e": []},
        "arr": [ "s" , -2.5e3, true, {"q": "\\"}, [] ] , "a": 2 } "#;

    #[test]
    fn walks_members_and_elements() {
        let keys: Vec<String> = members(DOC).map(|(k, _)| k.text().into_owned()).collect();
        assert_eq!(keys, ["a", "b\"c", "n", "o", "arr", "a"]);
        assert_eq!(get(DOC, "a"), Some("2"), "the last duplicate wins");
        assert_eq!(get(DOC, "b\"c"), Some(r#""x\"}y\\""#));
        assert_eq!(present(get(DOC, "n")), None);
        let o = get(DOC, "o").unwrap();
        assert_eq!(get(o, "k"), Some(r#"[1, {"z": "]"}]"#));
        assert_eq!(get(o, "e"), Some("[]"));
        let items: Vec<&str> = elements(get(DOC, "arr").unwrap()).collect();
        assert_eq!(items, [r#""s""#, "-2.5e3", "true", r#"{"q": "\\"}"#, "[]"]);
        assert_eq!(elements("[]").count(), 0);
        assert_eq!(elements(" [ ] ").count(), 0);
        assert_eq!(members("{}").count(), 0);
        assert_eq!(members("[1]").count(), 0);
        assert_eq!(elements("{}").count(), 0);
        assert_eq!(u64(get(DOC, "a")), Some(2));
        assert_eq!(string(get(DOC, "arr")).map(|s| s.literal()), None);
    }

    #[test]
    fn walks_into_nested_values_in_one_pass() {
        let text = r#"[{"a": {"x": 1, "y": "}"}, "b": 2}, 3]"#;
        let mut items = elements(text);
        let start = items.start().unwrap();
        let mut m = members_at(text, start);
        assert!(m.key().unwrap().is("a"));
        let mut inner = members_at(text, m.value_start());
        let seen: Vec<_> = (&mut inner)
            .map(|(k, v)| (k.text().into_owned(), v))
            .collect();
        assert_eq!(seen, [("x".to_string(), "1"), ("y".to_string(), r#""}""#)]);
        m.resume(inner.end());
        assert!(m.key().unwrap().is("b"));
        assert_eq!(m.value(), "2");
        assert!(m.key().is_none());
        items.resume(m.end());
        assert_eq!(items.next(), Some("3"));
        assert_eq!(items.next(), None);
    }

    #[test]
    fn broken_text_ends_early_without_panicking() {
        for text in [
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\": \"x",
            "[1,",
            "[\"",
            "{\"a\" 1}",
            "{,}",
            "[,]",
            "{\"a\": [}",
            "]",
            "}",
            "",
            "\"\\",
            "{\"\\",
            "[{]",
        ] {
            let _ = members(text).count();
            let _ = elements(text).count();
            let _ = get(text, "a");
        }
    }
}
