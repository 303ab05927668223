"""The response cache in real Envoy (issue 18), LiteLLM's `litellm_settings.cache` unchanged: the
official openai SDK asks twice and the provider is called once (plain and streamed, stored one way
and served the other), what changes the answer misses, the per-request `cache` controls and
`Cache-Control`, TTL, namespaces; `type: redis` through real redis-server and webdis shared by two
Envoys, and a Redis outage that leaves requests served. The mocks record what reached them."""

from __future__ import annotations

import json
import time

import openai
import pytest

from conftest import HTTP_TIMEOUT, assert_envoy_log_clean, gateway_stats, mock_cluster_map, mock_deployment
from fleet_helpers import RedisFleet, wait_for


def cache_config(mocks, **params) -> dict:
    return {"model_list": [mock_deployment(mocks, "claude", "anthropic/claude-sonnet-4-5"),
                           mock_deployment(mocks, "gpt", "openai/gpt-4o-mini")],
            "litellm_settings": {"cache": True, "cache_params": params},
            "gateway": {"clusters": mock_cluster_map(mocks)}}


ENV = {"MOCK_OPENAI_KEY": "sk-oai-test", "MOCK_ANTHROPIC_KEY": "sk-ant-test"}


@pytest.fixture(scope="module")
def cached(start_gateway, mocks):
    with start_gateway(cache_config(mocks, ttl=2), env=ENV, name="cache-local") as gw:
        yield gw


def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key="client-key", max_retries=0,
                         timeout=HTTP_TIMEOUT)


def ask(gw, model: str, text: str, **kw):
    raw = sdk(gw).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kw)
    return raw.parse(), raw.headers


def stat(gw, name: str) -> int:
    return gateway_stats(gw, "llm_gateway.cache").get(f"wasmcustom.llm_gateway.cache.{name}", 0)


def calls(gw, provider: str) -> int:
    return len(gw.provider_requests(provider))


@pytest.mark.parametrize("model,provider", [("claude", "anthropic"), ("gpt", "openai")])
def test_second_identical_call_is_a_hit(cached, model, provider):
    cached.reset()
    first, h1 = ask(cached, model, f"cache me ({model})")
    second, h2 = ask(cached, model, f"cache me ({model})")
    assert calls(cached, provider) == 1, "the provider answered once"
    assert (h1["x-llm-gateway-cache"], h2["x-llm-gateway-cache"]) == ("miss", "hit")
    assert h1["x-litellm-cache-key"] == h2["x-litellm-cache-key"]
    # The SDK sees the same object (the id too: it is the stored answer's).
    assert second.model_dump() == first.model_dump()


def test_stored_plain_served_streaming_and_the_reverse(cached):
    cached.reset()
    plain, _ = ask(cached, "claude", "plain first")
    chunks = list(sdk(cached).chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "plain first"}], stream=True))
    assert calls(cached, "anthropic") == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"

    stores = stat(cached, "stores")
    streamed = list(sdk(cached).chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "streamed first"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    # A stream is stored when the provider's stream ends, which can be just after the
    # client read [DONE] (the translated stream ends at Anthropic's message_stop).
    wait_for(lambda: stat(cached, "stores") > stores, what="the streamed answer stored")
    again, h = ask(cached, "claude", "streamed first")
    assert calls(cached, "anthropic") == 2
    assert h["x-llm-gateway-cache"] == "hit"
    assert again.choices[0].message.content == text
    assert again.usage.completion_tokens == streamed[-1].usage.completion_tokens
    # Replayed streaming with the usage chunk the client asked for.
    replay = list(sdk(cached).chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "streamed first"}], stream=True,
        stream_options={"include_usage": True}))
    assert calls(cached, "anthropic") == 2
    assert replay[-1].usage.total_tokens == again.usage.total_tokens


