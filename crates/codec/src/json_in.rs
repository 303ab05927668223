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
//! word-at-a-time search for the next quote or backslash (sixteen bytes at a
//! time with wasm SIMD, which the filter is built with: `.cargo/config.toml`).
//!
//! The text must be valid JSON (checked by serde_json first: the request
//! indexer, or [`check`] for provider data). On anything else the functions
//! still never panic and never loop: they end early or return `None`.

use std::borrow::Cow;
use std::ops::Range;

use crate::json_out::RawStr;

/// Check that `text` is one valid JSON value. [`valid`] decides; only a
/// refused text goes through serde_json, for its message (with position).
pub fn check(text: &str) -> Result<(), serde_json::Error> {
    if valid(text) {
        return Ok(());
    }
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Err(e) => Err(e),
        // Only nesting deeper than [`MAX_DEPTH`] gets here.
        Ok(_) => Err(serde::de::Error::custom("recursion limit exceeded")),
    }
}

/// [`check`], calling `member(key, value)` with each top-level member of
/// an object as it is checked (for other values, none): a document is
/// checked and its top level read in one pass. On `Err`, what `member` saw
/// must be discarded.
pub fn check_members<'a>(
    text: &'a str,
    member: &mut dyn FnMut(Key<'a>, &'a str),
) -> Result<(), serde_json::Error> {
    let mut take = |key: Range<usize>, value: Range<usize>| {
        if let (Some(k), Some(v)) = (text.get(key), text.get(value)) {
            member(Key(k), v);
        }
    };
    if valid_object_with(text, &mut take) {
        return Ok(());
    }
    check(text)
}

/// The deepest nesting accepted: what serde_json parses into a `Value`
/// (its recursion limit), so documents the gateway used to parse whole are
/// still the ones it accepts.
const MAX_DEPTH: usize = 127;

/// Whether `text` is exactly one JSON value (RFC 8259) with optional
/// whitespace around it, nested at most `MAX_DEPTH` deep: what serde_json
/// accepts when it skips a value (so `\u` escapes are checked for four hex
/// digits, not for surrogate pairs).
///
/// One pass, nothing allocated: the text of strings is skipped eight bytes
/// at a time. For a small document this is several times cheaper than
/// serde_json's generic skipping; on large ones about as fast.
pub fn valid(text: &str) -> bool {
    valid_object_with(text, &mut |_, _| {})
}

/// [`valid`], and for a document that is an object, `member(key, value)`
/// with the byte ranges of each top-level member's key literal and value as
/// they are checked: a request is checked and indexed in the same pass.
pub fn valid_object_with(text: &str, member: &mut dyn FnMut(Range<usize>, Range<usize>)) -> bool {
    let b = text.as_bytes();
    // Open containers: true for an object. A fixed stack: deeper is refused.
    let mut stack = [false; MAX_DEPTH];
    let mut depth = 0usize;
    let mut i = skip_ws(b, 0);
    // The top-level member being checked: its key, and where its value starts.
    let (mut top_key, mut top_value) = (0..0, 0);
    'value: loop {
        // Here a value must start.
        if depth == 1 {
            top_value = i;
        }
        match b.get(i) {
            Some(b'{') | Some(b'[') => {
                if depth == MAX_DEPTH {
                    return false;
                }
                let object = b[i] == b'{';
                stack[depth] = object;
                depth += 1;
                i = skip_ws(b, i + 1);
                let close = if object { b'}' } else { b']' };
                if b.get(i) == Some(&close) {
                    depth -= 1;
                    i += 1;
                } else {
                    if object {
                        match key(b, i) {
                            Some((k, next)) => {
                                if depth == 1 {
                                    top_key = k;
                                }
                                i = next;
                            }
                            None => return false,
                        }
                    }
                    continue 'value;
                }
            }
            Some(b'"') => match string_end(b, i) {
                Some(end) => i = end,
                None => return false,
            },
            Some(b't') if b[i..].starts_with(b"true") => i += 4,
            Some(b'f') if b[i..].starts_with(b"false") => i += 5,
            Some(b'n') if b[i..].starts_with(b"null") => i += 4,
            Some(b'-' | b'0'..=b'9') => match number_end(b, i) {
                Some(end) => i = end,
                None => return false,
            },
            _ => return false,
        }
        // A value ended at `i`: close containers, or go on to the next member.
        loop {
            if depth == 1 && stack[0] {
                member(top_key.clone(), top_value..i);
            }
            i = skip_ws(b, i);
            if depth == 0 {
                return i == b.len();
            }
            let object = stack[depth - 1];
            match b.get(i) {
                Some(b',') => {
                    i = skip_ws(b, i + 1);
                    if object {
                        match key(b, i) {
                            Some((k, next)) => {
                                if depth == 1 {
                                    top_key = k;
                                }
                                i = next;
                            }
                            None => return false,
                        }
                    }
                    continue 'value;
                }
                Some(b'}') if object => {
                    depth -= 1;
                    i += 1;
                }
                Some(b']') if !object => {
                    depth -= 1;
                    i += 1;
                }
                _ => return false,
            }
        }
    }
}

