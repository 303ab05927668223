"""Azure OpenAI end to end. The client is the official `openai` SDK's plain `OpenAI` client pointed
at the gateway (clients talk OpenAI to the gateway, never Azure); the alias maps to an Azure
deployment served by tests/mocks/azure_mock.py. Asserts what the client got and what Azure
received (path with the deployment and api-version, `api-key`, body)."""

from __future__ import annotations

import json

import pytest

from conftest import (run_fault_rows, 
    MockControl,
    CLIENT_KEY, HTTP_TIMEOUT, OPENAI_HELLO, WEATHER_ARGS, WEATHER_TOOL, assert_no_client_secret, assert_openai_error,
    attach_gateway, chat_body, mock_deployment, user,
)
from azure_mock import AzureMock

KEY = "az-e2e-key"
VERSION = "2024-10-21"
DEPLOYMENT = "gpt4o-prod"
EMBED_DEPLOYMENT = "emb-small"
AZURE_MODEL = "gpt-4o-2024-11-20"
CHAT_PATH = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={VERSION}"


@pytest.fixture(scope="module")
def azure_mock():
    m = AzureMock(key=KEY, deployments={DEPLOYMENT: AZURE_MODEL, EMBED_DEPLOYMENT: "text-embedding-3-small"}).start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def azure_gateway(start_gateway, azure_mock, mocks):
    base = f"http://127.0.0.1:{azure_mock.port}"
    az = {"api_base": base, "api_key": "os.environ/AZURE_E2E_KEY", "api_version": VERSION}
    cfg = {
        "model_list": [
            {"model_name": "azure-gpt", "litellm_params": {"model": f"azure/{DEPLOYMENT}", **az}},
            {"model_name": "azure-nofb", "litellm_params": {"model": f"azure/{DEPLOYMENT}", **az}},
            {"model_name": "azure-embed", "litellm_params": {"model": f"azure/{EMBED_DEPLOYMENT}", **az}},
            {"model_name": "azure-badkey", "litellm_params": {"model": f"azure/{DEPLOYMENT}", **az,
                                                              "api_key": "wrong-key"}},
            # content-policy fallback target: the OpenAI mock
            mock_deployment(mocks, "safe-fallback", "openai/gpt-4o-mini"),
        ],
        "router_settings": {"disable_cooldowns": True, "num_retries": 0,
                            "content_policy_fallbacks": [{"azure-gpt": ["safe-fallback"]}]},
        "gateway": {"clusters": {f"127.0.0.1:{azure_mock.port}": "mock_azure",
                                 f"127.0.0.1:{mocks.openai_port}": "mock_openai"}},
    }
    with start_gateway(cfg, extra_clusters={"mock_azure": azure_mock.port}, name="azure",
                       env={"AZURE_E2E_KEY": KEY, "MOCK_OPENAI_KEY": "sk-oai-test"}) as g:
        yield g


class Azure(MockControl):
    """The gateway plus this mock's control API."""


@pytest.fixture
def az(azure_gateway, azure_mock, request):
    attach_gateway(azure_gateway, request)
    azure_mock.reset()
    return Azure(azure_gateway, azure_mock)