def test_a_different_temperature_or_tool_list_misses(cached):
    cached.reset()
    ask(cached, "gpt", "vary me", temperature=0.2)
    ask(cached, "gpt", "vary me", temperature=0.3)
    ask(cached, "gpt", "vary me", temperature=0.2,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    assert calls(cached, "openai") == 3
    _, h = ask(cached, "gpt", "vary me", temperature=0.2, user="someone-else")
    assert h["x-llm-gateway-cache"] == "hit", "`user` does not change the answer"


def test_no_cache_no_store_and_the_cache_control_header(cached):
    cached.reset()
    _, h = ask(cached, "gpt", "controls", extra_body={"cache": {"no-store": True}})
    _, h = ask(cached, "gpt", "controls")
    assert h["x-llm-gateway-cache"] == "miss", "no-store stored nothing"
    _, h = ask(cached, "gpt", "controls", extra_body={"cache": {"no-cache": True}})
    assert h["x-llm-gateway-cache"] == "bypass"
    _, h = ask(cached, "gpt", "controls", extra_headers={"Cache-Control": "no-cache"})
    assert h["x-llm-gateway-cache"] == "bypass"
    assert calls(cached, "openai") == 4
    _, h = ask(cached, "gpt", "controls")
    assert h["x-llm-gateway-cache"] == "hit"
    assert calls(cached, "openai") == 4
    # A cache object the gateway cannot read is the client's error, before any provider call.
    with pytest.raises(openai.BadRequestError) as e:
        ask(cached, "gpt", "controls", extra_body={"cache": {"no-cache": "please"}})
    assert "cache" in str(e.value)
    assert calls(cached, "openai") == 4


def test_ttl_expiry_and_namespaces(cached):
    cached.reset()
    ask(cached, "gpt", "expire me")
    _, h = ask(cached, "gpt", "expire me")
    assert h["x-llm-gateway-cache"] == "hit"
    time.sleep(2.2)  # cache_params.ttl: 2
    _, h = ask(cached, "gpt", "expire me")
    assert h["x-llm-gateway-cache"] == "miss"
    _, a = ask(cached, "gpt", "ns", extra_body={"cache": {"namespace": "team-a"}})
    _, b = ask(cached, "gpt", "ns", extra_body={"cache": {"namespace": "team-b"}})
    assert b["x-llm-gateway-cache"] == "miss"
    assert a["x-litellm-cache-key"].startswith("team-a:") and b["x-litellm-cache-key"].startswith("team-b:")
    _, a2 = ask(cached, "gpt", "ns", extra_body={"cache": {"namespace": "team-a"}})
    assert a2["x-llm-gateway-cache"] == "hit"


def test_hits_are_counted_and_the_log_is_clean(cached):
    stats = gateway_stats(cached, "llm_gateway.cache")
    assert stats.get("wasmcustom.llm_gateway.cache.hits", 0) >= 5, stats
    assert stats.get("wasmcustom.llm_gateway.cache.misses", 0) >= 5, stats
    assert stats.get("wasmcustom.llm_gateway.cache.stores", 0) >= 5, stats
    assert_envoy_log_clean(cached)


# ------------------------------------------------------------------ Redis, fleet-wide


@pytest.fixture(scope="module")
def redis(e2e_dir):
    r = RedisFleet(e2e_dir / "redis-cache")
    yield r
    r.close()


def redis_config(mocks, prefix: str) -> dict:
    cfg = cache_config(mocks, type="redis", ttl=60, host="ignored", port=6379)
    cfg["counters"] = {"redis": {"cluster": "webdis", "key_prefix": prefix, "timeout": "500ms"}}
    return cfg


def test_two_envoys_share_a_redis_cache(start_gateway, mocks, redis):
    cfg = redis_config(mocks, "c1")
    with start_gateway(cfg, extra_clusters={"webdis": redis.webdis_port}, env=ENV, name="cache-r1") as g1, \
            start_gateway(cfg, extra_clusters={"webdis": redis.webdis_port}, env=ENV, name="cache-r2") as g2:
        g1.reset()
        first, h1 = ask(g1, "claude", "fleet-wide")
        # The store is sent after the answer: wait until Redis has it.
        wait_for(lambda: redis.keys("c1:cache:*"), what="the entry in Redis")
        second, h2 = ask(g2, "claude", "fleet-wide")
        assert calls(g1, "anthropic") == 1
        assert (h1["x-llm-gateway-cache"], h2["x-llm-gateway-cache"]) == ("miss", "hit")
        assert second.model_dump() == first.model_dump()
        ttl = int(redis.cli("TTL", redis.keys("c1:cache:*")[0]))
        assert 0 < ttl <= 60, "Redis expires the entry (cache_params.ttl)"
        assert_envoy_log_clean(g1)
        assert_envoy_log_clean(g2)


def test_redis_down_requests_still_served(start_gateway, mocks, e2e_dir):
    r = RedisFleet(e2e_dir / "redis-cache-down")
    try:
        cfg = redis_config(mocks, "c2")
        with start_gateway(cfg, extra_clusters={"webdis": r.webdis_port}, env=ENV, name="cache-down",
                           wasm_log_level="info") as gw:
            gw.reset()
            r.stop_redis()
            for _ in range(3):
                answer, h = ask(gw, "gpt", "no redis")
                assert answer.choices[0].message.content
                assert h["x-llm-gateway-cache"] == "miss"
            assert calls(gw, "openai") == 3
            stats = gateway_stats(gw, "llm_gateway.cache")
            assert stats.get("wasmcustom.llm_gateway.cache.errors", 0) >= 3, stats
            log = gw.log_path.read_text()
            assert log.count("response cache in Redis unavailable") >= 1
    finally:
        r.close()


def test_a_rendered_gateway_logs_hits_in_its_access_log(gateway_bin, mocks, e2e_dir, envoy_bin):
    """`llm-gateway render` of a LiteLLM config with `cache: true`: the access log's `cache` field."""
    from conftest import free_port, launch_envoy, stop_envoy
    from test_operations import FLUSH, read_access_log, render

    workdir = e2e_dir / "cache-rendered"
    port, admin_port = free_port(), free_port()
    access_log = workdir / "access.log"
    cfg = {"model_list": [{"model_name": "gpt", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{mocks.openai_port}/v1",
        "api_key": "os.environ/MOCK_OPENAI_KEY"}}],
        "litellm_settings": {"cache": True}}
    boot = render(gateway_bin, cfg, workdir, "cache", port, admin_port, access_log)
    proc, _, _ = launch_envoy(boot, workdir, "cache", envoy_bin, FLUSH, env=ENV)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0,
                               timeout=HTTP_TIMEOUT)
        for _ in range(2):
            client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "logged"}])
        lines = wait_for(lambda: [e for e in read_access_log(access_log) if e.get("cache")][:2]
                         if len([e for e in read_access_log(access_log) if e.get("cache")]) >= 2 else None,
                         what="two access-log lines")
        assert [e["cache"] for e in lines] == ["miss", "hit"]
        assert lines[0]["attempts"] == "1" and lines[1]["attempts"] in ("-", "", None), "a hit makes no attempt"
    finally:
        stop_envoy(proc)


