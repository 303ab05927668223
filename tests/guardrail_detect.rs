//! The content filter's prebuilt detectors, table-driven from
//! `tests/guardrails/detect_cases.json`: what each finds in a text (true
//! positives and look-alikes that must not match: Luhn and IBAN checksum
//! failures, invalid SSN areas, short keys), including non-ASCII text.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_gateway::guardrails::detect::{Prebuilt, PREBUILT};
use serde_json::Value;

#[test]
fn prebuilt_patterns_find_exactly_their_cases() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/guardrails/detect_cases.json"
    );
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 20, "the table lost cases: {}", cases.len());
    let mut covered = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for c in &cases {
        let name = c["pattern"].as_str().unwrap();
        let p = Prebuilt::by_name(name).unwrap_or_else(|| panic!("unknown pattern {name}"));
        covered.insert(name);
        let text = c["text"].as_str().unwrap();
        let got: Vec<&str> = p.find(text).into_iter().map(|(s, e)| &text[s..e]).collect();
        let want: Vec<&str> = c["found"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        if got != want {
            failures.push(format!("{name}: {text:?}\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for (name, _) in PREBUILT {
        assert!(
            covered.contains(name),
            "no case for prebuilt pattern `{name}`"
        );
    }
}