/// A member's key and colon at `b[i]`: the key literal's range and where
/// the value starts.
fn key(b: &[u8], i: usize) -> Option<(Range<usize>, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let end = string_end(b, i)?;
    let colon = skip_ws(b, end);
    (b.get(colon) == Some(&b':')).then(|| (i..end, skip_ws(b, colon + 1)))
}

/// The end of the valid string literal opening at `b[i]`, if it is one: no
/// control characters, only JSON escapes.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j = plain_run::<true>(b, j);
        // Eight bytes at a time to the next quote, backslash or control byte.
        while let Some(chunk) = b.get(j..j + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            let ctrl = v.wrapping_sub(ONES * 0x20) & !v & HIGH;
            let hit = ctrl | quote_or_backslash(chunk);
            if hit != 0 {
                j += (hit.trailing_zeros() / 8) as usize;
                break;
            }
            j += 8;
        }
        match b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => match b.get(j + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                b'u' => {
                    let hex = b.get(j + 2..j + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    j += 6;
                }
                _ => return None,
            },
            c if *c < 0x20 => return None,
            _ => j += 1,
        }
    }
}

/// The end of the valid number starting at `b[i]`, if it is one.
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |b: &[u8], mut i: usize| {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match b.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(b, i)?,
        _ => return None,
    };
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1)?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(b, i)?;
    }
    Some(i)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// The end of the string literal opening at `b[i]` (a quote), in checked
/// text: eight bytes at a time to the next quote; a quote preceded by an
/// odd number of backslashes is escaped and skipped. (Escapes such as `\n`
/// do not interrupt the search.)
fn skip_string(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    loop {
        j = plain_run::<false>(b, j);
        while let Some(chunk) = b.get(j..j + 8) {
            let hit = quote(chunk);
            if hit != 0 {
                j += (hit.trailing_zeros() / 8) as usize;
                break;
            }
            j += 8;
        }
        match b.get(j) {
            Some(b'"') => {
                let backslashes = b[i + 1..j]
                    .iter()
                    .rev()
                    .take_while(|&&c| c == b'\\')
                    .count();
                if backslashes % 2 == 0 {
                    return j + 1;
                }
                j += 1;
            }
            Some(_) => j += 1,
            None => return b.len(),
        }
    }
}

