//! Table-driven ingress tests: every file under `tests/ingress_fixtures/<api>/`
//! is one case for one protocol pair (`messages`: Anthropic Messages <->
//! chat; `completions`: legacy completions <-> chat), run against
//! `llm_gateway::ingress`.
//!
//! - `request/<case>.json`: `{"client": <the client's body>, "expected":
//!   <the chat body>}`, plus `"untranslatable": {"param"}` when only a
//!   passthrough can take it; or `"expected_error": {"status", "param"}`.
//! - `response/<case>.json`: `{"status": <default 200>, "openai": <chat
//!   answer or OpenAI error>, "expected": <the client's body>}`.
//! - `stream/<case>.sse`: an OpenAI chunk stream; `<case>.expected.sse`:
//!   the client's stream, byte for byte, also when the input is split at
//!   every byte. `BLESS_FIXTURES=1` (re)writes a differing expected file and
//!   fails the case: review it, run again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use llm_gateway::ingress::Ingress;
use serde_json::Value;

fn ingress(api: &str) -> Ingress {
    match api {
        "messages" => Ingress::Messages,
        "completions" => Ingress::Completions,
        other => panic!("unknown api folder {other}"),
    }
}

fn cases(kind: &str, ext: &str) -> Vec<(Ingress, String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ingress_fixtures");
    let mut out = Vec::new();
    for api in fs::read_dir(&root).unwrap() {
        let api = api.unwrap().path();
        let dir = api.join(kind);
        let Ok(files) = fs::read_dir(&dir) else {
            continue;
        };
        let name = api.file_name().unwrap().to_string_lossy().into_owned();
        for f in files {
            let p = f.unwrap().path();
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            if file.ends_with(ext) && !file.ends_with(".expected.sse") {
                out.push((ingress(&name), format!("{name}/{kind}/{file}"), p));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    assert!(!out.is_empty(), "no {kind} fixtures");
    out
}

fn read(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn requests() {
    for (api, name, path) in cases("request", ".json") {
        let case = read(&path);
        let body = serde_json::to_vec(&case["client"]).unwrap();
        let got = api.to_chat(body, &[]);
        if let Some(want) = case.get("expected_error") {
            let e = got.err().unwrap_or_else(|| panic!("{name}: no error"));
            assert_eq!(json_num(e.status), want["status"], "{name}: {e}");
            if let Some(p) = want.get("param") {
                assert_eq!(e.param.as_deref(), p.as_str(), "{name}");
            }
            continue;
        }
        let c = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        let chat: Value = serde_json::from_slice(&c.chat).unwrap();
        assert_eq!(chat, case["expected"], "{name}");
        let deferred = c.native.untranslatable.as_ref().map(|e| e.param.clone());
        let want = case
            .get("untranslatable")
            .map(|u| u["param"].as_str().map(str::to_string));
        assert_eq!(deferred, want, "{name}: untranslatable");
    }
}

fn json_num(n: u16) -> Value {
    Value::from(n)
}

#[test]
fn responses() {
    for (api, name, path) in cases("response", ".json") {
        let case = read(&path);
        let status = case["status"].as_u64().unwrap_or(200) as u16;
        let body = serde_json::to_vec(&case["openai"]).unwrap();
        let out = api.answer(status, &body).unwrap_or(body);
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, case["expected"], "{name}");
    }
}

fn run_stream(api: Ingress, pieces: &[&[u8]]) -> Vec<u8> {
    let mut s = api.stream().unwrap();
    let mut out = Vec::new();
    for p in pieces {
        s.feed(p, &mut out);
    }
    s.finish(&mut out);
    out
}

#[test]
fn streams() {
    for (api, name, path) in cases("stream", ".sse") {
        let input = fs::read(&path).unwrap();
        let whole = run_stream(api, &[&input]);
        let expected_path = path.with_extension("expected.sse");
        let expected = fs::read(&expected_path).unwrap_or_default();
        if whole != expected {
            if std::env::var_os("BLESS_FIXTURES").is_some() {
                fs::write(&expected_path, &whole).unwrap();
            }
            panic!(
                "{name}: output differs from {}:\n{}",
                expected_path.display(),
                String::from_utf8_lossy(&whole)
            );
        }
        for cut in 0..=input.len() {
            let got = run_stream(api, &[&input[..cut], &input[cut..]]);
            assert_eq!(got, whole, "{name}: split at byte {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run_stream(api, &bytes), whole, "{name}: one byte at a time");
    }
}
