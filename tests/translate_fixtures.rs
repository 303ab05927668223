//! Table-driven translator tests: every file under `tests/fixtures/<provider>/`
//! is one case, run against `provider::translator(&deployment)`.
//!
//! Layout of a provider directory (`<provider>` is a LiteLLM prefix such as
//! `anthropic` or `openai`; every kind of case is optional):
//!
//! - `request/<case>.json`: `{"openai": <chat request>, "deployment": {..},
//!   "drop_params": bool, "expected": {"path", "headers", "body"}}`, or
//!   `"expected_error": {"status", "param", "code", "message_contains": [..]}`
//!   instead of `expected`. `deployment` overrides `model`, `api_key` (`null`
//!   for none), `api_base`, `api_version` of the default deployment.
//! - `response/<case>.json`: `{"<provider>": <native body>}` (or
//!   `"upstream_raw": "<bytes>"`), `"expected": <OpenAI body>` and optional
//!   `"expected_usage"`, or `"expected_error"`.
//! - `stream/<case>.sse`: a native stream; `stream/<case>.expected.sse`: the
//!   exact OpenAI SSE output; optional `stream/<case>.json`:
//!   `{"include_usage": bool, "expected_usage": {..} | null}`. Each stream is
//!   also fed split at every single split point and one byte at a time, and
//!   must give the same bytes. With `BLESS_FIXTURES=1` a differing or missing
//!   `.expected.sse` is (re)written and the case fails: review the file, then
//!   run again.
//! - `error/<case>.json`: `{"status": <upstream status>, "<provider>": <body>}`
//!   (or `"body_raw": "<text>"`), `"expected": {"status", "body"}`.
//! - `embeddings/<case>.json`: an optional `"request"` part, `{"openai":
//!   <embeddings request>, "deployment", "drop_params", "expected": {"path",
//!   "headers", "body"} | "expected_error"}`, and an optional `"response"`
//!   part, `{"<provider>": <native body>, "deployment", "encoding_format",
//!   "expected": <OpenAI list> | "expected_error", "expected_usage"}`.
//! - `stream/<case>.eventstream`: a binary native stream (AWS event-stream),
//!   checked like `.sse` streams.
//!
//! JSON is compared as values, streams as bytes.

// Helpers outside `#[test]` functions fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use llm_gateway::api::openai::Usage;
use llm_gateway::api::request::ClientRequest;
use llm_gateway::provider::Operation;
use llm_gateway::provider::{translator, ResponseMeta, StreamTranslator, Translator};
use serde_json::{json, Value};

#[allow(dead_code)]
mod support;
use support::deployments::{deployment, meta};

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn translator_for(provider: &str) -> &'static dyn Translator {
    translator(&deployment(provider, None))
}

/// `(provider, case name, path)` of every `<provider>/<kind>/*.<ext>` file.
fn cases(kind: &str, ext: &str) -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    let mut providers: Vec<_> = fs::read_dir(fixtures_root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    providers.sort();
    for pdir in providers {
        let provider = pdir.file_name().unwrap().to_string_lossy().to_string();
        let dir = pdir.join(kind);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            let Some(case) = name.strip_suffix(&format!(".{ext}")) else {
                continue;
            };
            if case.ends_with(".expected") {
                continue;
            }
            out.push((provider.clone(), case.to_string(), f));
        }
    }
    out
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

/// Runs every case, collects failures, and reports them all at once.
struct Report {
    kind: &'static str,
    ran: usize,
    failures: Vec<String>,
}

impl Report {
    fn new(kind: &'static str) -> Self {
        Report {
            kind,
            ran: 0,
            failures: Vec::new(),
        }
    }

    fn check(&mut self, name: &str, result: Result<(), String>) {
        self.ran += 1;
        if let Err(e) = result {
            self.failures.push(format!("--- {name}\n{e}"));
        }
    }

    fn finish(self, at_least: usize) {
        assert!(
            self.ran >= at_least,
            "expected at least {at_least} {} fixtures, found {}",
            self.kind,
            self.ran
        );
        assert!(
            self.failures.is_empty(),
            "{} of {} {} fixtures failed:\n{}",
            self.failures.len(),
            self.ran,
            self.kind,
            self.failures.join("\n")
        );
    }
}

fn expect_eq(what: &str, got: &Value, want: &Value) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what} differs\n got: {}\nwant: {}",
            pretty(got),
            pretty(want)
        ))
    }
}

