"""The shard-runner hook of ``run_shards`` and the Ray executor's pure helpers (no Ray needed)."""

from __future__ import annotations

import pickle

import pytest

from gecko_distill._stage import LLMShardWork, run_shards
from gecko_distill.artifacts import StageDir
from gecko_distill.config import LLMConfig, PipelineConfig, RayConfig, validate_config
from gecko_distill.errors import BackendUnavailable, ConfigError
from gecko_distill.executors.ray_executor import RayShardRunner, _gecko_cause, worker_llm_config
from gecko_distill.generation.stage import _GenerateCall
from gecko_distill.testing import ScriptedLLM
from gecko_distill.llm.base import GenerationParams


def _work(llm):
    return LLMShardWork(llm, request=lambda batch, start: [f"{start}:{x}" for x in batch],
                        call=lambda llm, payload: [p.upper() for p in payload],
                        finish=lambda batch, start, outs: [{"i": start + j, "out": o}
                                                           for j, o in enumerate(outs)])


def test_local_path_is_request_call_finish_in_shard_order(tmp_path):
    stage = StageDir(tmp_path, "s")
    n = run_shards(stage, list("abcde"), 2, _work(None), desc="t", progress=False)
    assert n == 3
    assert stage.read_shards(3) == [{"i": 0, "out": "0:A"}, {"i": 1, "out": "0:B"}, {"i": 2, "out": "2:C"},
                                    {"i": 3, "out": "2:D"}, {"i": 4, "out": "4:E"}]


def test_a_runner_gets_only_missing_shards_and_may_return_them_out_of_order(tmp_path):
    stage = StageDir(tmp_path, "s")
    # shard 1 finished before an interruption
    stage.write_shard(1, [{"i": 2, "out": "kept"}, {"i": 3, "out": "kept"}])
    seen = []

    def reverse_runner(tasks, work):
        seen.extend(i for i, _, _ in tasks)
        for i, batch, start in reversed(tasks):
            yield i, work(batch, start)

    run_shards(stage, list("abcde"), 2, _work(None), desc="t", progress=False, runner=reverse_runner)
    assert seen == [0, 2]
    assert [r["out"] for r in stage.read_shards(3)] == ["0:A", "0:B", "kept", "kept", "4:E"]
    assert not list(stage.shard_dir.glob("*.tmp"))


def test_the_llm_call_of_a_stage_pickles_and_runs_on_any_backend():
    call = pickle.loads(pickle.dumps(_GenerateCall("PREFIX ", GenerationParams(max_tokens=8))))
    llm = ScriptedLLM(lambda prompt: f"echo {prompt}")
    assert call(llm, ["a", "b"]) == ["echo a", "echo b"]


def test_worker_threads_follow_the_actor_cpus_unless_pinned():
    ray = RayConfig(num_cpus_per_worker=3)
    assert worker_llm_config(LLMConfig(), ray).n_threads == 3
    assert worker_llm_config(LLMConfig(n_threads=1), ray).n_threads == 1
    assert worker_llm_config(LLMConfig(backend="openai"), ray).n_threads is None


def test_ray_runner_refuses_work_it_cannot_split():
    runner = RayShardRunner(LLMConfig(), RayConfig())
    with pytest.raises(TypeError, match="LLMShardWork"):
        list(runner([(0, ["a"], 0)], lambda batch, start: []))


def test_a_worker_error_of_ours_is_found_inside_ray_wrappers():
    inner = BackendUnavailable("model file missing on node-3")
    try:
        try:
            raise inner
        except BackendUnavailable as e:
            raise RuntimeError("ray wrapper") from e
    except RuntimeError as outer:
        assert _gecko_cause(outer) is inner
    assert _gecko_cause(RuntimeError("plain")) is None


def test_executor_and_ray_table_are_validated():
    cfg = validate_config({"executor": "ray", "ray": {"num_workers": 4, "num_gpus_per_worker": 1}},
                          PipelineConfig)
    assert (cfg.executor, cfg.ray.num_workers, cfg.ray.num_gpus_per_worker) == ("ray", 4, 1)
    with pytest.raises(ConfigError, match="num_worker"):
        validate_config({"ray": {"num_worker": 4}}, PipelineConfig)
    with pytest.raises(ConfigError, match="executor"):
        validate_config({"executor": "spark"}, PipelineConfig)