/// Where the run of string bytes at `b[j..]` that need no attention ends,
/// sixteen bytes at a time with wasm SIMD: the first quote, backslash (with
/// `CHECKED`, also the first control byte), or the last whole block. The
/// eight-byte loops after it finish the search; without SIMD (native
/// builds, a wasm build without `simd128`) this returns `j` and they do it all.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn plain_run<const CHECKED: bool>(b: &[u8], mut j: usize) -> usize {
    use core::arch::wasm32::{
        u8x16_bitmask, u8x16_eq, u8x16_lt, u8x16_splat, v128, v128_any_true, v128_load, v128_or,
    };
    let quote = u8x16_splat(b'"');
    let backslash = u8x16_splat(b'\\');
    let space = u8x16_splat(0x20);
    while j + 16 <= b.len() {
        // SAFETY: `j + 16 <= b.len()`, and `v128_load` allows any alignment.
        let v = unsafe { v128_load(b.as_ptr().add(j).cast::<v128>()) };
        let mut hit = u8x16_eq(v, quote);
        if CHECKED {
            hit = v128_or(v128_or(hit, u8x16_eq(v, backslash)), u8x16_lt(v, space));
        }
        if v128_any_true(hit) {
            return j + u8x16_bitmask(hit).trailing_zeros() as usize;
        }
        j += 16;
    }
    j
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn plain_run<const CHECKED: bool>(_b: &[u8], j: usize) -> usize {
    j
}

/// The high bit of each byte of `chunk` (8 bytes) that is a quote.
fn quote(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    let q = u64::from_le_bytes(word) ^ (ONES * u64::from(b'"'));
    q.wrapping_sub(ONES) & !q & HIGH
}

const ONES: u64 = u64::MAX / 255;
const HIGH: u64 = ONES << 7;

/// The high bit of each byte of `chunk` (8 bytes) that is a quote or a
/// backslash; lower bytes first, so the first match is the lowest bit set.
fn quote_or_backslash(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    let v = u64::from_le_bytes(word);
    let q = v ^ (ONES * u64::from(b'"'));
    let bs = v ^ (ONES * u64::from(b'\\'));
    (q.wrapping_sub(ONES) & !q | bs.wrapping_sub(ONES) & !bs) & HIGH
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
    /// The key's literal, quotes included.
    pub fn literal(&self) -> &'a str {
        self.0
    }

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

/// Member `key` of `obj`, the first one: for documents the gateway wrote
/// itself (no duplicates), the walk stops there instead of reading on.
pub fn first<'a>(obj: &'a str, key: &str) -> Option<&'a str> {
    members(obj).find(|(k, _)| k.is(key)).map(|(_, v)| v)
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