/// Compare a gateway error with `{"status", "param", "code", "message_contains"}`.
fn expect_error(err: &llm_gateway::api::error::GatewayError, want: &Value) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Some(s) = want.get("status").and_then(Value::as_u64) {
        if u64::from(err.status) != s {
            problems.push(format!("status {} != {s}", err.status));
        }
    }
    if let Some(p) = want.get("param") {
        let got = err.param.as_deref().map(Value::from).unwrap_or(Value::Null);
        if &got != p {
            problems.push(format!("param {got} != {p}"));
        }
    }
    if let Some(c) = want.get("code") {
        let got = err.code.as_deref().map(Value::from).unwrap_or(Value::Null);
        if &got != c {
            problems.push(format!("code {got} != {c}"));
        }
    }
    if let Some(t) = want.get("type").and_then(Value::as_str) {
        if err.kind.type_str() != t {
            problems.push(format!("type {} != {t}", err.kind.type_str()));
        }
    }
    for s in want
        .get("message_contains")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !err.message.contains(s) {
            problems.push(format!("message {:?} lacks {s:?}", err.message));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn usage_value(u: Option<Usage>) -> Value {
    serde_json::to_value(u).unwrap()
}

#[test]
fn request_fixtures() {
    let mut report = Report::new("request");
    for (provider, case, path) in cases("request", "json") {
        let fx = read_json(&path);
        let result = (|| -> Result<(), String> {
            let dep = deployment(&provider, fx.get("deployment"));
            let drop_params = fx
                .get("drop_params")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let body = serde_json::to_vec(&fx["openai"]).unwrap();
            let parsed =
                ClientRequest::parse(Operation::Chat, body).map_err(|e| format!("parse: {e}"))?;
            let t = translator(&dep);
            // A fixed clock: request signing (Bedrock) depends on the time.
            let now_ms = fx
                .get("now_ms")
                .and_then(Value::as_u64)
                .unwrap_or(1_700_000_000_000);
            let ctx = llm_gateway::provider::RequestContext {
                drop_params,
                now_ms,
            };
            let got = t.request(&parsed, &dep, &ctx);
            match (got, fx.get("expected"), fx.get("expected_error")) {
                (Ok(up), Some(want), None) => {
                    if let Some(p) = want.get("path") {
                        expect_eq("path", &json!(up.path), p)?;
                    }
                    if let Some(h) = want.get("headers") {
                        let mut got_headers = serde_json::Map::new();
                        for (k, v) in &up.headers {
                            if got_headers.insert(k.clone(), json!(v)).is_some() {
                                return Err(format!("header {k} set twice"));
                            }
                        }
                        expect_eq("headers", &Value::Object(got_headers), h)?;
                    }
                    let got_body: Value = serde_json::from_slice(&up.body)
                        .map_err(|e| format!("upstream body is not JSON: {e}"))?;
                    expect_eq("body", &got_body, &want["body"])
                }
                (Err(e), None, Some(want)) => expect_error(&e, want),
                (Ok(up), None, Some(_)) => Err(format!(
                    "expected an error, got body {}",
                    String::from_utf8_lossy(&up.body)
                )),
                (Err(e), Some(_), None) => Err(format!("unexpected error: {e:?}")),
                _ => Err("fixture needs exactly one of `expected`, `expected_error`".into()),
            }
        })();
        report.check(&format!("{provider}/request/{case}"), result);
    }
    report.finish(20);
}

#[test]
fn response_fixtures() {
    let mut report = Report::new("response");
    for (provider, case, path) in cases("response", "json") {
        let fx = read_json(&path);
        let result = (|| -> Result<(), String> {
            let dep = deployment(&provider, fx.get("deployment"));
            let body = match (fx.get(provider.as_str()), fx.get("upstream_raw")) {
                (Some(v), None) => serde_json::to_vec(v).unwrap(),
                (None, Some(Value::String(s))) => s.clone().into_bytes(),
                _ => return Err(format!("fixture needs `{provider}` or `upstream_raw`")),
            };
            let t = translator(&dep);
            match (
                t.response(&body, &meta(&dep, false)),
                fx.get("expected"),
                fx.get("expected_error"),
            ) {
                (Ok(tr), Some(want), None) => {
                    let got: Value = serde_json::from_slice(&tr.body)
                        .map_err(|e| format!("translated body is not JSON: {e}"))?;
                    expect_eq("body", &got, want)?;
                    if let Some(u) = fx.get("expected_usage") {
                        expect_eq("usage", &usage_value(tr.usage), u)?;
                    }
                    Ok(())
                }
                (Err(e), None, Some(want)) => expect_error(&e, want),
                (Ok(tr), None, Some(_)) => Err(format!(
                    "expected an error, got {}",
                    String::from_utf8_lossy(&tr.body)
                )),
                (Err(e), Some(_), None) => Err(format!("unexpected error: {e:?}")),
                _ => Err("fixture needs exactly one of `expected`, `expected_error`".into()),
            }
        })();
        report.check(&format!("{provider}/response/{case}"), result);
    }
    report.finish(8);
}

fn run_stream<'a>(
    t: &dyn Translator,
    meta: ResponseMeta,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<u8>, Option<Usage>) {
    let mut s: Box<dyn StreamTranslator> = t.stream(meta);
    let mut out = Vec::new();
    for p in pieces {
        s.feed(p, &mut out);
    }
    s.finish(&mut out);
    (out, s.usage())
}

