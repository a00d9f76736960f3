"""The OpenAI-compatible backend against a REAL HTTP server on loopback that injects faults.

The server speaks the minimal completions API (text, and echo + logprobs for loglik) and, per request,
follows a script of faults: 429 with Retry-After, 500/503, a response slower than the client timeout, a
dropped connection, malformed JSON. Every loop here is bounded: retries are capped, waits are short.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gecko_distill.errors import BackendError, LoglikUnsupported
from gecko_distill.llm.base import GenerationParams, LoglikRequest
from gecko_distill.llm.openai_backend import OpenAIBackend


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.faults: list[str] = []  # consumed one per request; "ok" when empty
        self.lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.no_logprobs = False
        self.vllm_style = False  # answer loglik with vLLM's prompt_logprobs instead of echo logprobs
        self.auth: list[str | None] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that timed out on purpose leave broken pipes behind; nothing to report


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.auth.append(self.headers.get("Authorization"))
            self.server.requests += 1
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
            fault = self.server.faults.pop(0) if self.server.faults else "ok"
        try:
            if fault == "429":
                return self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0.2"})
            if fault in ("500", "503"):
                return self._send(int(fault), b'{"error": "server error"}')
            if fault == "400":
                return self._send(400, b'{"error": "bad model"}')
            if fault == "401echo":  # a server that echoes the credentials it got in its error body
                return self._send(401, json.dumps({"error": f"bad key {self.headers.get('Authorization')}"}).encode())
            if fault == "slow":
                time.sleep(1.5)
            if fault == "drop":
                self.connection.close()
                return None
            if fault == "junk":
                return self._send(200, b'{"choices": [ {"text": ')
            time.sleep(0.05)  # lets concurrent requests overlap, to observe the concurrency bound
            if self.path.endswith("/chat/completions"):
                n = sum(len(m["content"]) for m in body["messages"])
                return self._send(200, json.dumps({"choices": [{"message": {"content": f" chat:{n}"}}]}).encode())
            prompt = body["prompt"]
            if body.get("echo") and self.server.vllm_style:
                # vLLM: one {token_id: {logprob, rank, decoded_token}} per prompt token, None first; the
                # prompt token plus, when it is not the argmax, the top-1. Each char -0.1 (rank 2).
                plp = [None] + [{str(i): {"logprob": -0.1, "rank": 2, "decoded_token": ch},
                                 "0": {"logprob": -0.01, "rank": 1, "decoded_token": "?"}}
                                for i, ch in enumerate(prompt[1:])]
                return self._send(200, json.dumps({"choices": [{"text": "x", "logprobs": None,
                                                                "prompt_logprobs": plp}]}).encode())
            if body.get("echo"):
                # One "token" per character; log-prob -0.1 each, so a continuation of n chars scores -0.1 n.
                lp = None if self.server.no_logprobs else {
                    "tokens": list(prompt) + ["x"], "token_logprobs": [None] + [-0.1] * len(prompt),
                    "text_offset": list(range(len(prompt) + 1))}
                return self._send(200, json.dumps({"choices": [{"text": prompt + "x", "logprobs": lp}]}).encode())
            return self._send(200, json.dumps({"choices": [{"text": f" echo:{len(prompt)}"}]}).encode())
        finally:
            with self.server.lock:
                self.server.in_flight -= 1


@pytest.fixture()
def server() -> Iterator[_Server]:
    s = _Server()
    t = threading.Thread(target=s.serve_forever, daemon=True)
    t.start()
    yield s
    s.shutdown()
    s.server_close()


def _backend(s: _Server, **kw: Any) -> OpenAIBackend:
    args = {"base_url": f"http://127.0.0.1:{s.server_address[1]}/v1", "model": "m", "timeout_s": 1.0,
            "max_retries": 4, "backoff_s": 0.01, "max_concurrency": 3}
    args.update(kw)
    return OpenAIBackend(**args)


@pytest.mark.parametrize("fault", ["429", "500", "503", "slow", "drop", "junk"])
def test_each_fault_is_retried_then_succeeds(server, fault):
    server.faults = [fault, fault]
    out = _backend(server).generate(["hello"], prefix="P: ", params=GenerationParams(max_tokens=5))
    assert out == [" echo:8"]
    assert server.requests == 3  # two faults, then success


def test_retry_after_is_honoured(server):
    server.faults = ["429"]
    t0 = time.perf_counter()
    _backend(server).generate(["x"])
    assert time.perf_counter() - t0 >= 0.2  # waited the server's 0.2 s, not the 0.01 s backoff


def test_retries_are_capped_and_the_error_says_what_to_do(server):
    server.faults = ["503"] * 10
    with pytest.raises(BackendError, match=r"gave up after 3 attempts \(last: HTTP 503\).*rerun the same command"):
        _backend(server, max_retries=2).generate(["x"])
    assert server.requests == 3


def test_client_errors_are_not_retried(server):
    server.faults = ["400"]
    with pytest.raises(BackendError, match="HTTP 400.*not retried"):
        _backend(server).generate(["x"])
    assert server.requests == 1


def test_loglik_sums_the_continuation_tokens_and_concurrency_is_bounded(server):
    b = _backend(server, max_concurrency=2)
    reqs = [LoglikRequest("Passage: abc\nQuery:", " what") for _ in range(8)]
    res = b.loglik(reqs, prefix="PREFIX ")
    assert all(r.num_tokens == 5 and r.logprob == pytest.approx(-0.5) for r in res)
    assert server.max_in_flight <= 2


def test_server_without_prompt_logprobs_is_a_clear_error(server):
    server.no_logprobs = True
    with pytest.raises(LoglikUnsupported, match="did not return prompt log-probs") as err:
        _backend(server).loglik([LoglikRequest("c", " x")])
    assert "vllm serve" in str(err.value) and "docs/openai-server.md" in str(err.value)


def test_server_refusing_echo_is_a_clear_error_not_retried(server):
    """A hosted API answers an echo/logprobs request with 400: the same clear error, after one request."""
    server.faults = ["400"]
    with pytest.raises(LoglikUnsupported, match="refused a prompt log-prob request") as err:
        _backend(server).loglik([LoglikRequest("c", " x")])
    assert server.requests == 1 and "llama_cpp.server" in str(err.value)


def test_finished_rows_are_kept_when_the_backend_finally_fails(server, tmp_path):
    """A generation stage whose server dies mid-run keeps its finished shards; the rerun resumes."""
    from gecko_distill.config import CorpusConfig, GenerationConfig
    from gecko_distill.corpus import read_corpus
    from gecko_distill.generation import generate
    from gecko_distill.testing import ScriptedLLM

    passages = read_corpus(CorpusConfig(path="demo:gensim-wiki", limit=20))[0]
    cfg = GenerationConfig(num_passages=6, batch_size=2)
    good = ScriptedLLM(lambda p: " Find facts.\nQuery: copper prices in " + str(len(p)))
    backend = _backend(server, max_retries=1)

    class Flaky:
        """Scripted answers for the first two shards, then the real HTTP backend whose server fails."""

        fingerprint = good.fingerprint
        calls = 0

        def generate(self, prompts, *, prefix="", params=GenerationParams()):
            Flaky.calls += 1
            if Flaky.calls > 2:
                server.faults = ["503"] * 5
                return backend.generate(prompts, prefix=prefix, params=params)
            return good.generate(prompts, prefix=prefix, params=params)

    with pytest.raises(BackendError):
        generate(passages, Flaky(), cfg, out_dir=tmp_path / "g", progress=False)
    shards = sorted((tmp_path / "g" / "shards").glob("shard-*.jsonl"))
    assert [s.name for s in shards] == ["shard-00000.jsonl", "shard-00001.jsonl"]
    res = generate(passages, good, cfg, out_dir=tmp_path / "g", progress=False)  # resume
    assert res.summary["rows_in"] == 6


def test_vllm_prompt_logprobs_shape_is_understood(server):
    server.vllm_style = True
    res = _backend(server).loglik([LoglikRequest("Passage: abc\nQuery:", " what")], prefix="P ")
    assert res[0].num_tokens == 5 and res[0].logprob == pytest.approx(-0.5)


def test_chat_endpoint_and_client_side_stop_strings(server):
    b = _backend(server, chat=True)
    assert b.generate(["hello"], prefix="sys") == [" chat:8"]
    # more than the 4 stop strings the API takes: the rest are applied client-side
    out = _backend(server).generate(["hello"], params=GenerationParams(stop=("x", "y", "z", "w", ":")))
    assert out == [" echo"]


def test_api_key_only_from_env_and_never_in_logs_errors_or_repr(server, monkeypatch, caplog):
    import logging

    from gecko_distill.config import LLMConfig

    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("GECKO_TEST_API_KEY", secret)
    cfg = LLMConfig(backend="openai", model="m", base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
                    api_key_env="GECKO_TEST_API_KEY", max_retries=1, timeout_s=1.0)
    caplog.set_level(logging.DEBUG)
    b = OpenAIBackend.from_config(cfg)
    assert b.generate(["x"]) == [" echo:1"]
    assert server.auth[-1] == f"Bearer {secret}"  # the key is used ...
    server.faults = ["500", "500"]
    with pytest.raises(BackendError) as failed:
        b.generate(["x"])
    server.faults = ["401echo"]
    with pytest.raises(BackendError) as echoed:
        b.generate(["x"])
    assert "***" in str(echoed.value)
    for text in (str(failed.value), str(echoed.value), repr(b), b.fingerprint, caplog.text, cfg.model_dump_json()):
        assert secret not in text  # ... and never shown
    with pytest.raises(TypeError, match="not picklable"):
        import pickle

        pickle.dumps(b)


def test_a_dead_server_fails_fast_and_bounded(server):
    """Always too slow: the request loop ends after max_retries + 1 timeouts, with a clear message."""
    server.faults = ["slow"] * 10
    t0 = time.perf_counter()
    with pytest.raises(BackendError, match=r"gave up after 2 attempts \(last: timeout\)"):
        _backend(server, max_retries=1, timeout_s=0.3).generate(["x"])
    assert time.perf_counter() - t0 < 3.0
