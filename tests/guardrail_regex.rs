//! The content filter's regular expressions, table-driven from
//! `tests/guardrails/regex_cases.json` (what Python's `re.finditer` with
//! `re.IGNORECASE` finds, empty matches left out), and the constructs that
//! are refused rather than misread.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_gateway::guardrails::regex::Regex;
use serde_json::Value;

#[test]
fn patterns_find_what_python_finds() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/guardrails/regex_cases.json"
    );
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 20, "the table lost cases: {}", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let pattern = c["pattern"].as_str().unwrap();
        let text = c["text"].as_str().unwrap();
        let re = Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e:?}"));
        let got: Vec<&str> = re
            .find_all(text)
            .into_iter()
            .map(|(s, e)| &text[s..e])
            .collect();
        let want: Vec<&str> = c["found"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        if got != want {
            failures.push(format!(
                "{pattern} on {text:?}\n  want {want:?}\n  got  {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn what_is_not_supported_is_an_error_naming_it() {
    for (pattern, needle) in [
        ("(?=x)a", "look-around"),
        ("(?!x)a", "look-around"),
        ("(a)\\1", "back-references"),
        ("a{3,1}", "repetition count"),
        ("a{1000}", "repetition count"),
        ("[z-a]", "reversed range"),
        ("(ab", "unclosed group"),
        ("ab)", "unbalanced"),
        ("*a", "nothing to repeat"),
        ("a**", "after a quantifier"),
        ("[abc", "unclosed `[`"),
        ("\\p{L}", "escape `\\p`"),
        ("a++", "possessive"),
        ("{1}a", "nothing to repeat"),
    ] {
        let e = Regex::new(pattern).expect_err(pattern);
        assert!(e.0.contains(needle), "{pattern}: {}", e.0);
    }
}

#[test]
fn a_long_text_is_searched_in_linear_time() {
    // The classic exponential case for backtracking engines.
    let re = Regex::new("(a+)+$").unwrap();
    let text = format!("{}!", "a".repeat(20_000));
    assert!(re.find_all(&text).is_empty());
}