# ------------------------------------------------------------------ semantic (redis-semantic)


class EmbeddingMock:
    """An OpenAI-compatible `/v1/embeddings` server whose vectors count words (hashed into 64
    dimensions, common words left out), so a paraphrase lands near its original and an unrelated
    question far from it; `fail = True` answers 500."""

    STOP = {"the", "a", "an", "is", "of", "what", "whats", "please", "tell", "me", "city", "to", "i",
            "do", "how"}

    def __init__(self) -> None:
        import http.server
        import threading
        mock = self
        self.requests: list[dict] = []
        self.fail = False

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: D401
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                mock.requests.append({"path": self.path, "body": body,
                                      "authorization": self.headers.get("authorization")})
                if mock.fail or self.path != "/v1/embeddings":
                    out, status = {"error": {"message": "embedding backend down", "type": "server_error"}}, 500
                else:
                    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    out, status = {"object": "list", "model": body["model"], "data": [
                        {"object": "embedding", "index": i, "embedding": mock.vector(t)}
                        for i, t in enumerate(texts)], "usage": {"prompt_tokens": 3, "total_tokens": 3}}, 200
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def vector(self, text: str) -> list[float]:
        import hashlib
        import re
        v = [0.0] * 64
        for w in re.findall(r"[a-z]+", text.lower().replace("'", "")):
            if w not in self.STOP:
                v[hashlib.sha256(w.encode()).digest()[0] % 64] += 1.0
        return v

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def semantic(start_gateway, mocks, e2e_dir):
    r = RedisFleet(e2e_dir / "redis-semantic")
    emb = EmbeddingMock()
    cfg = cache_config(mocks, type="redis-semantic", similarity_threshold=0.8,
                       redis_semantic_cache_embedding_model="embedder", ttl=60)
    cfg["model_list"].append({"model_name": "embedder", "litellm_params": {
        "model": "openai/text-embedding-3-small", "api_base": f"http://127.0.0.1:{emb.port}/v1",
        "api_key": "sk-embed"}})
    cfg["gateway"]["clusters"][f"127.0.0.1:{emb.port}"] = "mock_embed"
    cfg["counters"] = {"redis": {"cluster": "webdis", "key_prefix": "sem", "timeout": "500ms"}}
    try:
        with start_gateway(cfg, extra_clusters={"webdis": r.webdis_port, "mock_embed": emb.port}, env=ENV,
                           name="cache-semantic") as gw:
            gw.emb, gw.redis = emb, r  # type: ignore[attr-defined]
            yield gw
    finally:
        emb.close()
        r.close()


