//! Property tests for the SSE decoder (`src/sse.rs`): random input and random
//! splits never panic, never hold more than the unfinished tail, and decode
//! the same events however the bytes are cut. (The AWS event-stream decoder's
//! properties are in `src/eventstream.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_gateway::codec::sse::{Event, SseDecoder};
use proptest::prelude::*;

fn decode(pieces: &[&[u8]]) -> (Vec<Event>, usize) {
    let mut d = SseDecoder::new();
    let mut events = Vec::new();
    let mut max_pending = 0;
    for p in pieces {
        events.extend(d.feed(p));
        max_pending = max_pending.max(d.pending_bytes());
    }
    events.extend(d.finish());
    (events, max_pending)
}

fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for p in points {
        out.push(&bytes[from..p]);
        from = p;
    }
    out.push(&bytes[from..]);
    out
}

/// One event as written by a server: optional `event:`, data lines, a
/// comment now and then, and one of the three line endings.
fn arb_event() -> impl Strategy<Value = (Option<String>, Vec<String>, &'static str)> {
    (
        proptest::option::of("[a-z_]{1,10}"),
        proptest::collection::vec("[^\r\n]{0,20}", 1..3),
        prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_and_split_does_not_matter(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let (whole, _) = decode(&[&data]);
        let (pieces, max_pending) = decode(&split(&data, &cuts));
        prop_assert_eq!(whole, pieces);
        prop_assert!(max_pending <= data.len());
    }

    #[test]
    fn written_events_come_back(
        events in proptest::collection::vec(arb_event(), 0..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut stream = String::new();
        for (name, data, eol) in &events {
            if let Some(n) = name {
                stream.push_str(&format!("event: {n}{eol}"));
            }
            stream.push_str(&format!(": keep-alive{eol}"));
            for line in data {
                stream.push_str(&format!("data: {line}{eol}"));
            }
            stream.push_str(eol);
        }
        let want: Vec<Event> = events
            .iter()
            .map(|(name, data, _)| Event {
                event: name.clone().unwrap_or_default(),
                data: data.join("\n"),
            })
            .collect();
        let (got, _) = decode(&split(stream.as_bytes(), &cuts));
        prop_assert_eq!(got, want);
    }
}
