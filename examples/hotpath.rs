//! Native profile of the filter's per-request work: the pure code the wasm
//! filter runs for one request, on realistic inputs, without Envoy.
//!
//! Run one case N times:
//!
//! ```sh
//! cargo run --profile profiling --example hotpath -- <case> [iterations]
//! ```
//!
//! `make profile` runs every case under `valgrind --tool=callgrind`, counting
//! only the instructions inside `hotpath::measure` (so fixture set-up is not
//! counted), and prints instructions per request. Instruction counts are
//! repeatable on a busy machine where wall-clock timings are not; the numbers
//! go in `bench/PROFILE.md`.
//!
//! `hotpath memory` prints the heap a streaming request holds (the kept
//! request, the exchange and its stream decoder) after the first chunk and
//! after a 500-chunk stream.
//!
//! Cases (see [`CASES`]): the OpenAI-compatible passthrough (1 KB), the
//! Anthropic translation both ways (1 KB and 100 KB multi-turn), a 500-chunk
//! Anthropic stream, and a request refused by a virtual key's budget next to
//! the same request admitted and proxied.

// A profiling tool: fail loudly on a broken fixture.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

use llm_gateway::accounting::metering::{self, CallerId};
use llm_gateway::config::Config;
use llm_gateway::pipeline;
use llm_gateway::provider::Operation;
use llm_gateway::routing;
use llm_gateway::store::FakeStore;

/// Counts live heap bytes, for `hotpath memory`.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// Counting is on only for `hotpath memory`, so the instruction counts of
/// the cases do not include it.
static COUNTING: AtomicBool = AtomicBool::new(false);

// SAFETY: every call is forwarded to the system allocator unchanged; only a
// counter is kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// `hotpath memory`: the heap a streaming request holds in the filter's
/// pure code (the kept request, the exchange with its stream decoder),
/// after the first chunk and after the whole 500-chunk stream.
fn memory() {
    let fx = fixture("anthropic_stream_500").0;
    COUNTING.store(true, Ordering::Relaxed);
    let before = live();
    let (parsed, _) = pipeline::prepare(Operation::Chat, fx.request.clone(), &[]).unwrap();
    let request = live() - before;
    let dep = &fx.cfg.deployments[0];
    let attempt = pipeline::attempt(
        &fx.cfg,
        &parsed,
        dep,
        "chatcmpl-0123456789abcdef01234567",
        1,
        &Default::default(),
    )
    .unwrap();
    drop(parsed);
    let upstream = attempt.upstream;
    drop(upstream);
    let mut exchange = attempt.exchange;
    let base = live() - before;
    exchange.response_headers(200);
    let mut after_first = 0;
    let last = fx.chunks.len() - 1;
    for (i, c) in fx.chunks.iter().enumerate() {
        let out = exchange.stream_chunk(c, i == last);
        drop(out);
        if i == 0 {
            after_first = live() - before;
        }
    }
    let after_all = live() - before;
    println!(
        "inline sizes: Exchange {} bytes, ClientRequest {} bytes",
        std::mem::size_of::<pipeline::Exchange>(),
        std::mem::size_of::<llm_gateway::api::request::ClientRequest>()
    );
    println!("request kept for retries (1 KB body): {request} bytes of heap");
    println!("exchange before the answer: {base} bytes of heap");
    println!("exchange streaming, after chunk 1: {after_first} bytes of heap");
    println!(
        "exchange streaming, after chunk {}: {after_all} bytes of heap",
        last + 1
    );
    drop(exchange);
}

/// Every case: name and what one iteration is.
const CASES: &[(&str, &str)] = &[
    (
        "passthrough_1k",
        "OpenAI-compatible request (1 KB) routed and rewritten, answer passed through",
    ),
    (
        "anthropic_1k",
        "1 KB chat request -> Anthropic Messages, Anthropic answer -> chat.completion",
    ),
    (
        "anthropic_100k",
        "100 KB multi-turn chat request -> Anthropic, answer -> chat.completion",
    ),
    (
        "anthropic_stream_500",
        "a 500-chunk Anthropic SSE stream -> OpenAI chunks (one iteration = whole stream)",
    ),
    (
        "anthropic_stream_500_enforced",
        "the same stream with mid-stream budget enforcement on (every chunk's text counted)",
    ),
    (
        "budget_refused",
        "keyed 1 KB request refused by its spent budget (429)",
    ),
    (
        "budget_admitted",
        "the same keyed request admitted, translated to Anthropic, answered, charged",
    ),
];

