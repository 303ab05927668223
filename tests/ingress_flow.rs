//! The Messages and legacy-completions ingresses through the whole flow
//! (the in-memory host of `tests/support`): what the provider received,
//! what the client got, in the client's API, for passthrough and translated
//! attempts, streams split at every byte, and errors in the client's shape.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::{key_hash, Gateway};

const OPENAI_ANSWER: &str = r#"{"id":"chatcmpl-up","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":2}}}"#;
const ANTHROPIC_ANSWER: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello from Claude"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":5}}"#;

fn openai_dep(alias: &str) -> Value {
    json!({"model_name": alias, "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": "http://a.test/v1", "api_key": "sk-upstream",
        "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}})
}

fn anthropic_dep(alias: &str) -> Value {
    json!({"model_name": alias, "litellm_params": {
        "model": "anthropic/claude-x", "api_base": "http://c.test", "api_key": "ak-upstream",
        "input_cost_per_token": 0.000003, "output_cost_per_token": 0.000015}})
}

fn gateway() -> Gateway {
    Gateway::new(json!({
        "model_list": [openai_dep("gpt"), anthropic_dep("claude")],
        "virtual_keys": [{"key_hash": key_hash("sk-team"), "key_alias": "team"},
                         {"key_hash": key_hash("sk-broke"), "key_alias": "broke", "max_budget": 0.0}],
        "gateway": {"clusters": {"a.test": "cluster_a", "c.test": "cluster_c"}}}))
}

const KEY: (&str, &str) = ("x-api-key", "sk-team");

fn messages(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 100, "stream": stream,
           "system": [{"type": "text", "text": "Be brief."}],
           "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]})
}

#[test]
fn messages_to_an_anthropic_deployment_pass_through_with_only_model_and_key_changed() {
    let mut gw = gateway();
    let body = messages("claude", false);
    let mut rq = gw.send(
        "/v1/messages",
        &[
            KEY,
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "tools-2024"),
        ],
        &body,
    );
    let up = rq.upstream();
    assert_eq!(up.path, "/v1/messages");
    assert_eq!(up.header("x-api-key"), Some("ak-upstream"));
    assert_eq!(up.header("anthropic-beta"), Some("tools-2024"));
    assert_eq!(up.header("anthropic-version"), Some("2023-06-01"));
    let mut want = body.clone();
    want["model"] = json!("claude-x");
    assert_eq!(up.body, want, "only the model changed");
    let sent_bytes = String::from_utf8(rq.host.request_body.clone()).unwrap();
    let client_bytes = serde_json::to_string(&body).unwrap();
    assert_eq!(
        sent_bytes,
        client_bytes.replacen("\"claude\"", "\"claude-x\"", 1)
    );
    rq.respond(200, "application/json", ANTHROPIC_ANSWER.as_bytes());
    let got = rq.client();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.text(),
        ANTHROPIC_ANSWER,
        "the provider's answer as it came"
    );
    rq.finish();
}

#[test]
fn messages_to_an_openai_deployment_are_translated_both_ways() {
    let mut gw = gateway();
    let body = json!({"model": "gpt", "max_tokens": 64, "stop_sequences": ["END"],
        "system": "Be brief.", "metadata": {"user_id": "u-1"},
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                {"type": "text", "text": "And this?"}]}]});
    let mut rq = gw.send("/v1/messages", &[KEY], &body);
    let up = rq.upstream();
    assert_eq!(up.path, "/v1/chat/completions");
    assert_eq!(up.header("authorization"), Some("Bearer sk-upstream"));
    assert_eq!(
        up.body,
        json!({"model": "gpt-4o-mini", "max_tokens": 64, "stop": ["END"], "user": "u-1",
            "parallel_tool_calls": false, "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "Looking.", "tool_calls": [{"id": "toolu_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                    {"type": "text", "text": "And this?"}]}]})
    );
    rq.respond(200, "application/json", OPENAI_ANSWER.as_bytes());
    let got = rq.client();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.json(),
        json!({"id": "msg_up", "type": "message", "role": "assistant", "model": "gpt-4o-mini",
            "content": [{"type": "text", "text": "Hi there"}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2, "output_tokens": 3}})
    );
}

/// A recorded OpenAI stream: thinking, text, two tool calls, the finish,
/// the usage chunk.
const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"Let me think\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hé, \"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"there \\\"you\\\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n",
    "data: [DONE]\n\n",
);

