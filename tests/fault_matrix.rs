//! The fault matrix natively (issue 17), for every provider family behind the
//! gateway: the request flow through the in-memory host, each upstream
//! failure played by the driver, and what the client got checked. The same
//! faults against real Envoy are in `tests/e2e/test_upstream_answers.py`,
//! `test_errors.py`, `test_streaming.py` and `test_routing_faults.py`; the
//! table of both is `docs/reliability.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use serde_json::{json, Value};
use support::deployments::{defaults, extra_params};
use support::{sse_data, Gateway};

/// One fixture directory per wire family (and the OpenAI-shaped ones).
const FAMILIES: &[&str] = &[
    "openai",
    "mistral",
    "azure",
    "anthropic",
    "gemini",
    "vertex_ai",
    "bedrock",
    "cohere",
    "ollama",
];

fn gateway(family: &str) -> Gateway {
    let (model, key) = defaults(family);
    let mut params = json!({"model": format!("{family}/{model}"), "api_key": key});
    if key.is_empty() {
        params.as_object_mut().unwrap().remove("api_key");
    }
    if let Value::Object(extra) = extra_params(family) {
        params.as_object_mut().unwrap().extend(extra);
    }
    Gateway::new(json!({
        "model_list": [{"model_name": "f", "litellm_params": params}],
        "router_settings": {"allowed_fails": 1000},
        "gateway": {"clusters": {family: "c"}},
    }))
}

fn ask(stream: bool) -> Value {
    json!({"model": "f", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// The client got an OpenAI error with this status.
fn assert_error(family: &str, case: &str, status: u16, body: &[u8], want: u16) {
    assert_eq!(
        status,
        want,
        "{family} {case}: {}",
        String::from_utf8_lossy(body)
    );
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{family} {case}: not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    });
    assert!(v["error"]["message"].is_string(), "{family} {case}: {v}");
}

#[test]
fn a_200_that_is_no_answer_is_a_502_for_every_family() {
    for family in FAMILIES {
        for (case, body) in [
            ("empty", &b""[..]),
            ("not JSON", b"<html>hello</html>"),
            ("array", b"[1]"),
        ] {
            let mut gw = gateway(family);
            let mut rq = gw.chat(&[], &ask(false));
            rq.respond(200, "application/json", body);
            rq.finish();
            let got = rq.client();
            assert_error(family, case, got.status, &got.body, 502);
        }
    }
}

#[test]
fn error_statuses_keep_their_meaning_for_every_family() {
    for family in FAMILIES {
        for (upstream, body, want) in [
            (500, "<html><body>Internal Server Error</body></html>", 502),
            (502, "<html>Bad Gateway</html>", 502),
            (503, "<html>Service Unavailable</html>", 503),
            (504, "", 504),
            (429, r#"{"error":{"message":"slow down"}}"#, 429),
            (401, r#"{"error":{"message":"bad key"}}"#, 401),
        ] {
            let mut gw = gateway(family);
            let mut rq = gw.chat(&[], &ask(false));
            rq.respond_with(
                upstream,
                "text/html",
                &[("retry-after", "3")],
                body.as_bytes(),
            );
            rq.finish();
            let got = rq.client();
            assert_error(
                family,
                &format!("HTTP {upstream}"),
                got.status,
                &got.body,
                want,
            );
            if upstream == 429 {
                assert_eq!(
                    got.header("retry-after"),
                    Some("3"),
                    "{family}: the provider's Retry-After"
                );
            }
        }
    }
}

#[test]
fn a_stream_that_fails_ends_with_an_error_event_for_every_family() {
    for family in FAMILIES {
        let native = match *family {
            "bedrock" => "application/vnd.amazon.eventstream",
            "ollama" => "application/x-ndjson",
            _ => "text/event-stream",
        };
        for (case, body) in [
            ("empty", &b""[..]),
            ("garbage", b"\x00\x01 not a stream at all \xff\n\n"),
            ("cut", b"data: {\"id\":\"x\",\"choi"),
        ] {
            let mut gw = gateway(family);
            let mut rq = gw.chat(&[], &ask(true));
            rq.respond_stream_headers(200, native);
            rq.chunk(body, true);
            rq.finish();
            let got = rq.client();
            assert_eq!(got.status, 200, "{family} {case}");
            let data = sse_data(&got.body);
            let errors: Vec<Value> = data
                .iter()
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .filter(|v| v.get("error").is_some())
                .collect();
            assert_eq!(
                errors.len(),
                1,
                "{family} {case}: {:?}",
                String::from_utf8_lossy(&got.body)
            );
            assert!(
                !data
                    .iter()
                    .any(|d| d.contains("\"finish_reason\":\"stop\"")),
                "{family} {case}: a failed stream is not passed off as complete"
            );
        }
    }
}

#[test]
fn the_worker_serves_the_next_request_after_every_fault() {
    for family in FAMILIES {
        let mut gw = gateway(family);
        for body in [&b""[..], b"garbage", b"{\"x\":"] {
            let mut rq = gw.chat(&[], &ask(false));
            rq.respond(200, "application/json", body);
            rq.finish();
        }
        let mut rq = gw.chat(&[], &ask(false));
        assert!(
            rq.refused().is_none(),
            "{family}: still routed after the faults"
        );
        rq.finish();
    }
}
