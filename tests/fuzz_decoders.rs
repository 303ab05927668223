//! Fuzzing every decoder that reads bytes from outside (issue 17): a panic in
//! the filter aborts its VM for the whole worker, so none may panic on any
//! input. Property tests on the stable toolchain (no nightly here for
//! `cargo fuzz`): arbitrary bytes, and the fixtures (`tests/fixtures/`)
//! mutated (bytes flipped, cut, spliced, repeated), each through
//!
//! - the client's request (`ClientRequest::parse`, the overrides, every
//!   provider's request translation),
//! - every provider's answer, error and stream decoders (random splits),
//! - the configuration (`provider::parse_config`) and the YAML reader.
//!
//! `FUZZ_CASES` sets the cases per property (default 48, so `make test`
//! stays quick); `make fuzz` runs 5,000 in a release build. A crash found
//! becomes a fixture or a unit test next to the decoder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use llm_gateway::api::request::ClientRequest;
use llm_gateway::config::Deployment;
use llm_gateway::provider::{translator, Operation, RequestContext};
use proptest::prelude::*;
use serde_json::Value;

#[allow(dead_code)]
mod support;
use support::deployments::{defaults, deployment, extra_params, meta};

/// The seeds: request bodies, native answers and native streams of every
/// fixture provider directory.
struct Seeds {
    providers: Vec<(String, Deployment)>,
    requests: Vec<Vec<u8>>,
    answers: Vec<Vec<u8>>,
    streams: Vec<Vec<u8>>,
    configs: Vec<Vec<u8>>,
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut s = Seeds {
            providers: Vec::new(),
            requests: Vec::new(),
            answers: Vec::new(),
            streams: Vec::new(),
            configs: Vec::new(),
        };
        let mut dirs: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        dirs.sort();
        for dir in dirs {
            let provider = dir.file_name().unwrap().to_string_lossy().to_string();
            s.providers
                .push((provider.clone(), deployment(&provider, None)));
            for kind in ["request", "response", "error", "embeddings", "stream"] {
                let Ok(files) = fs::read_dir(dir.join(kind)) else {
                    continue;
                };
                for f in files.flatten().map(|e| e.path()) {
                    let name = f.file_name().unwrap().to_string_lossy().to_string();
                    let bytes = fs::read(&f).unwrap();
                    if kind == "stream" {
                        if !name.contains(".expected.") && !name.ends_with(".json") {
                            s.streams.push(bytes);
                        }
                        continue;
                    }
                    let Ok(Value::Object(fx)) = serde_json::from_slice::<Value>(&bytes) else {
                        continue;
                    };
                    for (k, v) in fx {
                        if k == "openai" || k == "request" {
                            s.requests.push(v.to_string().into_bytes());
                        } else if v.is_object() || v.is_array() {
                            s.answers.push(v.to_string().into_bytes());
                        }
                    }
                }
            }
        }
        for (provider, _) in &s.providers {
            let (model, key) = defaults(provider);
            let mut params = serde_json::json!({
                "model": format!("{provider}/{model}"), "api_key": key, "temperature": 0.5,
                "extra_headers": {"x-a": "b"}, "max_tokens": 100});
            if let Value::Object(extra) = extra_params(provider) {
                params.as_object_mut().unwrap().extend(extra);
            }
            s.configs.push(
                serde_json::json!({
                    "model_list": [{"model_name": "a", "litellm_params": params}],
                    "router_settings": {"num_retries": 2, "fallbacks": [{"a": ["a"]}]},
                    "general_settings": {"max_request_size_mb": 2, "max_response_size_mb": 4},
                    "gateway": {"clusters": {provider.as_str(): "c"}}})
                .to_string()
                .into_bytes(),
            );
        }
        assert!(
            s.providers.len() >= 10 && s.requests.len() >= 50 && s.answers.len() >= 50,
            "the fuzz seeds come from tests/fixtures: found {} providers, {} requests, {} answers",
            s.providers.len(),
            s.requests.len(),
            s.answers.len()
        );
        assert!(s.streams.len() >= 20, "{} stream seeds", s.streams.len());
        s
    })
}

/// A mutation of one seed: a few edits of these kinds.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    Splice(usize, usize, usize),
    Repeat(usize, usize),
}

fn arb_edits() -> impl Strategy<Value = Vec<Edit>> {
    let tokens = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\\u".to_vec()),
        Just(b"\\ud800".to_vec()),
        Just(b"null".to_vec()),
        Just(b"1e309".to_vec()),
        Just(b"-0".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just("é".as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        any::<usize>().prop_map(Edit::Cut),
        (any::<usize>(), tokens).prop_map(|(i, t)| Edit::Insert(i, t)),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(a, b, c)| Edit::Splice(a, b, c)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ];
    proptest::collection::vec(edit, 1..6)
}

fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let n = b.len().max(1);
        match e {
            Edit::Flip(i, x) if !b.is_empty() => b[i % n] ^= x | 1,
            Edit::Flip(..) => {}
            Edit::Cut(i) => b.truncate(i % (b.len() + 1)),
            Edit::Insert(i, t) => {
                let at = i % (b.len() + 1);
                b.splice(at..at, t.iter().copied());
            }
            Edit::Splice(a, c, d) => {
                let (from, to) = (a % (b.len() + 1), c % (b.len() + 1));
                let (lo, hi) = (from.min(to), from.max(to));
                let piece = b[lo..hi].to_vec();
                let at = d % (b.len() + 1);
                b.splice(at..at, piece);
            }
            Edit::Repeat(i, k) => {
                let at = i % (b.len() + 1);
                let end = (at + 16).min(b.len());
                let piece = b[at..end].repeat(*k);
                b.splice(at..at, piece);
            }
        }
        b.truncate(1 << 20);
    }
    b
}

