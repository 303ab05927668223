"""Claude on Vertex AI end to end: the official openai SDK -> Envoy + llm-gateway -> the Claude-on-
Vertex mock (tests/mocks/vertex_claude_mock.py: Anthropic's Messages API at Google's rawPredict /
streamRawPredict endpoint, a bearer token, no `model` in the body, `anthropic_version:
vertex-2023-10-16`), asserting what the client got and what Vertex received."""

from __future__ import annotations

import json

import openai
import pytest

from conftest import HTTP_TIMEOUT, MockControl, attach_gateway
from vertex_claude_mock import VertexClaudeMock

TOKEN = "ya29.vertex-e2e"
MODEL = "claude-sonnet-4-5@20250929"
PATH = f"/v1/projects/proj-e2e/locations/us-east5/publishers/anthropic/models/{MODEL}"


@pytest.fixture(scope="module")
def vc_mock():
    m = VertexClaudeMock(token=TOKEN).start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def vc_gateway(start_gateway, vc_mock):
    cfg = {"model_list": [{"model_name": "claude-vertex", "litellm_params": {
        "model": f"vertex_ai/{MODEL}", "api_base": f"http://127.0.0.1:{vc_mock.port}",
        "vertex_project": "proj-e2e", "vertex_location": "us-east5", "api_key": "os.environ/VTX_TOKEN"}}],
        "router_settings": {"num_retries": 0, "disable_cooldowns": True},
        "gateway": {"clusters": {f"127.0.0.1:{vc_mock.port}": "mock_vertex_claude"}}}
    with start_gateway(cfg, extra_clusters={"mock_vertex_claude": vc_mock.port}, name="vertex-claude",
                       env={"VTX_TOKEN": TOKEN}) as g:
        yield g


@pytest.fixture
def vc(vc_gateway, vc_mock, request):
    attach_gateway(vc_gateway, request)
    vc_mock.reset()
    return vc_gateway


def only_request(gw, mock) -> dict:
    return MockControl(gw, mock).only_request()


def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key="client", max_retries=0, timeout=HTTP_TIMEOUT)


def test_plain_completion(vc, vc_mock):
    answer = sdk(vc).chat.completions.create(model="claude-vertex", max_tokens=64, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi Vertex"}])
    assert answer.choices[0].message.content.endswith("hi Vertex")
    assert answer.usage.total_tokens > 0
    got = only_request(vc, vc_mock)
    assert got["path"] == f"{PATH}:rawPredict"
    assert got["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert "x-api-key" not in got["headers"] and "client" not in json.dumps(got["header_list"])
    body = got["body"]
    assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    assert body["system"] == [{"type": "text", "text": "Be brief."}]


def test_stream(vc, vc_mock):
    chunks = list(sdk(vc).chat.completions.create(model="claude-vertex", max_tokens=64, stream=True,
                                                  stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": "stream please"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("stream please")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert only_request(vc, vc_mock)["path"] == f"{PATH}:streamRawPredict"


def test_tool_call(vc, vc_mock):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    answer = sdk(vc).chat.completions.create(model="claude-vertex", max_tokens=64, tools=tools, tool_choice="required",
                                             messages=[{"role": "user", "content": "weather?"}])
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    assert only_request(vc, vc_mock)["body"]["tool_choice"] == {"type": "any"}


def test_structured_outputs_name_their_beta_in_the_body(vc, vc_mock):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    sdk(vc).chat.completions.create(model="claude-vertex", max_tokens=64, messages=[{"role": "user", "content": "x"}],
                                    response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}})
    body = only_request(vc, vc_mock)["body"]
    assert body["anthropic_beta"] == ["structured-outputs-2025-11-13"]
    assert body["output_format"] == {"type": "json_schema", "schema": schema}


def test_a_wrong_token_is_googles_401_mapped(vc, vc_mock, vc_gateway):
    vc_mock.server.require_key = "ya29.other"
    try:
        with pytest.raises(openai.AuthenticationError) as e:
            sdk(vc).chat.completions.create(model="claude-vertex", max_tokens=8,
                                            messages=[{"role": "user", "content": "x"}])
        assert "authentication" in json.dumps(e.value.body).lower()
        assert TOKEN not in json.dumps(e.value.body)
    finally:
        vc_mock.server.require_key = TOKEN
