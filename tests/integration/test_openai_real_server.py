"""The OpenAI-compatible backend against a real server: llama-cpp-python's own ``llama_cpp.server``.

The test starts ``python -m llama_cpp.server`` on a free loopback port with the packaged Gemma-3-270M GGUF,
writes (task, query) pairs through the project's :class:`OpenAIBackend` (they must parse), and scores the same
(query, passage) pairs with QL and RC through HTTP and in-process with the ``llamacpp`` backend.

Why the scores are not bit-identical: the server decodes each request's prompt in whatever batch shape its
prompt cache leaves (llama-cpp-python reuses the common token prefix of the previous request), unpadded, while
the ``llamacpp`` backend decodes the shared prefix once and pads every decode call so each row takes the same
kernel path (see ``gecko_distill/llm/llamacpp_engine.py``). ggml's CPU kernels differ by batch shape (repacked
GEMM vs GEMV, flash-attention tiles), each ~0.03 nats/token from a float32 reference with Gemma 3's large
activations, so the two sides differ by rounding of that size. Measured on the 2-core CPU (printed with -s):
QL (mean log-prob per query token) differs by up to 0.08 and RC (log-odds Yes vs No, a difference of two sums
of ~13 tokens) by up to 0.28. Tolerances: 0.15 for QL and 0.5 for RC (about twice the measured maximum); the
token counts must match exactly (a misaligned offset would add or drop a token), and every pair of candidates
that the ``llamacpp`` backend separates by more than the tolerance must keep its order through HTTP (mining
uses the order, not the value).

Needs the ``llama-server`` extra (``pip install "gecko-distill[llama-server]"``; part of the ``test`` extra).
Run: ``.venv/bin/pytest tests/integration/test_openai_real_server.py -s`` (~1 min on 2 cores).
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("uvicorn", reason="the llama-server extra: pip install 'gecko-distill[llama-server]'")
pytest.importorskip("sse_starlette", reason="the llama-server extra: pip install 'gecko-distill[llama-server]'")

from gecko_distill.config import CorpusConfig, GenerationConfig  # noqa: E402
from gecko_distill.corpus import read_corpus  # noqa: E402
from gecko_distill.llm.openai_backend import OpenAIBackend  # noqa: E402
from gecko_distill.labelling.scoring import score_candidates  # noqa: E402
from gecko_distill.prompts import load_prompts  # noqa: E402

QL_TOL = 0.15  # nats per query token (QL is a mean); measured up to 0.08
RC_TOL = 0.5  # nats (RC is a difference of two sums); measured up to 0.28
N_CTX = 2048
STARTUP_S = 120


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """``(base_url, model id)`` of a running llama_cpp.server; stopped (and its log shown on failure) after."""
    from gecko_distill.llm.packaged import resolve_packaged_llm

    gguf = resolve_packaged_llm("gemma3-270m")
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # `python -m llama_cpp.server` plus one speed fix: see _llama_server.py
            [sys.executable, str(Path(__file__).with_name("_llama_server.py")), "--model", str(gguf), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", str(N_CTX), "--n_threads", "2", "--seed", "0"],
            stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                r = httpx.get(f"{base}/models", timeout=2.0)
                if r.status_code == 200:
                    model_id = r.json()["data"][0]["id"]
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready after {STARTUP_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, model_id
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def http_llm(server):
    base, model_id = server
    b = OpenAIBackend(base_url=base, model=model_id, max_concurrency=1, timeout_s=120, max_retries=1)
    yield b
    b.close()


@pytest.fixture(scope="module")
def passages():
    ps, _ = read_corpus(CorpusConfig(path="demo:gensim-lee", limit=12))
    return ps


def test_generation_through_the_server_parses(http_llm, passages, tmp_path: Path) -> None:
    from gecko_distill.generation import generate

    res = generate(passages[:3], http_llm, GenerationConfig(num_passages=3, max_passage_words=40),
                   out_dir=tmp_path / "generation", progress=False)
    print(f"\nserver generation: {res.summary['rows_out']} of {res.summary['rows_in']} parsed; rejects "
          f"{ {k: v for k, v in res.summary['rejects'].items() if v} }")
    assert res.summary["rows_in"] == 3
    assert res.summary["rows_out"] >= 1  # the tiny LLM is allowed rejects, not a broken transport
    assert all(q.query.strip() and q.task.strip() for q in res.queries)


def test_ql_and_rc_through_http_agree_with_the_llamacpp_backend(http_llm, gemma, passages) -> None:
    # The instruction without the few-shot examples: the server recomputes the whole prompt with logits for
    # every token (262k-wide for Gemma 3) on each request, so short prompts keep this test at ~1 minute.
    full = load_prompts(None)
    prompts = dataclasses.replace(full, ql_prefix=full.ql_prefix.split("\n\n")[0] + "\n\n")
    queries = ["Why were firefighters battling bushfires near Sydney?",
               "What did the Palestinian officials say about Israel?"]
    cands = [" ".join(p.text.split()[:30]) for p in passages[:3]]
    pairs = [(q, cands) for q in queries]
    via_http = score_candidates(http_llm, prompts, pairs)
    local = score_candidates(gemma, prompts, pairs)
    diffs = {s: max(abs(a - b) for h, loc in zip(via_http, local, strict=True)
                    for a, b in zip(h[s], loc[s], strict=True)) for s in ("ql", "rc")}
    print(f"\nmax |HTTP - llamacpp| over {len(queries)} x {len(cands)} pairs: QL {diffs['ql']:.4f}, "
          f"RC {diffs['rc']:.4f}")
    for h, loc in zip(via_http, local, strict=True):
        print("  QL http", [round(x, 3) for x in h["ql"]], "local", [round(x, 3) for x in loc["ql"]])
        print("  RC http", [round(x, 3) for x in h["rc"]], "local", [round(x, 3) for x in loc["rc"]])
    assert diffs["ql"] < QL_TOL and diffs["rc"] < RC_TOL
    reqs = [prompts.ql_request(queries[0], cands[0]), prompts.rc_requests(queries[0], cands[0])[0]]
    counts = [(a.num_tokens, b.num_tokens) for a, b in zip(http_llm.loglik(reqs, prefix=prompts.ql_prefix),
                                                          gemma.loglik(reqs, prefix=prompts.ql_prefix), strict=True)]
    assert all(a == b > 0 for a, b in counts), counts  # the same continuation tokens on both sides
    for h, loc in zip(via_http, local, strict=True):  # what mining uses is the order of the candidates
        for name, tol in (("ql", QL_TOL), ("rc", RC_TOL)):
            clear = [(i, j) for i, a in enumerate(loc[name]) for j, b in enumerate(loc[name]) if a - b > tol]
            assert all(h[name][i] > h[name][j] for i, j in clear), (name, h[name], loc[name])
