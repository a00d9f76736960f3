"""Subprocess target of the kill test (``test_kill_resume.py``): runs one stage until done or SIGKILLed.

Usage: ``python _kill_worker.py '<json spec>'``. The worker prints ``READY`` once its inputs are loaded
(right before the stage starts) and ``DONE`` when the stage finished, so the parent can time its kill
from the start of the stage rather than from interpreter start-up.

The LLM is a deterministic :class:`~gecko_distill.llm.ScriptedLLM` (completions and scores are pure
functions of the prompt) with a per-call sleep, so that a stage lasts long enough for kills to land
mid-stage and so that an interrupted + resumed run can be compared byte for byte with an uninterrupted
one. The property under test is the write protocol (atomic shards, manifest last, the SQLite cache), not
the LLM; one trial in the test also runs the real Gemma GGUF through llama.cpp.

``io_delay`` widens the windows the protocol has to survive: every atomic write in
:mod:`gecko_distill.artifacts` writes half its bytes, sleeps, writes the rest, and sleeps again before the
rename, so a kill often leaves a half-written temp file behind, which a resume must never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gecko_distill.llm.base import GenerationParams, LoglikRequest, LoglikResult
from gecko_distill.testing import ScriptedLLM

_ITEM = re.compile(r"Passage: (?P<passage>.*)\nTask type: (?P<tt>.*)\nTask:\s*$", re.DOTALL)


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def scripted_completion(prompt: str) -> str:
    """A (task, query) completion that is a pure function of the prompt; about 1 in 8 is junk."""
    m = _ITEM.search(prompt)
    if m is None:  # the cache-mode prompts: a long, deterministic answer (big SQLite rows)
        return (hashlib.sha256(prompt.encode()).hexdigest() * 64)[: 2000 + _h(prompt) % 2000]
    h = _h(prompt)
    if h % 8 == 0:
        return "I am not sure what to write here."  # malformed: no Query line
    words = re.findall(r"\w+", m.group("passage"))
    picked = [words[(h >> (4 * i)) % len(words)] for i in range(3 + h % 4)] if words else ["nothing"]
    task = f"Given a {m.group('tt')} query, retrieve the matching passage."
    return f" {task}\nQuery: {' '.join(picked).lower()}"


class SlowScriptedLLM:
    """ScriptedLLM with a sleep per backend call (so a stage takes a known minimum time)."""

    def __init__(self, call_sleep: float) -> None:
        self.inner = ScriptedLLM(completions=scripted_completion)
        self.call_sleep = call_sleep

    @property
    def fingerprint(self) -> str:
        return "kill-worker:" + self.inner.fingerprint

    def generate(self, prompts: Sequence[str], *, prefix: str = "",
                 params: GenerationParams = GenerationParams()) -> list[str]:
        time.sleep(self.call_sleep)
        return self.inner.generate(prompts, prefix=prefix, params=params)

    def loglik(self, requests: Sequence[LoglikRequest], *, prefix: str = "") -> list[LoglikResult]:
        time.sleep(self.call_sleep)
        return self.inner.loglik(requests, prefix=prefix)


class HashEmbedder:
    """A cheap deterministic bag-of-words embedder (feature hashing) with the SentenceTransformer API
    that mining uses; the real MiniLM runs in a few trials."""

    max_seq_length = 256
    dim = 128
    # Stable across processes (the default repr carries a memory address): the streamed corpus
    # embeddings are cached under a hash of the embedder's fingerprint.
    fingerprint = "kill-worker-hash-embedder-128"

    def get_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts: Sequence[str], batch_size: int = 64, convert_to_numpy: bool = True,
               normalize_embeddings: bool = True, show_progress_bar: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                c = zlib.crc32(w.encode("utf-8"))
                out[i, c % self.dim] += 1.0 if (c >> 16) & 1 else -1.0
        out[:, 0] += 1e-3  # no all-zero rows
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class _SlowFile:
    def __init__(self, f: Any, delay: float) -> None:
        self._f, self._delay = f, delay

    def write(self, data: bytes) -> int:
        half = len(data) // 2
        self._f.write(data[:half])
        self._f.flush()  # the half-written temp file is on disk while we sleep
        time.sleep(self._delay)
        return self._f.write(data[half:]) + half

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _SlowFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


class _SlowOs:
    """Stands in for ``os`` inside gecko_distill.artifacts: slow writes and slow renames."""

    def __init__(self, delay: float) -> None:
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fdopen(self, fd: int, *args: Any, **kwargs: Any) -> _SlowFile:
        return _SlowFile(os.fdopen(fd, *args, **kwargs), self._delay)

    def replace(self, src: Any, dst: Any) -> None:
        time.sleep(self._delay)
        os.replace(src, dst)


def cache_prompts(n: int) -> list[str]:
    return [f"cache-mode prompt number {i}" for i in range(n)]


def cache_requests(n: int) -> list[LoglikRequest]:
    return [LoglikRequest(f"context {i} about rivers and bridges", f" query {i} bridges") for i in range(n)]


def _llm(spec: dict[str, Any], out: Path) -> Any:
    from gecko_distill.llm import CachedLLM

    if spec.get("llm", "scripted") == "gemma":
        from gecko_distill.config import LLMConfig
        from gecko_distill.llm import load_llm

        # One thread: on a shared 2-core machine llama.cpp's spinning threads slow down many-fold.
        backend = load_llm(LLMConfig(backend="llamacpp", model="gemma3-270m", n_threads=1))
    else:
        backend = SlowScriptedLLM(spec.get("call_sleep", 0.0))
    return CachedLLM(backend, out / "llm-cache.sqlite")


def _embedder(spec: dict[str, Any]) -> Any:
    if spec.get("embedder", "hash") == "minilm":
        from gecko_distill.embedding import load_embedder

        return load_embedder("all-MiniLM-L6-v2", max_seq_length=128)  # half the encoding time of 256
    return HashEmbedder()


def main(spec: dict[str, Any]) -> None:
    from gecko_distill.config import CorpusConfig, GenerationConfig, MiningConfig

    if spec.get("io_delay"):
        import gecko_distill.artifacts as artifacts

        artifacts.os = _SlowOs(spec["io_delay"])  # type: ignore[assignment]
    out = Path(spec["out"])
    mode = spec["mode"]
    gcfg = GenerationConfig(num_passages=spec.get("num_passages", 24), batch_size=spec.get("gen_batch", 3),
                            max_passage_words=60, max_new_tokens=spec.get("max_new_tokens", 64))
    mcfg = MiningConfig(num_neighbours=spec.get("neighbours", 5), batch_size=spec.get("mine_batch", 2),
                        passages_per_shard=spec.get("mine_batch", 2), max_passage_words=60, fusion=spec.get("fusion", "rrf"))
    ccfg = CorpusConfig(path=spec.get("corpus", ""), min_chars=40)

    if mode == "generate":
        from gecko_distill.corpus import read_corpus
        from gecko_distill.generation import generate

        passages, _ = read_corpus(ccfg)
        llm = _llm(spec, out)
        print("READY", flush=True)
        generate(passages, llm, gcfg, out_dir=out, progress=False)
    elif mode == "mine":
        from gecko_distill.corpus import read_corpus
        from gecko_distill.generation import load_task_queries
        from gecko_distill.mining import mine

        passages, _ = read_corpus(ccfg)
        queries = load_task_queries(spec["gen_dir"]).queries
        embedder, llm = _embedder(spec), _llm(spec, out)
        print("READY", flush=True)
        mine(queries, passages, embedder=embedder, llm=llm, config=mcfg, out_dir=out, progress=False)
    elif mode == "pipeline":
        import gecko_distill.embedding
        import gecko_distill.pipeline as pipeline
        from gecko_distill.config import PipelineConfig

        # The pipeline loads its models by name; hand it the scripted LLM and the hash embedder instead.
        backend = SlowScriptedLLM(spec.get("call_sleep", 0.0))
        pipeline.load_llm = lambda _cfg: backend  # type: ignore[assignment]
        gecko_distill.embedding.load_embedder = lambda *a, **k: HashEmbedder()  # type: ignore[assignment]
        cfg = PipelineConfig.model_validate({
            "out_dir": str(out), "corpus": ccfg.model_dump(), "generation": gcfg.model_dump(),
            "mining": mcfg.model_dump()})
        print("READY", flush=True)
        pipeline.run_pipeline(cfg, progress=False)
    elif mode == "cache":
        llm = _llm(spec, out)
        n, batch = spec["cache_items"], spec["cache_batch"]
        prompts, reqs = cache_prompts(n), cache_requests(n)
        print("READY", flush=True)
        for i in range(0, n, batch):
            llm.generate(prompts[i : i + batch], prefix="cache-prefix")
            llm.loglik(reqs[i : i + batch], prefix="cache-prefix")
        llm.close()
        print(f"STATS {json.dumps({'hits': llm.hits, 'misses': llm.misses})}", flush=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print("DONE", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Run as the module `_kill_worker` (its folder is on sys.path), not as `__main__`, so the scripted
    # LLM's fingerprint is the same here and in the test that imports this file.
    import _kill_worker

    _kill_worker.main(json.loads(sys.argv[1]))