/// The gateway the cases run against: the demo config plus a virtual key
/// with budget left (`team`) and one whose budget is spent (`broke`).
const CONFIG: &str = r#"{
  "model_list": [
    {"model_name": "smart", "litellm_params": {"model": "anthropic/claude-sonnet-4-5",
      "api_base": "http://127.0.0.1:9101", "api_key": "demo-anthropic-key"}},
    {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini",
      "api_base": "http://127.0.0.1:9102/v1", "api_key": "demo-openai-key"}}
  ],
  "gateway": {"clusters": {"anthropic": "anthropic", "openai": "openai"}},
  "virtual_keys": [
    {"key_hash": "HASH_TEAM", "key_alias": "team", "models": ["smart", "fast"], "max_budget": 100},
    {"key_hash": "HASH_BROKE", "key_alias": "broke", "models": ["smart", "fast"], "max_budget": 0.000001}
  ]
}"#;

const TEAM_KEY: &str = "sk-team-0123456789abcdef";
const BROKE_KEY: &str = "sk-broke-0123456789abcdef";

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(s.as_bytes());
    let mut out = String::from("sha256:");
    for b in d.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn config() -> Config {
    let text = CONFIG
        .replace("HASH_TEAM", &sha256_hex(TEAM_KEY))
        .replace("HASH_BROKE", &sha256_hex(BROKE_KEY));
    llm_gateway::pipeline::load_config(text.as_bytes(), &|_| None).unwrap()
}

/// A JSON string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Prose with the characters real prompts have: quotes, newlines, tabs,
/// non-ASCII, so escaping is exercised.
fn prose(n: usize, seed: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "gateway",
        "translates",
        "each",
        "request",
        "into",
        "provider's",
        "native",
        "API",
        "\"quoted\"",
        "naïve",
        "café",
        "line\nbreak",
        "tab\there",
        "→",
        "tokens",
        "budget",
        "stream",
        "Envoy",
        "filter",
        "deployment",
        "fallback",
        "😀",
        "end.",
    ];
    let mut out = String::with_capacity(n + 16);
    let mut i = seed;
    while out.len() < n {
        out.push_str(WORDS[i % WORDS.len()]);
        out.push(' ');
        i = i.wrapping_mul(7).wrapping_add(3);
    }
    out
}

/// A ~1 KB chat request: system prompt, one user message, common parameters.
fn chat_1k(model: &str) -> Vec<u8> {
    format!(
        r#"{{"model": "{model}", "messages": [{{"role": "system", "content": {}}}, {{"role": "user", "content": {}}}], "temperature": 0.7, "max_tokens": 256, "user": "user-1234"}}"#,
        js(&prose(250, 1)),
        js(&prose(560, 2)),
    )
    .into_bytes()
}

/// A ~100 KB multi-turn conversation: system prompt, 40 user/assistant turns
/// of ~2.4 KB, one tool call round trip, a tool definition.
fn chat_100k(model: &str) -> Vec<u8> {
    let mut messages = vec![format!(
        r#"{{"role": "system", "content": {}}}"#,
        js(&prose(1500, 9))
    )];
    for turn in 0..40 {
        let role = if turn % 2 == 0 { "user" } else { "assistant" };
        messages.push(format!(
            r#"{{"role": "{role}", "content": {}}}"#,
            js(&prose(2400, turn))
        ));
        if turn == 19 {
            messages.push(
                r#"{"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"query\": \"weather in Paris\", \"units\": \"metric\"}"}}]}"#
                    .to_string(),
            );
            messages.push(
                r#"{"role": "tool", "tool_call_id": "call_1", "content": "18°C, cloudy, wind 12 km/h"}"#
                    .to_string(),
            );
        }
    }
    format!(
        r#"{{"model": "{model}", "messages": [{}], "max_tokens": 1024, "temperature": 0.2, "tools": [{{"type": "function", "function": {{"name": "lookup", "description": "Look something up", "parameters": {{"type": "object", "properties": {{"query": {{"type": "string"}}, "units": {{"type": "string", "enum": ["metric", "imperial"]}}}}, "required": ["query"]}}}}}}]}}"#,
        messages.join(", ")
    )
    .into_bytes()
}