/// A JSON-aware mutation: the `k`-th node of the seed (depth first)
/// replaced by `with` (or removed from its object when `with` is `None`),
/// so that the result stays JSON and reaches the readers behind the parser.
fn replace_node(v: &mut Value, k: &mut usize, with: &Option<Value>) -> bool {
    if *k == 0 {
        if let Some(w) = with {
            *v = w.clone();
        }
        return true;
    }
    *k -= 1;
    match v {
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().cloned().collect();
            for key in keys {
                if *k == 0 && with.is_none() {
                    o.remove(&key);
                    return true;
                }
                if replace_node(o.get_mut(&key).unwrap(), k, with) {
                    return true;
                }
            }
            false
        }
        Value::Array(a) => a.iter_mut().any(|x| replace_node(x, k, with)),
        _ => false,
    }
}

fn arb_json_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(serde_json::json!(true))),
        Just(Some(serde_json::json!(-1))),
        Just(Some(serde_json::json!(0))),
        Just(Some(serde_json::json!(1e300))),
        Just(Some(serde_json::json!(18446744073709551615u64))),
        Just(Some(serde_json::json!("hot"))),
        Just(Some(serde_json::json!(""))),
        Just(Some(serde_json::json!("\u{0}\u{feff}é"))),
        Just(Some(serde_json::json!([]))),
        Just(Some(serde_json::json!({}))),
        Just(Some(serde_json::json!([{"type": "txt"}]))),
        Just(Some(serde_json::json!({"type": "function"}))),
        Just(Some(serde_json::json!([[[[[[[[[[[[[[[[[[
            [[1]]
        ]]]]]]]]]]]]]]]]]]))),
        "[a-z_]{0,12}".prop_map(|s| Some(Value::String(s))),
    ]
}

/// Seeds mutated structurally (still JSON, wrong in one place or a few).
fn json_input(pool: fn(&Seeds) -> &Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        any::<prop::sample::Index>(),
        proptest::collection::vec((any::<usize>(), arb_json_value()), 1..4),
    )
        .prop_map(move |(i, edits)| {
            let p = pool(seeds());
            let seed = &p[i.index(p.len())];
            let Ok(mut v) = serde_json::from_slice::<Value>(seed) else {
                return seed.clone();
            };
            for (k, with) in edits {
                let mut k = k % 64;
                replace_node(&mut v, &mut k, &with);
            }
            v.to_string().into_bytes()
        })
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

/// Input bytes: a seed from `pool` mutated as JSON or as bytes, or arbitrary bytes.
fn input(pool: fn(&Seeds) -> &Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => json_input(pool),
        3 => (any::<prop::sample::Index>(), arb_edits())
            .prop_map(move |(i, e)| { let p = pool(seeds()); mutate(&p[i.index(p.len())], &e) }),
        1 => proptest::collection::vec(any::<u8>(), 0..512),
    ]
}

fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for p in points {
        out.push(bytes[from..p].to_vec());
        from = p;
    }
    out.push(bytes[from..].to_vec());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn client_requests_never_panic_any_translator(body in input(|s| &s.requests), embeddings in any::<bool>()) {
        let op = if embeddings { Operation::Embeddings } else { Operation::Chat };
        let Ok(req) = ClientRequest::parse(op, body) else { return Ok(()) };
        let _ = req.overrides();
        let ctx = RequestContext { drop_params: false, now_ms: 1_700_000_000_000 };
        for (_, dep) in &seeds().providers {
            let t = translator(dep);
            let _ = match op {
                Operation::Chat => t.request(&req, dep, &ctx).map(|_| ()),
                Operation::Embeddings => t.embeddings_request(&req, dep, &ctx).map(|_| ()),
            };
            let ctx = RequestContext { drop_params: true, ..ctx };
            let _ = t.request(&req, dep, &ctx);
        }
    }

    #[test]
    fn provider_answers_and_errors_never_panic(body in input(|s| &s.answers), status in 100u16..600) {
        for (_, dep) in &seeds().providers {
            let t = translator(dep);
            let m = meta(dep, true);
            let _ = t.response(&body, &m);
            let _ = t.embeddings_response(&body, &m);
            let _ = t.error(status, &body);
        }
    }

    #[test]
    fn provider_streams_never_panic_however_split(
        body in input(|s| &s.streams),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        include_usage in any::<bool>(),
    ) {
        let pieces = split(&body, &cuts);
        for (_, dep) in &seeds().providers {
            let mut s = translator(dep).stream(meta(dep, include_usage));
            let mut out = Vec::new();
            for p in &pieces {
                s.feed(p, &mut out);
            }
            s.finish(&mut out);
            let _ = s.usage();
        }
    }

    #[test]
    fn configurations_never_panic(body in input(|s| &s.configs)) {
        let _ = llm_gateway::provider::parse_config(&body, &|_| Some("v".to_string()));
        if let Ok(text) = std::str::from_utf8(&body) {
            let _ = llm_gateway::yaml::from_str(text);
        }
    }
}
