//! Property tests for the NDJSON line decoder (`src/ndjson.rs`) and the
//! Ollama stream translator built on it: any split of the input gives the
//! same items and the same OpenAI bytes, arbitrary bytes never panic, and the
//! decoder never holds more than its line limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_gateway::codec::ndjson::{Item, NdjsonDecoder};
use llm_gateway::provider::ollama::Ollama;
use llm_gateway::provider::{ResponseMeta, Translator};
use proptest::prelude::*;

fn decode(pieces: &[&[u8]], max: usize) -> (Vec<Item>, usize) {
    let mut d = NdjsonDecoder::with_max_line(max);
    let mut out = Vec::new();
    let mut held = 0;
    for p in pieces {
        out.extend(d.feed(p));
        held = held.max(d.pending_bytes());
    }
    out.extend(d.finish());
    (out, held)
}

/// Cut `input` at the given (sorted, deduplicated) positions.
fn split_at<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut pieces = Vec::new();
    let mut from = 0;
    for p in points {
        pieces.push(&input[from..p]);
        from = p;
    }
    pieces.push(&input[from..]);
    pieces
}

/// NDJSON-ish input: lines of JSON objects with multi-byte text, blank lines,
/// CRLF endings and, sometimes, no final newline.
fn ndjson_input() -> impl Strategy<Value = Vec<u8>> {
    let line =
        ("[a-zé👋 \"\\\\]{0,12}", any::<bool>(), any::<bool>()).prop_map(|(text, crlf, blank)| {
            let mut l =
                serde_json::json!({"message": {"content": text}, "done": false}).to_string();
            l.push_str(if crlf { "\r\n" } else { "\n" });
            if blank {
                l.push('\n');
            }
            l
        });
    (prop::collection::vec(line, 0..8), any::<bool>()).prop_map(|(lines, cut_last)| {
        let mut s = lines.concat();
        if cut_last && s.ends_with('\n') {
            s.pop();
        }
        s.into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_splits_give_identical_items(input in ndjson_input(), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let (whole, _) = decode(&[&input], 1 << 20);
        let (split, _) = decode(&split_at(&input, &cuts), 1 << 20);
        prop_assert_eq!(&whole, &split);
        let bytewise: Vec<&[u8]> = input.chunks(1).collect();
        let (one_by_one, _) = decode(&bytewise, 1 << 20);
        prop_assert_eq!(whole, one_by_one);
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded(input in prop::collection::vec(any::<u8>(), 0..512), cuts in prop::collection::vec(any::<usize>(), 0..6), max in 1usize..64) {
        let (whole, held_whole) = decode(&[&input], max);
        let (split, held_split) = decode(&split_at(&input, &cuts), max);
        prop_assert_eq!(whole, split);
        prop_assert!(held_whole <= max && held_split <= max);
    }

    #[test]
    fn ollama_stream_is_split_independent(input in ndjson_input(), cuts in prop::collection::vec(any::<usize>(), 0..6), done in any::<bool>()) {
        let mut input = input;
        if done {
            input.extend_from_slice(b"\n{\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,\"eval_count\":4}\n");
        }
        let t: &dyn Translator = &Ollama;
        let meta = ResponseMeta { id: "chatcmpl-p".into(), created: 1, model: "m".into(), include_usage: true };
        let run = |pieces: Vec<&[u8]>| {
            let mut s = t.stream(meta.clone());
            let mut out = Vec::new();
            for p in pieces {
                s.feed(p, &mut out);
            }
            s.finish(&mut out);
            (out, s.usage())
        };
        let whole = run(vec![&input]);
        prop_assert_eq!(&whole, &run(split_at(&input, &cuts)));
        let text = String::from_utf8(whole.0).unwrap();
        prop_assert_eq!(text.matches("data: [DONE]").count(), 1);
        prop_assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn ollama_stream_survives_garbage(input in prop::collection::vec(any::<u8>(), 0..512), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let t: &dyn Translator = &Ollama;
        let meta = ResponseMeta { id: "chatcmpl-p".into(), created: 1, model: "m".into(), include_usage: false };
        let mut s = t.stream(meta);
        let mut out = Vec::new();
        for p in split_at(&input, &cuts) {
            s.feed(p, &mut out);
        }
        s.finish(&mut out);
        prop_assert_eq!(String::from_utf8_lossy(&out).matches("data: [DONE]").count(), 1);
    }
}