/// An Anthropic Messages answer of ~700 bytes of text.
fn anthropic_answer() -> Vec<u8> {
    format!(
        r#"{{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{{"type":"text","text":{}}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":312,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":178,"service_tier":"standard"}}}}"#,
        js(&prose(700, 5))
    )
    .into_bytes()
}

/// An OpenAI chat.completion answer of ~700 bytes of text.
fn openai_answer() -> Vec<u8> {
    format!(
        r#"{{"id":"chatcmpl-abc123","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{{"index":0,"message":{{"role":"assistant","content":{},"refusal":null}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":312,"completion_tokens":178,"total_tokens":490,"prompt_tokens_details":{{"cached_tokens":0}}}},"system_fingerprint":"fp_0123"}}"#,
        js(&prose(700, 5))
    )
    .into_bytes()
}

/// A 500-chunk Anthropic stream, one SSE event per body callback (as a
/// provider flushing each token arrives).
fn anthropic_stream() -> Vec<Vec<u8>> {
    let mut events = vec![
        r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}

"#
        .to_string(),
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_string(),
        "event: ping\ndata: {\"type\": \"ping\"}\n\n".to_string(),
    ];
    for i in 0..500 {
        let word = prose(6, i);
        events.push(format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}\n\n",
            js(&word)
        ));
    }
    events.push(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            .to_string(),
    );
    events.push("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":500}}\n\n".to_string());
    events.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_string());
    events.into_iter().map(String::into_bytes).collect()
}

/// Inputs of one case, built before measuring.
struct Fixture {
    cfg: Config,
    store: FakeStore,
    request: Vec<u8>,
    answer: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    key: Option<&'static str>,
    /// Mid-stream budget enforcement on.
    enforce: bool,
}

/// What the filter does for one chat request, from the body to the answer:
/// authenticate the key (when keyed), parse, plan, admit, translate the
/// request, decide on the answer's headers, translate (or watch) the answer,
/// read the usage and charge it. Returns a byte count so nothing is optimised away.
fn one_request(fx: &Fixture, stream: bool) -> usize {
    let cfg = &fx.cfg;
    let now_ms = 1_700_000_000_000u64;
    let caller = match fx.key {
        Some(k) => CallerId::authenticate(cfg, Some(&format!("Bearer {k}")), None, None).unwrap(),
        None => CallerId::Open,
    };
    let body = black_box(&fx.request);
    let (parsed, overrides) = match pipeline::prepare(Operation::Chat, body.clone(), &[]) {
        Ok(p) => p,
        Err(e) => return e.status as usize,
    };
    let plan = match routing::plan_attempts(
        cfg,
        &parsed.head.model,
        parsed.head.is_stream(),
        &fx.store,
        now_ms,
        7,
        &overrides,
    ) {
        Ok(p) => p,
        Err(e) => return e.status as usize,
    };
    let deps: Vec<_> = plan.attempts.iter().map(|a| a.deployment).collect();
    let mut admission = None;
    if let CallerId::Key(_) = caller {
        let reserve = metering::reservation(cfg, &deps, body.len(), &parsed.head);
        match llm_gateway::accounting::budget::admit(
            &fx.store,
            cfg.keys.as_ref(),
            &caller.caller(cfg),
            &parsed.head.model,
            reserve,
            now_ms,
        ) {
            Ok(a) => admission = Some(a),
            Err(r) => {
                if std::env::var_os("HOTPATH_SHOW").is_some() {
                    eprintln!("refused: {}", String::from_utf8_lossy(&r.error.to_body()));
                }
                return r.error.to_body().len();
            }
        }
    }
    let dep = deps[0];
    let mut attempt = pipeline::attempt(
        cfg,
        &parsed,
        dep,
        "chatcmpl-0123456789abcdef01234567",
        now_ms / 1000,
        &Default::default(),
    )
    .unwrap();
    if admission.is_some() {
        attempt.exchange.require_usage();
    }
    if fx.enforce {
        attempt
            .exchange
            .set_mid_stream_limit(pipeline::MidStreamLimit {
                prompt_tokens: 300,
                price: dep.price,
                limit_micro: u64::MAX,
            });
    }
    let mut n = attempt.upstream.body.len();
    attempt.exchange.response_headers(200);
    if stream {
        let last = fx.chunks.len() - 1;
        for (i, c) in fx.chunks.iter().enumerate() {
            if let Some(out) = attempt.exchange.stream_chunk(c, i == last) {
                n += out.len();
            }
        }
    } else if let Some((out, _)) = attempt.exchange.complete_body(&fx.answer) {
        n += out.len();
    }
    let usage = attempt.exchange.usage();
    if let Some(adm) = admission {
        let (cost, tokens) = metering::charge(dep, usage, body.len(), 0, true);
        if let Some(ev) = metering::settle(&adm, cost, &tokens, now_ms) {
            n += ev.len();
        }
        llm_gateway::accounting::budget::release(&fx.store, &adm).unwrap();
    }
    n + usage.map_or(0, |u| u.total_tokens as usize)
}

