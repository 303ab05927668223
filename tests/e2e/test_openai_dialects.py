"""The OpenAI-compatible family in real Envoy, one deployment per dialect, all served by the OpenAI
mock, through the official openai SDK: each provider gets the request LiteLLM's per-provider
config sends it (crates/core/src/provider/openai_compat/dialect.rs; the README's table), and answers that carry
provider fields come back as LiteLLM gives them (OpenRouter's and Groq's `reasoning` as
`reasoning_content`, Perplexity's citations at the top)."""

from __future__ import annotations

import json

import openai
import pytest

from conftest import HTTP_TIMEOUT, mock_api_bases, mock_cluster_map

TOOLS = [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {
    "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}}}]

DIALECTS = {
    "groq": "groq/llama-3.3-70b-versatile",
    "groq-oss": "groq/openai/gpt-oss-120b",
    "fireworks": "fireworks_ai/llama-v3p1-8b-instruct",
    "grok4": "xai/grok-4",
    "openrouter": "openrouter/anthropic/claude-sonnet-4.5",
    "perplexity": "perplexity/sonar",
    "cerebras": "cerebras/llama3.1-8b",
    "deepseek": "deepseek/deepseek-chat",
    "vllm": "hosted_vllm/Qwen/Qwen2.5-7B-Instruct",
    "o3": "openai/o3-mini",
    "databricks": "databricks/databricks-meta-llama-3-3-70b-instruct",
    "vllm-as-openai": "openai/local-model",
    "hf": "huggingface/together/deepseek-ai/DeepSeek-R1",
}


@pytest.fixture(scope="module")
def dialects(start_gateway, mocks):
    base = mock_api_bases(mocks)["openai"]
    cfg = {"model_list": [{"model_name": alias, "litellm_params": {
        "model": model, "api_base": base, "api_key": "os.environ/MOCK_OPENAI_KEY"}} for alias, model in DIALECTS.items()]
        # a TGI / Inference Endpoints URL: the host alone, /v1 added by the gateway
        + [{"model_name": "hf-tgi", "litellm_params": {"model": "huggingface/tgi", "api_base": base.removesuffix("/v1"),
                                                       "api_key": "os.environ/MOCK_OPENAI_KEY"}}],
        "router_settings": {"num_retries": 0, "disable_cooldowns": True},
        "gateway": {"clusters": mock_cluster_map(mocks)}}
    with start_gateway(cfg, env={"MOCK_OPENAI_KEY": "sk-oai-test"}, name="openai-dialects") as gw:
        yield gw


def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key="client", max_retries=0, timeout=HTTP_TIMEOUT)


def sent(gw, **kw) -> dict:
    gw.reset()
    answer = sdk(gw).chat.completions.create(**kw)
    assert answer.choices
    return gw.only_request("openai")["body"]


def test_groq_gets_max_tokens_and_no_user(dialects):
    body = sent(dialects, model="groq", messages=[{"role": "developer", "content": "d"}, {"role": "user", "content": "q"}],
                max_completion_tokens=30, user="u-1")
    assert (body["max_tokens"], body["messages"][0]["role"]) == (30, "system")
    assert "user" not in body and "max_completion_tokens" not in body


CITY = {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": {
    "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": False}}}


