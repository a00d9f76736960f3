"""Secrets: an API key comes only from the environment variable the config names (``llm.api_key_env``)
and is never written anywhere: not in configs, manifests, reports, the LLM cache, console output or logs.

Each test puts a recognisable fake key in the environment, runs, then scans every file under the run
directory, the captured logs (DEBUG, all loggers) and the console output for it.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gecko_distill.cli import app
from gecko_distill.config import LLMConfig, PipelineConfig, validate_config
from gecko_distill.errors import ConfigError

KEY = "sk-gecko-FAKE-7f3a9c1e5b2d4086a1c3e5f7b9d0e2f4"
ENV = "GECKO_TEST_API_KEY"
runner = CliRunner()


def _forms(key: str) -> list[bytes]:
    """The key as written plainly, JSON-escaped, and base64-encoded (as in a Basic auth header)."""
    return [key.encode(), json.dumps(key).encode()[1:-1], base64.b64encode(key.encode()),
            base64.b64encode(f":{key}".encode())]


def assert_no_key(run_dir: Path, *texts: str) -> int:
    """Scan every file under ``run_dir`` (bytes, so SQLite and Parquet are covered) and ``texts``."""
    n = 0
    for f in sorted(run_dir.rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            for form in _forms(KEY):
                assert form not in data, f"the API key leaked into {f}"
            n += 1
    for t in texts:
        for form in _forms(KEY):
            assert form.decode() not in t, "the API key leaked into the logs or console output"
    return n


@pytest.fixture
def all_logs(tmp_path: Path) -> Iterator[Path]:
    """Every log record of every logger, DEBUG and up, into a file (third-party HTTP loggers included)."""
    path = tmp_path / "all.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    noisy = {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "urllib3", "openai")}
    for n in noisy:
        logging.getLogger(n).setLevel(logging.DEBUG)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
        handler.close()
        for n, lvl in noisy.items():
            logging.getLogger(n).setLevel(lvl)


def test_the_scan_finds_a_planted_key(tmp_path: Path) -> None:
    """The scanner itself works: a key hidden in a nested binary file or base64 in a log is found."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "blob.bin").write_bytes(b"\x00\x01" + KEY.encode() + b"\xff")
    with pytest.raises(AssertionError, match="leaked into .*blob.bin"):
        assert_no_key(tmp_path)
    with pytest.raises(AssertionError, match="logs"):
        basic = base64.b64encode(f":{KEY}".encode()).decode()
        assert_no_key(tmp_path / "a" / "nothing", f"Authorization: Basic {basic}")


# --------------------------------------------------------------------------------------- configs
def test_config_has_no_place_for_a_key(tmp_path: Path) -> None:
    """A key typed into the config is refused, and the error does not repeat it."""
    for toml in (f'[llm]\nbackend = "openai"\napi_key = "{KEY}"\n',  # a field that does not exist
                 f'[llm]\nbackend = "openai"\napi_key_env = "{KEY}"\n'):  # the key where its NAME belongs
        cfg = tmp_path / "c.toml"
        cfg.write_text(toml)
        r = runner.invoke(app, ["run", str(cfg)], env={"COLUMNS": "300"})
        assert r.exit_code == 2, r.output
        assert "llm.api_key" in r.output
        assert KEY not in r.output
    assert "api_key_env" in r.output and "NAME of an environment variable" in r.output
    assert "api_key" not in LLMConfig.model_fields  # there is no field a key could be stored in
    for bad in ({"llm": {"api_key_env": KEY}}, {"llm": {"api_key": KEY}}, {"llm": {"api_key_env": 12345}}):
        with pytest.raises(ConfigError) as e:
            validate_config(bad, PipelineConfig)
        assert KEY not in str(e.value) and "12345" not in str(e.value)


