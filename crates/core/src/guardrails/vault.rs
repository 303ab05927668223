//! `output_parse_pii`: masked request values given back in the answer.
//!
//! When a masking guardrail has `output_parse_pii: true`, each value it
//! masks in the request is replaced by a numbered token (`<EMAIL_ADDRESS_1>`
//! for Presidio, `[EMAIL_REDACTED_1]` for the content filter's default
//! tag) and remembered here, for this request only. The provider sees the
//! tokens; where the model writes one back, the client gets its own value
//! again ([`Vault::unmask`]), in whole answers and in streams (the output
//! guard holds a token cut across chunks until it is whole).
//!
//! LiteLLM numbers the tokens per message, so two messages that each hold
//! an e-mail both get `<EMAIL_ADDRESS_1>` and the second value overwrites
//! the first; here the numbers run over the whole request and one value
//! keeps one token.

/// The tokens of one request and the values they stand for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vault {
    /// (token, original value), in the order given out.
    entries: Vec<(String, String)>,
}

impl Vault {
    /// The token for `original`, masked with `tag`: the same token for a
    /// value seen before, else `tag` numbered (`<EMAIL_ADDRESS>` →
    /// `<EMAIL_ADDRESS_3>`).
    pub fn token(&mut self, tag: &str, original: &str) -> String {
        if let Some((t, _)) = self
            .entries
            .iter()
            .find(|(t, o)| o == original && t.starts_with(numbered_stem(tag)))
        {
            return t.clone();
        }
        let n = self.entries.len() + 1;
        let token = numbered(tag, n);
        self.entries.push((token.clone(), original.to_string()));
        token
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `text` with every token replaced by its value. At the `end` of an
    /// answer, a token the model was cut off in the middle of (`max_tokens`)
    /// is restored too when at least half of it (up to 20 bytes) was
    /// written, as LiteLLM does.
    pub fn unmask(&self, text: &str, end: bool) -> String {
        self.unmask_with(text, end, false)
    }

    /// [`Vault::unmask`] inside a JSON text (a tool call's `arguments`):
    /// each value goes in JSON-escaped, so the arguments stay valid JSON.
    pub fn unmask_json(&self, text: &str) -> String {
        self.unmask_with(text, false, true)
    }

    fn unmask_with(&self, text: &str, end: bool, json: bool) -> String {
        if self.entries.is_empty() {
            return text.to_string();
        }
        // One pass, byte by byte (tokens are ASCII-bracketed, so a match
        // starts and ends on character boundaries); the longest token at a
        // place wins, so `<X_12>` is never read as `<X_1>`.
        let b = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let (mut at, mut copied) = (0, 0);
        while at < b.len() {
            match self.token_at(b, at) {
                Some((len, value)) => {
                    out.push_str(&text[copied..at]);
                    if json {
                        out.push_str(&escaped(value));
                    } else {
                        out.push_str(value);
                    }
                    at += len;
                    copied = at;
                }
                None => at += 1,
            }
        }
        out.push_str(&text[copied..]);
        if end {
            if let Some((cut, value)) = self.cut_token(&out) {
                out.truncate(cut);
                out.push_str(value);
            }
        }
        out
    }

    /// The longest token that starts at byte `at` of `b`: its length and value.
    fn token_at<'a>(&'a self, b: &[u8], at: usize) -> Option<(usize, &'a str)> {
        let mut best: Option<(usize, &str)> = None;
        for (token, value) in &self.entries {
            let t = token.as_bytes();
            if b[at..].starts_with(t) && best.is_none_or(|(len, _)| t.len() > len) {
                best = Some((t.len(), value));
            }
        }
        best
    }

