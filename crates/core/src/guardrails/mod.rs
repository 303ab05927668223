//! Guardrails: content checks on the exchange. Today the built-in content
//! filter (LiteLLM's `litellm_content_filter`): prebuilt patterns
//! ([`detect`]) and keywords, each blocking or masking, on the request's
//! messages before any provider sees them (`pre_call`). The configuration
//! is read by [`spec`] (from `guardrails:`); the hook point that runs it is
//! `crate::pipeline::hooks` (`request_accepted`).

pub mod detect;
pub mod external;
pub mod spec;

pub mod output;
pub mod regex;
pub mod vault;

use spec::{FilterAction, GuardrailSpec, Matcher};
use vault::Vault;

use crate::api::error::{ErrorKind, GatewayError};

/// A blocking match: what was found (never the matched text itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub what: String,
}

/// The 400 a blocking guardrail answers with: it names the guardrail and
/// what it found, never the matched text.
pub fn violation(guardrail: &str, what: &str) -> GatewayError {
    GatewayError::new(
        400,
        ErrorKind::InvalidRequest,
        format!("Content blocked by guardrail `{guardrail}`: {what}"),
    )
    .with_code("content_policy_violation")
}

/// One match of one rule in a text: its byte span and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub start: usize,
    pub end: usize,
    pub action: FilterAction,
    /// What was found, for a block's message (`email pattern detected`).
    pub what: String,
    /// The redaction tag, for a mask.
    pub tag: String,
}

/// Every match of the guardrail's rules in `text`, rule by rule.
pub fn hits(spec: &GuardrailSpec, text: &str) -> Vec<Hit> {
    let mut out = Vec::new();
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
            Matcher::Regex { name, re } => (
                re.find_all(text),
                format!("{name} pattern detected"),
                spec.pattern_redaction_format
                    .replace("{pattern_name}", &name.to_ascii_uppercase()),
            ),
        };
        out.extend(spans.into_iter().map(|(start, end)| Hit {
            start,
            end,
            action: rule.action,
            what: what.clone(),
            tag: tag.clone(),
        }));
    }
    out
}

/// Check one text against a guardrail: `Ok(None)` passes unchanged,
/// `Ok(Some(masked))` is the text with its masked spans replaced (by
/// numbered tokens kept in `vault`, when given: `output_parse_pii`).
pub fn check_text(
    spec: &GuardrailSpec,
    text: &str,
    vault: Option<&mut Vault>,
) -> Result<Option<String>, Blocked> {
    let found = hits(spec, text);
    if let Some(b) = found.iter().find(|h| h.action == FilterAction::Block) {
        return Err(Blocked {
            what: b.what.clone(),
        });
    }
    if found.is_empty() {
        return Ok(None);
    }
    Ok(Some(masked(text, found, vault)))
}

/// `text` with the spans of `masks` replaced by their tags (or, with a
/// `vault`, by numbered tokens it remembers). Earliest first; of
/// overlapping spans the earlier (then the longer) wins.
pub fn masked(text: &str, masks: Vec<Hit>, mut vault: Option<&mut Vault>) -> String {
    let masks = crate::sort::sorted_by(masks, &|a: &Hit, b: &Hit| {
        a.start.cmp(&b.start).then(b.end.cmp(&a.end)).is_lt()
    });
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for h in masks {
        if h.start < at {
            continue;
        }
        out.push_str(&text[at..h.start]);
        match vault.as_deref_mut() {
            Some(v) => out.push_str(&v.token(&h.tag, &text[h.start..h.end])),
            None => out.push_str(&h.tag),
        }
        at = h.end;
    }
    out.push_str(&text[at..]);
    out
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