def test_groq_json_schema_as_a_forced_tool_whose_call_is_the_content(dialects):
    # llama-3.3 has no structured outputs on Groq: LiteLLM's forced json_tool_call, answered as content.
    dialects.reset()
    r = sdk(dialects).chat.completions.create(model="groq", messages=[{"role": "user", "content": "A city"}],
                                              response_format=CITY)
    assert r.choices[0].finish_reason == "stop" and not r.choices[0].message.tool_calls
    assert set(json.loads(r.choices[0].message.content)) == {"name"}
    body = dialects.only_request("openai")["body"]
    assert "response_format" not in body
    assert body["tools"] == [{"type": "function", "function": {
        "name": "json_tool_call", "parameters": CITY["json_schema"]["schema"]}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "json_tool_call"}}
    # streamed: the call's argument pieces arrive as content
    dialects.reset()
    chunks = list(sdk(dialects).chat.completions.create(
        model="groq", messages=[{"role": "user", "content": "A city"}], response_format=CITY, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert set(json.loads(text)) == {"name"}
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    # with tools too: refused, as LiteLLM refuses it
    with pytest.raises(openai.BadRequestError) as e:
        sdk(dialects).chat.completions.create(model="groq", messages=[{"role": "user", "content": "q"}],
                                              response_format=CITY, tools=TOOLS)
    assert e.value.body["param"] == "response_format"


def test_groq_models_with_structured_outputs_get_json_schema(dialects):
    body = sent(dialects, model="groq-oss", messages=[{"role": "user", "content": "A city"}], response_format=CITY)
    assert body["response_format"] == CITY and "tools" not in body


def test_hugging_face_router_provider_and_tgi_endpoint(dialects):
    body = sent(dialects, model="hf", messages=[{"role": "developer", "content": "d"}, {"role": "user", "content": "q"}])
    assert body["model"] == "deepseek-ai/DeepSeek-R1:together" and body["messages"][0]["role"] == "developer"
    dialects.reset()
    r = sdk(dialects).chat.completions.create(model="hf-tgi", messages=[{"role": "user", "content": "q"}])
    assert r.choices[0].message.content.endswith("q")
    req = dialects.only_request("openai")
    assert req["path"] == "/v1/chat/completions" and req["body"]["model"] == "tgi"


def test_fireworks_gets_its_account_path_and_any(dialects):
    body = sent(dialects, model="fireworks", messages=[{"role": "user", "content": "q"}], tools=TOOLS,
                tool_choice="required")
    assert body["model"] == "accounts/fireworks/models/llama-v3p1-8b-instruct"
    assert body["tool_choice"] == "any"
    assert "strict" not in body["tools"][0]["function"]


def test_grok_4_refuses_stop_and_drops_it_on_request(dialects):
    with pytest.raises(openai.BadRequestError) as e:
        sdk(dialects).chat.completions.create(model="grok4", messages=[{"role": "user", "content": "q"}], stop=["x"])
    assert e.value.body["param"] == "stop"
    body = sent(dialects, model="grok4", messages=[{"role": "user", "content": "q"}], stop=["x"],
                extra_body={"drop_params": True})
    assert "stop" not in body and "drop_params" not in body


def test_openrouter_asks_usage_and_reasoning_comes_back_as_reasoning_content(dialects):
    dialects.reset()
    dialects.script("openai", {"response": {
        "id": "gen-1", "object": "chat.completion", "created": 1, "model": "anthropic/claude-sonnet-4.5",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "4",
                                                                         "reasoning": "2+2"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost": 0.00001}}})
    answer = sdk(dialects).chat.completions.create(model="openrouter", messages=[{"role": "user", "content": "q"}],
                                                   user="u-1")
    assert answer.choices[0].message.content == "4"
    assert answer.choices[0].message.model_extra["reasoning_content"] == "2+2"
    body = dialects.only_request("openai")["body"]
    assert body["usage"] == {"include": True} and "user" not in body


def test_openrouter_stream_reasoning(dialects):
    chunk = ('data: {"id":"g","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
             '"delta":{"role":"assistant","content":"","reasoning":"think"},"finish_reason":null}]}\n\n'
             'data: {"id":"g","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
             '"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\n'
             'data: {"id":"g","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
             '"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\ndata: [DONE]\n\n')
    dialects.reset()
    dialects.script("openai", {"sse": chunk})
    chunks = list(sdk(dialects).chat.completions.create(model="openrouter", stream=True,
                                                        messages=[{"role": "user", "content": "q"}]))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks if c.choices)
    assert reasoning == "think"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ok"


def test_perplexity_refuses_tools_and_passes_citations(dialects):
    with pytest.raises(openai.BadRequestError) as e:
        sdk(dialects).chat.completions.create(model="perplexity", messages=[{"role": "user", "content": "q"}],
                                              tools=TOOLS)
    assert e.value.body["param"] == "tools"
    dialects.reset()
    dialects.script("openai", {"response": {
        "id": "p1", "object": "chat.completion", "created": 1, "model": "sonar", "citations": ["https://a.test"],
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "A [1]"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}})
    answer = sdk(dialects).chat.completions.create(model="perplexity", messages=[{"role": "user", "content": "q"}],
                                                   user="u")
    assert answer.model_extra["citations"] == ["https://a.test"]
    assert "user" not in dialects.only_request("openai")["body"]


def test_cerebras_and_deepseek(dialects):
    body = sent(dialects, model="cerebras", messages=[{"role": "user", "content": "q"}], max_completion_tokens=8)
    assert body["max_tokens"] == 8
    body = sent(dialects, model="deepseek", messages=[{"role": "user", "content": [
        {"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]}])
    assert body["messages"] == [{"role": "user", "content": "hello world"}]


def test_vllm_schemas_and_openai_at_another_base(dialects):
    body = sent(dialects, model="vllm", messages=[{"role": "user", "content": "q"}], tools=TOOLS)
    fn = body["tools"][0]["function"]
    assert "strict" not in fn and "additionalProperties" not in fn["parameters"]
    body = sent(dialects, model="vllm-as-openai",
                messages=[{"role": "developer", "content": "d"}, {"role": "user", "content": "q"}])
    assert body["messages"][0]["role"] == "system"


def test_o_series_gets_max_completion_tokens_and_refuses_temperature(dialects):
    body = sent(dialects, model="o3", messages=[{"role": "developer", "content": "d"}, {"role": "user", "content": "q"}],
                max_tokens=40)
    assert body["max_completion_tokens"] == 40 and "max_tokens" not in body
    assert body["messages"][0]["role"] == "developer"
    with pytest.raises(openai.BadRequestError) as e:
        sdk(dialects).chat.completions.create(model="o3", messages=[{"role": "user", "content": "q"}], temperature=0.3)
    assert e.value.body["param"] == "temperature"


def test_databricks(dialects):
    body = sent(dialects, model="databricks", messages=[{"role": "user", "content": "q"}], max_completion_tokens=8,
                user="u")
    assert body["max_tokens"] == 8 and "user" not in body
    with pytest.raises(openai.BadRequestError) as e:
        sdk(dialects).chat.completions.create(model="databricks", messages=[{"role": "user", "content": "q"}], seed=1)
    assert e.value.body["param"] == "seed"
