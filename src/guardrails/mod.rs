//! Guardrails: content checks on the exchange. Today the built-in content
//! filter (LiteLLM's `litellm_content_filter`): prebuilt patterns
//! ([`detect`]) and keywords, each blocking or masking, on the request's
//! messages before any provider sees them (`pre_call`). The configuration
//! is read by [`spec`] (from `guardrails:`); the hook point that runs it is
//! `crate::pipeline::hooks` (`request_accepted`).

pub mod detect;
pub mod spec;

use spec::{FilterAction, GuardrailSpec, Matcher};

/// A blocking match: what was found (never the matched text itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub what: String,
}

/// Check one text against a guardrail: `Ok(None)` passes unchanged,
/// `Ok(Some(masked))` is the text with its masked spans replaced.
pub fn check_text(spec: &GuardrailSpec, text: &str) -> Result<Option<String>, Blocked> {
    let mut masks: Vec<(usize, usize, String)> = Vec::new();
    for rule in &spec.rules {
        let (spans, what, tag) = match &rule.matcher {
            Matcher::Prebuilt(p) => (
                p.find(text),
                format!("{} pattern detected", p.name()),
                spec.pattern_redaction_format
                    .replace("{pattern_name}", &p.name().to_ascii_uppercase()),
            ),
            Matcher::Keyword(k) => (
                keyword_spans(text, k),
                "blocked keyword detected".to_string(),
                spec.keyword_redaction_tag.clone(),
            ),
        };
        if spans.is_empty() {
            continue;
        }
        match rule.action {
            FilterAction::Block => return Err(Blocked { what }),
            FilterAction::Mask => masks.extend(spans.into_iter().map(|(s, e)| (s, e, tag.clone()))),
        }
    }
    if masks.is_empty() {
        return Ok(None);
    }
    // Earliest first; of overlapping spans the earlier (then longer) wins.
    masks.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e, tag) in masks {
        if s < at {
            continue;
        }
        out.push_str(&text[at..s]);
        out.push_str(&tag);
        at = e;
    }
    out.push_str(&text[at..]);
    Ok(Some(out))
}

/// Case-insensitive occurrences of `keyword` (lower case) at word boundaries.
fn keyword_spans(text: &str, keyword: &str) -> Vec<(usize, usize)> {
    let (t, k) = (text.as_bytes(), keyword.as_bytes());
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    if k.is_empty() || k.len() > t.len() {
        return out;
    }
    let mut i = 0;
    while i + k.len() <= t.len() {
        let hit = t[i..i + k.len()].eq_ignore_ascii_case(k)
            && (i == 0 || !word(t[i - 1]))
            && (i + k.len() == t.len() || !word(t[i + k.len()]))
            && text.is_char_boundary(i)
            && text.is_char_boundary(i + k.len());
        if hit {
            out.push((i, i + k.len()));
            i += k.len();
        } else {
            i += 1;
        }
    }
    out
}
