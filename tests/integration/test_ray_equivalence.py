"""``executor = "ray"`` builds the same dataset as ``executor = "local"`` (issue 6).

Real components throughout: a local Ray instance with two one-CPU workers, each actor loading the packaged
Gemma-3-270M GGUF through llama.cpp; the packaged all-MiniLM-L6-v2; the gensim Wikipedia sample. Small on
purpose (4 seed passages, 3 queries x 3 neighbours, short passages) so that both runs and a resume stay
around two minutes on 2 cores. Skipped when Ray Data is not installed (``pip install -e '.[ray]'``).

``llm.n_threads`` is pinned: llama.cpp's greedy decoding is deterministic for a given thread count, but
ggml splits some reductions by thread, so 1 and 2 threads can pick different tokens (measured: the same
prompt gave two different task descriptions). A Ray actor otherwise uses ``ray.num_cpus_per_worker``
threads and a local run all cores; the same config, threads included, gives byte-identical files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("ray.data")

from gecko_distill.config import PipelineConfig  # noqa: E402
from gecko_distill.pipeline import run_pipeline  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # Two CPUs = a pool of two one-CPU actors. Workers inherit this process's environment (offline HF).
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


def _config(out: Path, executor: str) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "out_dir": str(out),
        "executor": executor,
        "ray": {"num_workers": 2, "num_cpus_per_worker": 1},
        "llm": {"n_threads": 1},
        "corpus": {"path": "demo:gensim-wiki", "limit": 100},
        # 2 shards of generation (6 passages: the round-trip filter and rejects leave >= 3 queries) and 3+ of the scores table (3 queries x 3 candidates, passage-major, 2 passages
        # a shard): both actors get work, and shards land out of order.
        "generation": {"num_passages": 6, "batch_size": 3, "max_passage_words": 60, "max_new_tokens": 48},
        # fusion = rrf: every pair scored with QL and RC (auto may drop both after its sample and score nothing more)
        "mining": {"num_neighbours": 3, "passages_per_shard": 2, "max_queries": 3, "max_passage_words": 40,
                   "fusion": "rrf"},
    })


def _files(run: Path) -> dict[str, bytes]:
    return {f: (run / f).read_bytes() for f in ("generation/generation.jsonl", "fret/scores/scores.jsonl",
                                                  "fret/fret.jsonl")}


def test_ray_run_writes_the_same_dataset_as_the_local_run(tmp_path, ray_cluster):
    local = run_pipeline(_config(tmp_path / "local", "local"), progress=False)
    on_ray = run_pipeline(_config(tmp_path / "ray", "ray"), progress=False)

    assert len(local.fret.rows) == 3  # the real model wrote enough parseable queries to mine
    # Byte-for-byte: every generated query, every QL/RC score of the scores table (full float precision),
    # every pick.
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    assert on_ray.fret.summary == local.fret.summary
    shards = tmp_path / "ray" / "fret" / "scores" / "shards"
    # the same shard plan, and no temp file left behind
    names = sorted(p.name for p in shards.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "local" / "fret" / "scores" / "shards").iterdir())
    assert len(names) >= 3 and names == [f"shard-{i:05d}.jsonl" for i in range(len(names))]

    # Resume on Ray: an interrupted run (one shard and the manifests missing) recomputes only that shard,
    # on a fresh actor, and the dataset comes out identical.
    kept = {i: (shards / f"shard-{i:05d}.jsonl").stat().st_mtime_ns for i in (0, 2)}
    (shards / "shard-00001.jsonl").unlink()
    (tmp_path / "ray" / "fret" / "scores" / "manifest.json").unlink()
    (tmp_path / "ray" / "fret" / "manifest.json").unlink()
    again = run_pipeline(_config(tmp_path / "ray", "ray"), progress=False)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    assert {i: (shards / f"shard-{i:05d}.jsonl").stat().st_mtime_ns for i in (0, 2)} == kept
    assert len(again.fret.rows) == 3