/// Where two byte strings first differ, with context, for readable failures.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let from = at.saturating_sub(120);
    format!(
        "outputs differ at byte {at}\n got: {:?}\nwant: {:?}",
        String::from_utf8_lossy(&got[from..got.len().min(at + 120)]),
        String::from_utf8_lossy(&want[from..want.len().min(at + 120)]),
    )
}

#[test]
fn stream_fixtures() {
    let mut report = Report::new("stream");
    // Binary native streams (AWS event-stream) are `<case>.eventstream`.
    let mut all = cases("stream", "sse");
    all.extend(cases("stream", "eventstream"));
    for (provider, case, path) in all {
        let result = (|| -> Result<(), String> {
            let input = fs::read(&path).unwrap();
            let dir = path.parent().unwrap();
            let expected_path = dir.join(format!("{case}.expected.sse"));
            let want = match fs::read(&expected_path) {
                Ok(w) => w,
                Err(_) if std::env::var_os("BLESS_FIXTURES").is_some() => Vec::new(),
                Err(e) => return Err(format!("{}: {e}", expected_path.display())),
            };
            let side = dir.join(format!("{case}.json"));
            let side = if side.exists() {
                read_json(&side)
            } else {
                json!({})
            };
            let include_usage = side
                .get("include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let dep = deployment(&provider, side.get("deployment"));
            let t = translator(&dep);
            let m = meta(&dep, include_usage);

            let (whole, usage) = run_stream(t, m.clone(), [input.as_slice()]);
            if whole != want && std::env::var_os("BLESS_FIXTURES").is_some() {
                // Golden files are written, then read and reviewed like code.
                fs::write(&expected_path, &whole).unwrap();
                return Err(format!("blessed {}", expected_path.display()));
            }
            if whole != want {
                return Err(first_difference(&whole, &want));
            }
            if let Some(u) = side.get("expected_usage") {
                expect_eq("usage", &usage_value(usage), u)?;
            }
            for i in 0..=input.len() {
                let (got, got_usage) = run_stream(t, m.clone(), [&input[..i], &input[i..]]);
                if got != want || got_usage != usage {
                    return Err(format!(
                        "split at byte {i}: {}",
                        first_difference(&got, &want)
                    ));
                }
            }
            let (bytewise, bytewise_usage) = run_stream(t, m.clone(), input.chunks(1));
            if bytewise != want || bytewise_usage != usage {
                return Err(format!(
                    "one byte at a time: {}",
                    first_difference(&bytewise, &want)
                ));
            }
            Ok(())
        })();
        report.check(&format!("{provider}/stream/{case}"), result);
    }
    report.finish(6);
}

#[test]
fn error_fixtures() {
    let mut report = Report::new("error");
    for (provider, case, path) in cases("error", "json") {
        let fx = read_json(&path);
        let result = (|| -> Result<(), String> {
            let status = fx["status"].as_u64().ok_or("fixture needs `status`")? as u16;
            let body = match (fx.get(provider.as_str()), fx.get("body_raw")) {
                (Some(v), None) => serde_json::to_vec(v).unwrap(),
                (None, Some(Value::String(s))) => s.clone().into_bytes(),
                _ => return Err(format!("fixture needs `{provider}` or `body_raw`")),
            };
            let err = translator_for(&provider).error(status, &body);
            let want = &fx["expected"];
            expect_eq("status", &json!(err.status), &want["status"])?;
            expect_eq("body", &err.to_value(), &want["body"])
        })();
        report.check(&format!("{provider}/error/{case}"), result);
    }
    report.finish(6);
}

#[test]
fn embeddings_fixtures() {
    let mut report = Report::new("embeddings");
    for (provider, case, path) in cases("embeddings", "json") {
        let fx = read_json(&path);
        let result = (|| -> Result<(), String> {
            if fx.get("request").is_none() && fx.get("response").is_none() {
                return Err("fixture needs `request` or `response`".into());
            }
            if let Some(rq) = fx.get("request") {
                let dep = deployment(&provider, rq.get("deployment"));
                let ctx = llm_gateway::provider::RequestContext {
                    drop_params: rq
                        .get("drop_params")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    now_ms: rq
                        .get("now_ms")
                        .and_then(Value::as_u64)
                        .unwrap_or(1_700_000_000_000),
                };
                let body = serde_json::to_vec(&rq["openai"]).unwrap();
                let parsed = ClientRequest::parse(Operation::Embeddings, body)
                    .map_err(|e| format!("parse: {e}"))?;
                let got = translator(&dep).embeddings_request(&parsed, &dep, &ctx);
                match (got, rq.get("expected"), rq.get("expected_error")) {
                    (Ok(up), Some(want), None) => {
                        if let Some(p) = want.get("path") {
                            expect_eq("path", &json!(up.path), p)?;
                        }
                        if let Some(h) = want.get("headers") {
                            let got_headers: serde_json::Map<String, Value> = up
                                .headers
                                .iter()
                                .map(|(k, v)| (k.clone(), json!(v)))
                                .collect();
                            expect_eq("headers", &Value::Object(got_headers), h)?;
                        }
                        let got_body: Value = serde_json::from_slice(&up.body)
                            .map_err(|e| format!("upstream body is not JSON: {e}"))?;
                        expect_eq("body", &got_body, &want["body"])?;
                    }
                    (Err(e), None, Some(want)) => expect_error(&e, want)?,
                    (Ok(up), None, Some(_)) => {
                        return Err(format!(
                            "expected an error, got body {}",
                            String::from_utf8_lossy(&up.body)
                        ))
                    }
                    (Err(e), Some(_), None) => return Err(format!("unexpected error: {e:?}")),
                    _ => return Err("request needs one of `expected`, `expected_error`".into()),
                }
            }
            if let Some(rs) = fx.get("response") {
                let dep = deployment(&provider, rs.get("deployment"));
                let body = serde_json::to_vec(
                    rs.get(provider.as_str())
                        .ok_or(format!("response needs `{provider}`"))?,
                )
                .unwrap();
                let t = translator(&dep);
                match (
                    t.embeddings_response(&body, &meta(&dep, false)),
                    rs.get("expected"),
                    rs.get("expected_error"),
                ) {
                    (Ok(tr), Some(want), None) => {
                        let got: Value = serde_json::from_slice(&tr.body)
                            .map_err(|e| format!("translated body is not JSON: {e}"))?;
                        expect_eq("body", &got, want)?;
                        if let Some(u) = rs.get("expected_usage") {
                            expect_eq("usage", &usage_value(tr.usage), u)?;
                        }
                    }
                    (Err(e), None, Some(want)) => expect_error(&e, want)?,
                    (Ok(tr), None, Some(_)) => {
                        return Err(format!(
                            "expected an error, got {}",
                            String::from_utf8_lossy(&tr.body)
                        ))
                    }
                    (Err(e), Some(_), None) => return Err(format!("unexpected error: {e:?}")),
                    _ => return Err("response needs one of `expected`, `expected_error`".into()),
                }
            }
            Ok(())
        })();
        report.check(&format!("{provider}/embeddings/{case}"), result);
    }
    // The 35 fixtures under tests/fixtures/*/embeddings/ (Azure, Bedrock, Cohere, Gemini,
    // Ollama, Vertex AI): a run that finds fewer (a moved directory, a renamed kind) fails
    // instead of passing on nothing.
    report.finish(35);
}

/// Every fixture file belongs to a known case kind, so a misnamed file is not
/// silently skipped.
#[test]
fn no_stray_fixture_files() {
    let mut stray = Vec::new();
    for pdir in fs::read_dir(fixtures_root()).unwrap() {
        let pdir = pdir.unwrap().path();
        if !pdir.is_dir() {
            continue;
        }
        for kdir in fs::read_dir(&pdir).unwrap() {
            let kdir = kdir.unwrap().path();
            let kind = kdir.file_name().unwrap().to_string_lossy().to_string();
            if !kdir.is_dir()
                || !["request", "response", "stream", "error", "embeddings"]
                    .contains(&kind.as_str())
            {
                stray.push(kdir.display().to_string());
                continue;
            }
            for f in fs::read_dir(&kdir).unwrap() {
                let f = f.unwrap().path();
                let name = f.file_name().unwrap().to_string_lossy().to_string();
                let ok = match kind.as_str() {
                    "stream" => {
                        name.ends_with(".sse")
                            || name.ends_with(".eventstream")
                            || (name.ends_with(".json")
                                && (kdir.join(name.replace(".json", ".sse")).exists()
                                    || kdir.join(name.replace(".json", ".eventstream")).exists()))
                    }
                    _ => name.ends_with(".json"),
                };
                if !ok {
                    stray.push(f.display().to_string());
                }
            }
        }
    }
    assert!(stray.is_empty(), "unexpected fixture files: {stray:?}");
}