/// Anthropic's event names and data objects, in order.
fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_string();
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            let v: Value = serde_json::from_str(data).unwrap_or_else(|_| panic!("{data}"));
            assert_eq!(v["type"], json!(name), "event name matches its type");
            (name, v)
        })
        .collect()
}

fn stream_through(chunks: &[&[u8]]) -> Vec<u8> {
    let mut gw = gateway();
    let mut rq = gw.send("/v1/messages", &[KEY], &messages("gpt", true));
    let up = rq.upstream();
    assert_eq!(up.body["stream"], true);
    assert_eq!(up.body["stream_options"]["include_usage"], true);
    rq.respond_stream_headers(200, "text/event-stream");
    for (i, c) in chunks.iter().enumerate() {
        rq.chunk(c, i + 1 == chunks.len());
    }
    rq.client().body
}

#[test]
fn an_openai_stream_becomes_anthropic_events_for_every_split() {
    let whole = stream_through(&[OPENAI_STREAM.as_bytes()]);
    let ev = events(&whole);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(ev[0].1["message"]["id"], "msg_s");
    assert_eq!(ev[0].1["message"]["model"], "gpt-4o-mini");
    assert_eq!(ev[2].1["content_block"]["type"], "thinking");
    assert_eq!(
        ev[3].1["delta"],
        json!({"type": "thinking_delta", "thinking": "Let me think"})
    );
    assert_eq!(ev[6].1["delta"]["text"], "Hé, ");
    assert_eq!(ev[7].1["delta"]["text"], "there \"you\"");
    assert_eq!(
        ev[9].1["content_block"],
        json!({"type": "tool_use", "id": "call_a", "name": "f", "input": {}})
    );
    assert_eq!(ev[9].1["index"], 2);
    assert_eq!(
        ev[11].1["delta"],
        json!({"type": "input_json_delta", "partial_json": "1}"})
    );
    assert_eq!(ev[13].1["content_block"]["id"], "call_b");
    assert_eq!(ev[13].1["index"], 3);
    assert_eq!(
        ev[16].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
               "usage": {"input_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 4}})
    );
    let bytes = OPENAI_STREAM.as_bytes();
    for cut in 1..bytes.len() {
        let got = stream_through(&[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(got, whole, "split at byte {cut}");
    }
    for size in [1, 7, 64] {
        let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
        assert_eq!(stream_through(&pieces), whole, "pieces of {size}");
    }
}

#[test]
fn an_anthropic_stream_passes_through_as_it_came() {
    let mut gw = gateway();
    let mut rq = gw.send("/v1/messages", &[KEY], &messages("claude", true));
    assert_eq!(rq.upstream().body["stream"], true);
    rq.respond_stream_headers(200, "text/event-stream");
    let native: String = support::anthropic_text_stream(&["Hel", "lo"]).concat();
    let (a, b) = native.as_bytes().split_at(100);
    rq.chunk(a, false);
    rq.chunk(b, true);
    assert_eq!(rq.client().text(), native);
}

#[test]
fn a_truncated_stream_ends_with_an_error_event_not_a_clean_stop() {
    let cut = OPENAI_STREAM.find("data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\"").unwrap();
    let got = stream_through(&[&OPENAI_STREAM.as_bytes()[..cut]]);
    let ev = events(&got);
    let (last, data) = ev.last().unwrap();
    assert_eq!(last, "error", "{ev:?}");
    assert_eq!(data["error"]["type"], "api_error");
    assert!(!ev.iter().any(|(n, _)| n == "message_stop"));
}

#[test]
fn refusals_on_messages_are_anthropic_shaped() {
    let mut gw = gateway();
    type Case<'a> = (Vec<(&'a str, &'a str)>, Value, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("x-api-key", "sk-wrong")],
            messages("gpt", false),
            401,
            "authentication_error",
        ),
        (
            vec![("authorization", "Bearer sk-broke")],
            messages("gpt", false),
            429,
            "rate_limit_error",
        ),
        (vec![KEY], messages("nope", false), 404, "not_found_error"),
        (
            vec![KEY],
            json!({"model": "gpt", "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
        (
            vec![KEY],
            json!({"model": "gpt", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
        (
            vec![KEY],
            json!({"model": "gpt", "max_tokens": 5, "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
    ];
    for (headers, body, status, kind) in cases {
        let rq = gw.send("/v1/messages", &headers, &body);
        let r = rq
            .host
            .local_reply
            .clone()
            .unwrap_or_else(|| panic!("not refused: {body}"));
        let v = r.json();
        assert_eq!(r.status, status, "{v}");
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(rq.host.calls.is_empty());
    }
}

#[test]
fn a_zero_budget_key_is_refused_on_messages() {
    let mut gw = gateway();
    let rq = gw.send(
        "/v1/messages",
        &[("x-api-key", "sk-broke")],
        &messages("claude", false),
    );
    let r = rq.refused().expect("refused").clone();
    let v = r.json();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(r.status, 429);
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("udget"),
        "{v}"
    );
}

#[test]
fn server_tools_still_reach_anthropic() {
    let mut gw = gateway();
    let body = json!({"model": "claude", "max_tokens": 5, "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "messages": [{"role": "user", "content": "x"}]});
    let rq = gw.send("/v1/messages", &[KEY], &body);
    assert_eq!(rq.upstream().body["tools"], body["tools"]);
}

#[test]
fn provider_errors_on_messages_are_anthropic_shaped() {
    let mut gw = gateway();
    let mut rq = gw.send("/v1/messages", &[KEY], &messages("gpt", false));
    rq.respond(400, "application/json", br#"{"error":{"message":"bad thing","type":"invalid_request_error","param":null,"code":null}}"#);
    let got = rq.client();
    assert_eq!(got.status, 400);
    assert_eq!(
        got.json(),
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad thing"}})
    );
    let mut rq = gw.send("/v1/messages", &[KEY], &messages("claude", false));
    rq.respond(
        404,
        "application/json",
        br#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"}}"#,
    );
    let got = rq.client();
    assert_eq!(got.status, 404);
    assert_eq!(
        got.json()["error"],
        json!({"type": "not_found_error", "message": "model: claude-x"})
    );
}

#[test]
fn completions_to_a_chat_provider_are_translated() {
    let mut gw = gateway();
    let mut rq = gw.send(
        "/v1/completions",
        &[("authorization", "Bearer sk-team")],
        &json!({"model": "claude", "prompt": "Say hi", "max_tokens": 7, "temperature": 0}),
    );
    let up = rq.upstream();
    assert_eq!(up.path, "/v1/messages");
    assert_eq!(
        up.body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}])
    );
    assert_eq!(up.body["max_tokens"], 7);
    rq.respond(200, "application/json", ANTHROPIC_ANSWER.as_bytes());
    let v = rq.client().json();
    assert_eq!(v["object"], "text_completion", "{v}");
    assert_eq!(v["choices"][0]["text"], "Hello from Claude");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 15);
}

#[test]
fn completions_stream_from_a_chat_provider() {
    let mut gw = gateway();
    let mut rq = gw.send(
        "/v1/completions",
        &[("authorization", "Bearer sk-team")],
        &json!({"model": "claude", "prompt": ["Say hi"], "stream": true}),
    );
    assert_eq!(rq.upstream().body["max_tokens"], 16);
    rq.respond_stream_headers(200, "text/event-stream");
    rq.chunk(
        support::anthropic_text_stream(&["Hel", "lo"])
            .concat()
            .as_bytes(),
        true,
    );
    let data = support::sse_data(&rq.client().body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .inspect(|v| assert_eq!(v["object"], "text_completion"))
        .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "Hello");
}

#[test]
fn completions_to_an_openai_server_pass_through() {
    let mut gw = gateway();
    let body = json!({"model": "gpt", "prompt": ["a", "b"], "echo": true, "max_tokens": 3});
    let mut rq = gw.send(
        "/v1/completions",
        &[("authorization", "Bearer sk-team")],
        &body,
    );
    let up = rq.upstream();
    assert_eq!(up.path, "/v1/completions");
    assert_eq!(up.header("authorization"), Some("Bearer sk-upstream"));
    let mut want = body.clone();
    want["model"] = json!("gpt-4o-mini");
    assert_eq!(up.body, want);
    let answer = br#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"text":"ax","logprobs":null,"finish_reason":"length"},{"index":1,"text":"bx","logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":2,"completion_tokens":6,"total_tokens":8}}"#;
    rq.respond(200, "application/json", answer);
    assert_eq!(rq.client().body, answer.to_vec());
}

#[test]
fn several_prompts_cannot_go_to_a_chat_provider() {
    let mut gw = gateway();
    let rq = gw.send(
        "/v1/completions",
        &[("authorization", "Bearer sk-team")],
        &json!({"model": "claude", "prompt": ["a", "b"]}),
    );
    let r = rq.refused().expect("refused");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "prompt");
}

#[test]
fn one_model_is_described_and_others_are_not_found() {
    let gw = gateway();
    let get = |path: &str| {
        let mut host = support::FakeHost::new(Rc::clone(&gw.store));
        host.request_headers = vec![
            (":method".into(), "GET".into()),
            (":path".into(), path.into()),
            ("authorization".into(), "Bearer sk-team".into()),
        ];
        let mut flow = llm_gateway::pipeline::RequestFlow::new(Rc::clone(&gw.cfg));
        flow.on_request_headers(true, &mut host);
        host.local_reply.expect("answered")
    };
    let r = get("/v1/models/claude");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], "claude");
    assert_eq!(r.json()["object"], "model");
    let r = get("/v1/models/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
}

#[test]
fn count_tokens_passes_through_to_anthropic_and_is_estimated_elsewhere() {
    let mut gw = gateway();
    let body = json!({"model": "claude", "system": "Be brief.",
        "messages": [{"role": "user", "content": "hello there"}]});
    let mut rq = gw.send("/v1/messages/count_tokens", &[KEY], &body);
    let up = rq.upstream();
    assert_eq!(up.path, "/v1/messages/count_tokens");
    assert_eq!(up.header("x-api-key"), Some("ak-upstream"));
    let mut want = body.clone();
    want["model"] = json!("claude-x");
    assert_eq!(up.body, want, "only the model changed: no max_tokens added");
    rq.respond(200, "application/json", br#"{"input_tokens":7}"#);
    assert_eq!(rq.client().text(), r#"{"input_tokens":7}"#);

    let mut body = body;
    body["model"] = json!("gpt");
    let rq = gw.send("/v1/messages/count_tokens", &[KEY], &body);
    let r = rq.refused().expect("answered locally");
    assert_eq!(r.status, 200);
    // "Be brief." + "hello there" = 20 bytes: 5 tokens.
    assert_eq!(r.json(), json!({"input_tokens": 5}));
    assert_eq!(r.header("x-llm-gateway-token-count"), Some("estimate"));
    assert!(rq.host.calls.is_empty());

    let rq = gw.send(
        "/v1/messages/count_tokens",
        &[KEY],
        &json!({"model": "gpt"}),
    );
    let r = rq.refused().expect("refused");
    assert_eq!(
        (r.status, r.json()["error"]["type"].clone()),
        (400, json!("invalid_request_error"))
    );
}

#[test]
fn thinking_is_a_reasoning_effort_for_providers_that_do_not_read_it() {
    let mut gw = gateway();
    let with = |model: &str, thinking: Value| {
        json!({"model": model, "max_tokens": 5000, "thinking": thinking,
               "messages": [{"role": "user", "content": "x"}]})
    };
    for (budget, effort) in [
        (1024, "low"),
        (2048, "medium"),
        (8000, "high"),
        (100, "minimal"),
    ] {
        let rq = gw.send(
            "/v1/messages",
            &[KEY],
            &with("gpt", json!({"type": "enabled", "budget_tokens": budget})),
        );
        let sent = rq.upstream().body;
        assert_eq!(sent["reasoning_effort"], effort, "{budget}");
        assert!(sent.get("thinking").is_none(), "{sent}");
    }
    let rq = gw.send(
        "/v1/messages",
        &[KEY],
        &with("gpt", json!({"type": "disabled"})),
    );
    let sent = rq.upstream().body;
    assert!(
        sent.get("thinking").is_none() && sent.get("reasoning_effort").is_none(),
        "{sent}"
    );
    let thinking = json!({"type": "enabled", "budget_tokens": 2048});
    let rq = gw.send("/v1/messages", &[KEY], &with("claude", thinking.clone()));
    assert_eq!(
        rq.upstream().body["thinking"],
        thinking,
        "Anthropic keeps it"
    );
}

#[test]
fn thinking_reaches_gemini_as_its_thinking_budget() {
    let mut gw = Gateway::new(json!({
        "model_list": [{"model_name": "gem", "litellm_params": {"model": "gemini/gemini-2.5-flash",
            "api_base": "http://g.test", "api_key": "AIza-k"}}],
        "gateway": {"clusters": {"g.test": "cluster_g"}}}));
    let body = json!({"model": "gem", "max_tokens": 5000, "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": "x"}]});
    let rq = gw.send("/v1/messages", &[], &body);
    let up = rq.upstream();
    assert!(up.path.contains(":generateContent"), "{}", up.path);
    assert_eq!(
        up.body["generationConfig"]["thinkingConfig"]["thinkingBudget"], 2048,
        "{}",
        up.body
    );
}