@pytest.fixture
def sdk(azure_gateway):
    from openai import OpenAI

    c = OpenAI(base_url=f"{azure_gateway.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=HTTP_TIMEOUT)
    yield c
    c.close()


def assert_azure_request(req: dict, path: str = CHAT_PATH) -> dict:
    assert req["method"] == "POST"
    assert req["path"] == path
    assert req["headers"]["api-key"] == KEY
    assert "authorization" not in req["headers"]
    assert_no_client_secret(req)
    assert req["body"]["model"] == path.split("/")[3]
    return req["body"]


def test_plain_chat_with_the_openai_sdk(az, sdk):
    raw = sdk.chat.completions.with_raw_response.create(
        model="azure-gpt", messages=[{"role": "system", "content": "Be brief."}, user("Hi there")],
        temperature=0.2, max_tokens=40, seed=3, user="end-user-1")
    out = raw.parse()
    assert out.choices[0].message.content == OPENAI_HELLO + "Hi there"
    assert out.choices[0].finish_reason == "stop"
    assert out.model == AZURE_MODEL
    assert out.usage.total_tokens > 0
    body = json.loads(raw.http_response.text)
    assert body["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert body["choices"][0]["content_filter_results"]["violence"]["severity"] == "safe"
    sent = assert_azure_request(az.only_request())
    assert sent == {"model": DEPLOYMENT, "messages": [{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": "Hi there"}],
                    "temperature": 0.2, "max_tokens": 40, "seed": 3, "user": "end-user-1"}


def test_streaming_with_usage_passes_azure_chunks(az, sdk):
    stream = sdk.chat.completions.create(model="azure-gpt", messages=[user("héllo 👋")], stream=True,
                                         stream_options={"include_usage": True})
    chunks = [c.model_dump() for c in stream]
    # Azure's first chunk: no choices, only the prompt filter results
    assert chunks[0]["choices"] == [] and chunks[0]["prompt_filter_results"][0]["prompt_index"] == 0
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
    assert text == OPENAI_HELLO + "héllo 👋"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    sent = assert_azure_request(az.only_request())
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_streaming_raw_ends_with_done(az):
    res = az.gw.stream(chat_body("azure-gpt", user("Hi"), stream=True))
    assert res.status == 200 and res.ends_with_done(), res.raw[-300:]
    assert res.headers["content-type"].startswith("text/event-stream")
    assert res.content() == OPENAI_HELLO + "Hi"
    assert not any("usage" in c and c["usage"] for c in res.chunks())


def test_tool_round_trip_with_the_openai_sdk(az, sdk):
    first = sdk.chat.completions.create(model="azure-gpt", messages=[user("Weather?")], tools=[WEATHER_TOOL],
                                        tool_choice="auto", parallel_tool_calls=False)
    msg = first.choices[0].message
    (call,) = msg.tool_calls
    assert json.loads(call.function.arguments) == WEATHER_ARGS
    second = sdk.chat.completions.create(
        model="azure-gpt", tools=[WEATHER_TOOL],
        messages=[user("Weather?"), msg.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    assert second.choices[0].message.content == "The tool returned: sunny"
    r1, r2 = az.requests()
    assert assert_azure_request(r1)["parallel_tool_calls"] is False
    assert assert_azure_request(r2)["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}


def test_filtered_completion_keeps_content_filter_finish(az, sdk):
    out = sdk.chat.completions.create(model="azure-gpt", messages=[user("FILTERME please")])
    assert out.choices[0].finish_reason == "content_filter"
    assert out.choices[0].message.content is None


def test_blocked_prompt_is_a_content_filter_error(az, sdk):
    import openai

    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="azure-nofb", messages=[user("BLOCKME")])
    assert exc.value.status_code == 400
    err = exc.value.body
    assert err["code"] == "content_filter" and err["param"] == "prompt"
    assert "content management policy" in err["message"]
    assert az.only_request()["response"]["status"] == 400


def test_blocked_prompt_goes_to_content_policy_fallbacks(az, mocks):
    r = az.gw.chat(chat_body("azure-gpt", user("BLOCKME now")))
    assert r.status == 200, r.body
    assert r.json()["choices"][0]["message"]["content"] == OPENAI_HELLO + "BLOCKME now"
    assert r.headers["x-llm-gateway-fallback"] == "true"
    (blocked,) = az.requests()
    assert blocked["response"]["status"] == 400


def test_wrong_key_is_401(az):
    r = az.gw.chat(chat_body("azure-badkey", user("Hi")))
    assert_openai_error(r, 401, "authentication_error", code="401", message_contains="Access denied")
    assert az.only_request()["headers"]["api-key"] == "wrong-key"


def test_rate_limit_is_429(az):
    az.script({"status": 429})
    r = az.gw.chat(chat_body("azure-gpt", user("Hi")))
    assert_openai_error(r, 429, "rate_limit_error", code="429", message_contains="exceeded token rate limit")


def test_embeddings_with_the_openai_sdk(az, sdk):
    out = sdk.embeddings.create(model="azure-embed", input=["a b", "c"], dimensions=6)
    assert len(out.data) == 2 and len(out.data[0].embedding) == 6
    assert out.usage.prompt_tokens == 3
    path = f"/openai/deployments/{EMBED_DEPLOYMENT}/embeddings?api-version={VERSION}"
    sent = assert_azure_request(az.only_request(), path)
    assert sent["input"] == ["a b", "c"] and sent["dimensions"] == 6


def test_fault_rows(az):
    run_fault_rows(az.gw, az.script, "azure-gpt")