def stored(gw, n: int) -> None:
    """Wait until `n` semantic entries are in Redis (the store is sent after the answer)."""
    wait_for(lambda: len([k for k in gw.redis.keys("sem:sem:*") if k.count(":") >= 3]) >= n,
             what=f"{n} semantic entries in Redis")


def test_a_paraphrase_hits_and_an_unrelated_question_misses(semantic):
    semantic.reset()
    first, h1 = ask(semantic, "claude", "What is the capital of France?")
    assert h1["x-llm-gateway-cache"] == "miss"
    stored(semantic, 1)
    again, h2 = ask(semantic, "claude", "Please tell me: what's the capital city of France")
    assert h2["x-llm-gateway-cache"] == "hit"
    assert float(h2["x-llm-gateway-cache-similarity"]) >= 0.8
    assert again.choices[0].message.content == first.choices[0].message.content
    assert calls(semantic, "anthropic") == 1
    # LiteLLM's prompt: the messages' text, embedded through the gateway's own deployment.
    sent = semantic.emb.requests[-1]
    assert sent["body"]["input"] == "Please tell me: what's the capital city of France"
    assert sent["authorization"] == "Bearer sk-embed"
    _, h3 = ask(semantic, "claude", "How do I bake sourdough bread at home?")
    assert h3["x-llm-gateway-cache"] == "miss"
    assert float(h3["x-llm-gateway-cache-similarity"]) < 0.8
    assert calls(semantic, "anthropic") == 2


def test_another_model_never_reads_the_answer(semantic):
    semantic.reset()
    ask(semantic, "claude", "Which river flows through Paris?")
    stored(semantic, 1)
    _, h = ask(semantic, "gpt", "Which river flows through Paris?")
    assert h["x-llm-gateway-cache"] == "miss", "a cheap model's answer is never served for another"
    assert calls(semantic, "openai") == 1


def test_an_embedding_failure_is_a_plain_miss(semantic):
    semantic.reset()
    semantic.emb.fail = True
    try:
        for _ in range(2):
            answer, h = ask(semantic, "claude", "Is this cached while embeddings fail?")
            assert answer.choices[0].message.content
            assert h["x-llm-gateway-cache"] == "miss"
        assert calls(semantic, "anthropic") == 2
        stats = gateway_stats(semantic, "llm_gateway.cache")
        assert stats.get("wasmcustom.llm_gateway.cache.embedding_failures", 0) >= 2, stats
    finally:
        semantic.emb.fail = False
    assert_envoy_log_clean(semantic)