def test_pipeline_run_never_writes_the_key(tmp_path: Path, monkeypatch, minilm, server: _Server,
                                           all_logs: Path) -> None:
    """`gecko-distill run` with the real openai backend against a loopback server, the key in the environment:
    the key reaches the server in the Authorization header of every request and nowhere else (no request
    body, no file of the run directory, no log line, no console output).

    Covers every file the pipeline writes: pipeline.json, each stage's config.json, manifest.json, data,
    run.json, the cache.
    """
    monkeypatch.setenv(ENV, KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr("gecko_distill.embedding.load_embedder", lambda *a, **k: minilm)  # the session's MiniLM
    run_dir = tmp_path / "run"
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'out_dir = "{run_dir}"\n[corpus]\npath = "demo:gensim-wiki"\nlimit = 30\n'
                   f'[llm]\nbackend = "openai"\nmodel = "fake-model"\n'
                   f'base_url = "http://127.0.0.1:{server.server_port}/v1"\napi_key_env = "{ENV}"\nmax_retries = 0\n'
                   '[generation]\nnum_passages = 4\nbatch_size = 2\n[mining]\nnum_neighbours = 3\n')
    r = runner.invoke(app, ["run", str(cfg), "--no-progress"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    # both stages went through the HTTP backend: generation's completions and mining's echo+logprobs scoring
    assert any(not b.get("echo") for b in server.bodies_seen) and any(b.get("echo") for b in server.bodies_seen)
    assert server.auth_seen and all(a == f"Bearer {KEY}" for a in server.auth_seen)
    assert not [b for b in server.bodies_seen if KEY in json.dumps(b)]
    n = assert_no_key(run_dir, all_logs.read_text(encoding="utf-8"), r.output)
    assert n >= 10  # pipeline.json, run.json, cache, and both stages' data/config/manifest files
    dumped = json.loads((run_dir / "pipeline.json").read_text())
    assert dumped["llm"]["api_key_env"] == ENV  # the config names the variable, never its value


# ---------------------------------------------------------------- the HTTP backend on loopback
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    auth_seen: list[str]
    bodies_seen: list[dict[str, Any]]
    echo_headers_in_errors: bool = False


class _Handler(BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible server: /v1/completions (text, or echo + logprobs), /v1/chat/completions."""

    server: _Server

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        auth = self.headers.get("Authorization", "")
        self.server.auth_seen.append(auth)
        self.server.bodies_seen.append(body)
        if auth != f"Bearer {KEY}":
            self._send(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
            return
        if self.server.echo_headers_in_errors:
            # A misbehaving proxy that echoes the request (with its auth header) in an error body.
            self._send(400, {"error": {"message": f"bad request; headers were: {dict(self.headers)}"}})
            return
        if self.path.endswith("/chat/completions"):
            text = self._completion(body["messages"][-1]["content"])
            self._send(200, {"id": "c", "object": "chat.completion", "model": body.get("model", "fake-model"),
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}]})
            return
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        choices = []
        for i, p in enumerate(prompts):
            if body.get("echo"):
                toks = re.findall(r"\s*\S+|\s+", p)
                offsets, pos = [], 0
                for t in toks:
                    offsets.append(pos)
                    pos += len(t)
                choices.append({"index": i, "text": p, "finish_reason": "length", "logprobs": {
                    "tokens": toks, "text_offset": offsets,
                    "token_logprobs": [None] + [-1.0] * (len(toks) - 1),
                    "top_logprobs": [None] + [{t: -1.0} for t in toks[1:]]}})
            else:
                choices.append({"index": i, "text": self._completion(p), "finish_reason": "stop",
                                "logprobs": None})
        self._send(200, {"id": "x", "object": "text_completion", "model": body.get("model", "fake-model"),
                         "choices": choices,
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    @staticmethod
    def _completion(prompt: str) -> str:
        w = re.findall(r"\w+", prompt.split("Passage:")[-1])
        return f" Given a question, retrieve passages that answer it.\nQuery: {' '.join(w[2:8]).lower()}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.auth_seen = []
    srv.bodies_seen = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def test_openai_backend_reads_the_key_from_env_and_never_writes_it(
        tmp_path: Path, monkeypatch, server: _Server, all_logs: Path) -> None:
    """The real HTTP backend against a loopback server: the key reaches the server (so it was read from
    the named variable), generation writes its stage, and nothing on disk or in the logs holds the key,
    not even the error raised when a server echoes the request headers back."""
    from gecko_distill.config import CorpusConfig, GenerationConfig
    from gecko_distill.corpus import read_corpus
    from gecko_distill.errors import GeckoDistillError
    from gecko_distill.generation import generate
    from gecko_distill.llm import CachedLLM, load_llm

    monkeypatch.setenv(ENV, KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    url = f"http://127.0.0.1:{server.server_port}/v1"
    cfg = LLMConfig(backend="openai", model="fake-model", base_url=url, api_key_env=ENV, max_retries=0,
                    timeout_s=10)
    run_dir = tmp_path / "run"
    passages = read_corpus(CorpusConfig(path="demo:gensim-wiki", limit=20))[0]
    llm = CachedLLM(load_llm(cfg), run_dir / "llm-cache.sqlite")
    res = generate(passages, llm, GenerationConfig(num_passages=3, batch_size=3),
                   out_dir=run_dir / "generation", progress=False)
    llm.close()
    assert res.summary["rows_in"] == 3
    assert server.auth_seen and all(a == f"Bearer {KEY}" for a in server.auth_seen)

    server.echo_headers_in_errors = True
    backend = load_llm(cfg)
    with pytest.raises(GeckoDistillError) as e:
        backend.generate(["Passage: x\nTask type: question answering\nTask:"])
    logging.getLogger("test").error("backend failed: %s", e.value)  # what a CLI would print and log
    assert_no_key(run_dir, all_logs.read_text(encoding="utf-8"), str(e.value), repr(e.value))
