//! Reading the translated OpenAI stream the client is sent: where an event
//! ends, how much generated text it carries (mid-stream budget
//! enforcement), and whether it closed a whole answer with `[DONE]`.

/// Whether `out` (translated, LF-framed) ends the client's stream with
/// `[DONE]` after an answer: the event before it is not an error event
/// (a stream cut short ends with one, then `[DONE]`).
pub(super) fn ends_answered(out: &[u8]) -> bool {
    const DONE: &[u8] = b"data: [DONE]\n\n";
    let Some(before) = out.strip_suffix(DONE) else {
        return false;
    };
    let last = before
        .strip_suffix(b"\n\n")
        .map(|b| b.rsplit(|&c| c == b'\n').next().unwrap_or(b));
    !last.is_some_and(|l| l.starts_with(b"data: {\"error\""))
}

/// The end (exclusive) of the first complete `data: ...\n\n` event in
/// `bytes` (the translators' own output, always LF-framed).
pub(super) fn find_event_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

/// Bytes of generated text in one OpenAI chunk event: delta content,
/// reasoning content and tool-call arguments. The event is the
/// translator's own output (checked JSON, no duplicate keys), read with the
/// walker in one pass over each object: no `Value` per chunk.
pub(super) fn generated_text_bytes(event: &[u8]) -> usize {
    use crate::codec::json_in::{elements, first, members, string};
    let Some(data) = event.strip_prefix(b"data: ") else {
        return 0;
    };
    let Ok(text) = std::str::from_utf8(data.trim_ascii_end()) else {
        return 0;
    };
    let len = |v: Option<&str>| string(v).map_or(0, |s| s.text().len());
    let mut n = 0;
    for choice in elements(first(text, "choices").unwrap_or("[]")) {
        let Some(delta) = first(choice, "delta") else {
            continue;
        };
        for (key, value) in members(delta) {
            match key.text().as_ref() {
                "content" | "reasoning_content" => n += len(Some(value)),
                "tool_calls" => {
                    for call in elements(value) {
                        n += len(first(call, "function").and_then(|f| first(f, "arguments")));
                    }
                }
                _ => {}
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::ends_answered;

    #[test]
    fn done_after_an_answer_ends_it_and_after_an_error_does_not() {
        let chunk = b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        let done = b"data: [DONE]\n\n";
        assert!(ends_answered(&[&chunk[..], done].concat()));
        assert!(ends_answered(done), "[DONE] alone, the answer came before");
        let err = b"data: {\"error\":{\"message\":\"cut\"}}\n\n";
        assert!(!ends_answered(&[&chunk[..], err, done].concat()));
        assert!(!ends_answered(chunk));
        assert!(!ends_answered(b""));
    }
}