    /// Where a token starts that `text` ends inside of, and its value.
    fn cut_token<'a>(&'a self, text: &str) -> Option<(usize, &'a str)> {
        for (token, value) in &self.entries {
            let least = (token.len() / 2).clamp(1, 20);
            for len in (least..token.len()).rev() {
                if len <= text.len()
                    && text.is_char_boundary(text.len() - len)
                    && token
                        .as_bytes()
                        .starts_with(&text.as_bytes()[text.len() - len..])
                {
                    return Some((text.len() - len, value));
                }
            }
        }
        None
    }

    /// `cut` moved back so that no token is split by it: not inside a whole
    /// token, and not after the start of one `text` ends with.
    pub fn safe_cut(&self, text: &str, mut cut: usize) -> usize {
        let b = text.as_bytes();
        let mut at = 0;
        while at < cut.min(b.len()) {
            match self.token_at(b, at) {
                Some((len, _)) if at + len > cut => cut = at,
                Some((len, _)) => at += len,
                None => at += 1,
            }
        }
        cut.min(text.len() - self.partial_tail(text))
    }

    /// How many bytes at the end of `text` may be the start of a token
    /// (held back in a stream until the next piece tells).
    pub fn partial_tail(&self, text: &str) -> usize {
        let b = text.as_bytes();
        let longest = self.entries.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
        for len in (1..longest.min(b.len() + 1)).rev() {
            let tail = &b[b.len() - len..];
            if self
                .entries
                .iter()
                .any(|(t, _)| t.len() > len && t.as_bytes().starts_with(tail))
            {
                return len;
            }
        }
        0
    }
}

/// A value as it is written inside a JSON string (no quotes).
fn escaped(value: &str) -> String {
    let quoted = serde_json::Value::String(value.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// `tag` without its closing bracket, where the number goes.
fn numbered_stem(tag: &str) -> &str {
    match tag.as_bytes().last() {
        Some(b'>' | b']' | b')' | b'}') => &tag[..tag.len() - 1],
        _ => tag,
    }
}

/// `<EMAIL_ADDRESS>` → `<EMAIL_ADDRESS_n>`; a tag without a closing
/// bracket gets `_n` at its end.
fn numbered(tag: &str, n: usize) -> String {
    let stem = numbered_stem(tag);
    format!("{stem}_{n}{}", &tag[stem.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_run_over_the_request_and_a_value_keeps_its_token() {
        let mut v = Vault::default();
        assert_eq!(v.token("<EMAIL_ADDRESS>", "a@x.io"), "<EMAIL_ADDRESS_1>");
        assert_eq!(v.token("[PHONE_REDACTED]", "555"), "[PHONE_REDACTED_2]");
        assert_eq!(v.token("<EMAIL_ADDRESS>", "a@x.io"), "<EMAIL_ADDRESS_1>");
        assert_eq!(v.token("<EMAIL_ADDRESS>", "b@x.io"), "<EMAIL_ADDRESS_3>");
        assert_eq!(v.token("SECRET", "k"), "SECRET_4");
    }

    #[test]
    fn unmasks_whole_and_cut_tokens() {
        let mut v = Vault::default();
        for i in 1..=12 {
            v.token("<E>", &format!("v{i}"));
        }
        assert_eq!(v.unmask("a <E_1> b <E_12>.", false), "a v1 b v12.");
        assert_eq!(v.unmask("cut <E_1", true), "cut v1");
        assert_eq!(v.unmask("cut <E_1", false), "cut <E_1");
        assert_eq!(v.unmask("no tokens", true), "no tokens");
        let mut q = Vault::default();
        q.token("<P>", "say \"hi\"");
        assert_eq!(q.unmask_json(r#"{"a":"<P_1>"}"#), r#"{"a":"say \"hi\""}"#);
    }

    #[test]
    fn holds_what_may_start_a_token() {
        let mut v = Vault::default();
        v.token("<EMAIL_ADDRESS>", "a@x.io");
        assert_eq!(v.partial_tail("write to <EMAIL_"), 7);
        assert_eq!(v.partial_tail("write to <"), 1);
        assert_eq!(v.partial_tail("write to <EMAIL_ADDRESS_1>"), 0);
        assert_eq!(v.partial_tail("plain"), 0);
        assert_eq!(Vault::default().partial_tail("<"), 0);
        let t = "to <EMAIL_ADDRESS_1> ok";
        assert_eq!(v.safe_cut(t, 8), 3);
        assert_eq!(v.safe_cut(t, t.len()), t.len());
        assert_eq!(v.safe_cut("to <EMA", 7), 3);
    }
}