/// The measured region: `iterations` requests of one case. Callgrind counts
/// the instructions of this function and what it calls.
#[inline(never)]
fn measure(fx: &Fixture, stream: bool, iterations: usize) -> usize {
    let mut total = 0;
    for _ in 0..iterations {
        total += one_request(black_box(fx), stream);
    }
    total
}

fn fixture(case: &str) -> (Fixture, bool) {
    let cfg = config();
    let store = FakeStore::new();
    llm_gateway::routing::seed(&store, &cfg);
    if let Some(ring) = cfg.keys.as_ref() {
        llm_gateway::accounting::budget::seed(&store, ring);
    }
    let mut fx = Fixture {
        cfg,
        store,
        request: Vec::new(),
        answer: anthropic_answer(),
        chunks: Vec::new(),
        key: None,
        enforce: false,
    };
    let mut stream = false;
    match case {
        "passthrough_1k" => {
            fx.request = chat_1k("fast");
            fx.answer = openai_answer();
        }
        "anthropic_1k" => fx.request = chat_1k("smart"),
        "anthropic_100k" => fx.request = chat_100k("smart"),
        "anthropic_stream_500" | "anthropic_stream_500_enforced" => {
            let body = String::from_utf8(chat_1k("smart")).unwrap();
            fx.request = body.replacen("{", r#"{"stream": true, "#, 1).into_bytes();
            fx.chunks = anthropic_stream();
            fx.enforce = case.ends_with("enforced");
            stream = true;
        }
        "budget_refused" => {
            fx.request = chat_1k("smart");
            fx.key = Some(BROKE_KEY);
        }
        "budget_admitted" => {
            fx.request = chat_1k("smart");
            fx.key = Some(TEAM_KEY);
        }
        other => {
            eprintln!("unknown case `{other}`; cases:");
            for (name, what) in CASES {
                eprintln!("  {name:22} {what}");
            }
            std::process::exit(2);
        }
    }
    (fx, stream)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("memory") {
        memory();
        return;
    }
    let Some(case) = args.get(1) else {
        for (name, what) in CASES {
            println!("{name:22} {what}");
        }
        return;
    };
    let iterations: usize = args.get(2).map_or(100, |s| s.parse().unwrap());
    let (fx, stream) = fixture(case);
    // Once outside the measured region: the first request warms lazy state.
    let warm = one_request(&fx, stream);
    let total = measure(&fx, stream, iterations);
    println!(
        "{case}: request {} bytes, {iterations} iterations, check {warm}/{total}",
        fx.request.len()
    );
}
