"""The generation stage's shard plan: a passage's queries_per_passage prompts share one backend call."""

from __future__ import annotations

import re

from gecko_distill.artifacts import fingerprint
from gecko_distill.config import GenerationConfig
from gecko_distill.generation import generate
from gecko_distill.generation.stage import _fingerprint, _shard_size
from gecko_distill.llm.base import GenerationParams, LoglikRequest, LoglikResult
from gecko_distill.prompts import load_prompts
from gecko_distill.records import Passage


class _Recorder:
    """A backend that writes one distinct, parseable query per prompt and records each call's prompts."""

    fingerprint = "recorder"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def generate(self, prompts, *, prefix: str = "", params: GenerationParams = GenerationParams()) -> list[str]:
        self.calls.append(list(prompts))
        n = sum(len(c) for c in self.calls)
        return [f" Find the fact.\nQuery: which animal number {n - len(prompts) + i} does this" for i in
                range(len(prompts))]

    def loglik(self, requests: list[LoglikRequest], *, prefix: str = "") -> list[LoglikResult]:
        raise AssertionError("generation does not score")


def _passage_of(prompt: str) -> str:
    return re.search(r"Passage (\d+) says", prompt).group(1)


def test_shard_size_is_a_multiple_of_queries_per_passage() -> None:
    assert _shard_size(GenerationConfig(batch_size=8)) == 8
    assert _shard_size(GenerationConfig(batch_size=8, queries_per_passage=3)) == 9
    assert _shard_size(GenerationConfig(batch_size=8, queries_per_passage=4)) == 8
    assert _shard_size(GenerationConfig(batch_size=2, queries_per_passage=3)) == 3


def test_a_passages_prompts_share_a_call_and_the_plan_keys_the_fingerprint(tmp_path) -> None:
    passages = [Passage(f"p{i}", f"Passage {i} says that animal {i} lives in place {i} and eats food {i}.")
                for i in range(7)]
    cfg = GenerationConfig(num_passages=7, queries_per_passage=3, batch_size=4, filter_generic=False)
    llm = _Recorder()
    res = generate(passages, llm, cfg, out_dir=tmp_path / "gen", progress=False)
    assert res.summary["rows_in"] == 21
    assert [len(c) for c in llm.calls] == [6, 6, 6, 3]  # batch_size 4 -> shards of 6
    seen: set[str] = set()
    for call in llm.calls:  # every passage's three prompts in one call, none split across calls
        mine = {_passage_of(p) for p in call}
        assert not mine & seen and all(sum(_passage_of(p) == x for p in call) == 3 for x in mine)
        seen |= mine
    # the plan is part of the fingerprint only where it differs from batch_size (older runs stay resumable)
    prompts = load_prompts()

    def before(c: GenerationConfig) -> str:  # the fingerprint as it was before shards followed the plan
        # (and before max_passage_overlap existed: the config as older versions dumped it)
        return fingerprint({"stage": "generation",
                            "corpus": fingerprint([(p.id, p.title, p.text) for p in passages]),
                            "llm": llm.fingerprint, "config": c.model_dump(exclude={"max_passage_overlap"}),
                            "prompts": [prompts.version, prompts.generation_prefix, prompts.generation_item]})

    same = GenerationConfig(num_passages=7, queries_per_passage=2, batch_size=4)
    assert _fingerprint(passages, llm, same, prompts) == before(same)
    assert _fingerprint(passages, llm, cfg, prompts) != before(cfg)

    # an unset overlap filter leaves the fingerprint as it was; a set one changes it
    assert _fingerprint(passages, llm, same.model_copy(update={"max_passage_overlap": 0.5}), prompts) != before(same)


class _Copier(_Recorder):
    """Even passages: a query stitched from the passage's own phrases; odd ones: a query in other words."""

    def generate(self, prompts, *, prefix: str = "", params: GenerationParams = GenerationParams()) -> list[str]:
        self.calls.append(list(prompts))
        out = []
        for p in prompts:
            i = _passage_of(p)
            out.append(f" Find the fact.\nQuery: animal {i} lives in place {i} and also eats food {i}" if int(i) % 2 == 0
                       else f" Find the fact.\nQuery: where does creature {i} make its home")
        return out


def test_the_overlap_filter_rejects_near_copies_and_counts_them(tmp_path) -> None:
    passages = [Passage(f"p{i}", f"Passage {i} says that animal {i} lives in place {i} and eats food {i}.")
                for i in range(4)]
    base = dict(num_passages=4, batch_size=4, filter_generic=False)
    kept = generate(passages, _Copier(), GenerationConfig(**base), out_dir=tmp_path / "off", progress=False)
    assert kept.summary["rows_out"] == 4 and kept.summary["rejects"]["near_copy"] == 0
    res = generate(passages, _Copier(), GenerationConfig(**base, max_passage_overlap=0.5),
                   out_dir=tmp_path / "on", progress=False)
    assert res.summary["rejects"]["near_copy"] == 2 and res.summary["rows_out"] == 2
    assert {q.query for q in res.queries} == {"where does creature 1 make its home", "where does creature 3 make its home"}