/// Add the string values of member `needle` (quoted) found in `bytes`
/// (OpenAI chunks as sent; `null`s are skipped).
pub fn string_values(bytes: &[u8], needle: &[u8], out: &mut Vec<String>) {
    let mut at = 0;
    while let Some(pos) = bytes
        .get(at..)
        .and_then(|b| b.windows(needle.len()).position(|w| w == needle))
    {
        let mut i = at + pos + needle.len();
        while matches!(bytes.get(i), Some(b' ' | b':')) {
            i += 1;
        }
        if bytes.get(i) == Some(&b'"') {
            let start = i + 1;
            if let Some(len) = bytes
                .get(start..)
                .and_then(|b| b.iter().position(|&c| c == b'"'))
            {
                if let Some(Ok(s)) = bytes.get(start..start + len).map(std::str::from_utf8) {
                    out.push(s.to_string());
                }
            }
        }
        at = i;
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
        let escapes = r#"["\\", "\"", "a\\\"b\\", "0123456789\\\\\"x"]"#;
        let items: Vec<&str> = elements(escapes).collect();
        assert_eq!(
            items,
            [
                r#""\\""#,
                r#""\"""#,
                r#""a\\\"b\\""#,
                r#""0123456789\\\\\"x""#
            ]
        );
        assert!(items.iter().all(|i| valid(i)));
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

    /// Long strings with one special byte at every offset across several
    /// 16- and 8-byte blocks: the wasm SIMD scan (`plain_run`, run by
    /// `make unit` as wasm in V8), the eight-byte loops and the byte-wise
    /// tail must all agree with serde_json, and walking must find the same
    /// values serde_json parses.
    #[test]
    fn long_strings_agree_at_every_offset() {
        let specials: [&str; 9] = [
            "\\\"", "\\\\", "\\n", "\\u00e9", "\u{1}", "\t", "é", "\\x", "\"",
        ];
        for special in specials {
            for at in 0..48 {
                for tail in [0, 1, 7, 8, 15, 16, 17, 40] {
                    let text = format!("\"{}{special}{}\"", "a".repeat(at), "b".repeat(tail));
                    assert_eq!(valid(&text), serde_accepts(&text), "{text:?}");
                    let doc = format!("{{\"k\":{text},\"after\":[{text},1]}}");
                    assert_eq!(valid(&doc), serde_accepts(&doc), "{doc:?}");
                    if !serde_accepts(&doc) {
                        continue;
                    }
                    let want: serde_json::Value = serde_json::from_str(&doc).unwrap();
                    let k = get(&doc, "k").unwrap();
                    assert_eq!(k, text);
                    let after: Vec<&str> = elements(get(&doc, "after").unwrap()).collect();
                    assert_eq!(after, [text.as_str(), "1"], "{doc:?}");
                    let got: serde_json::Value = serde_json::from_str(k).unwrap();
                    assert_eq!(got, want["k"]);
                }
            }
        }
        // An unterminated string of every length ends the walk without panicking.
        for n in 0..40 {
            let text = format!("\"{}", "z".repeat(n));
            assert!(!valid(&text));
            assert_eq!(skip_string(text.as_bytes(), 0), text.len());
        }
    }

    fn serde_accepts(text: &str) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    }

    #[test]
    fn validity_agrees_with_serde_json() {
        for text in [
            "0",
            "-0",
            "1.5e-3",
            "1E+2",
            "-",
            "01",
            "1.",
            ".5",
            "+1",
            "1e",
            "1e+",
            "2.e3",
            "\"a\"",
            "\"\\u00e9\\n\"",
            "\"\\ud800\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\u{1}\"",
            "\"tab\there\"",
            "true",
            "tru",
            "nul",
            "null ",
            " [] ",
            "[1,]",
            "[,1]",
            "{}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "{\"a\":{\"b\":[true,false,null]}}",
            "[[[]]]",
            "[1 2]",
            "{\"a\":1}{",
            "\"unterminated",
            "[\"é😀\", \"0123456789abcdef\\\"x\"]",
            "",
            "  ",
            "[]]",
            "{\"a\":[}",
            "\"\\\"",
            "\"long string without escapes at all........\"",
        ] {
            assert_eq!(valid(text), serde_accepts(text), "{text:?}");
        }
        // Nesting: as deep as serde_json parses into a `Value`.
        let nested = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
        for d in [126, 127, 128, 1000] {
            let value_ok = serde_json::from_str::<serde_json::Value>(&nested(d)).is_ok();
            assert_eq!(valid(&nested(d)), value_ok, "depth {d}");
        }
        assert!(check(&nested(1000)).is_err());
    }

    proptest::proptest! {
        /// Random edits of valid documents: accepted exactly when serde_json accepts.
        #[test]
        fn validity_agrees_with_serde_json_on_edits(
            doc in 0usize..4,
            at in 0usize..400,
            len in 0usize..3,
            insert in "[ -~]{0,3}|[\\x00-\\x1f]|\\\\u[0-9a-fA-FxX]{0,4}",
        ) {
            let docs = [
                DOC,
                r#"{"model":"m","messages":[{"role":"user","content":"hi \"there\"\n"}],"n":-1.5e3}"#,
                r#"[0, -0.5, 1e10, "a\u00e9b", {"k": [true, false, null, {}]}, []]"#,
                r#""0123456789abcdefghijklmnopqrstuvwxyz\\ \/ \t""#,
            ];
            let base = docs[doc];
            let mut at = at.min(base.len());
            while !base.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + len).min(base.len());
            while !base.is_char_boundary(end) {
                end -= 1;
            }
            let text = format!("{}{}{}", &base[..at], insert, &base[end.max(at)..]);
            proptest::prop_assert_eq!(valid(&text), serde_accepts(&text), "{:?}", text);
        }
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
