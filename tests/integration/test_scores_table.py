"""The scores table and passage-major scoring on the real packaged Gemma-3-270M GGUF and all-MiniLM-L6-v2.

- a passage's scores are a pure function of the work: bit-identical whatever the shard size;
- changing fusion / positive / negative policy re-selects from the saved table without one LLM call;
- passage-major scores equal the query-major path's, bit for bit (the same engine; docs/performance.md).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("llama_cpp")

from gecko_distill.config import CorpusConfig  # noqa: E402
from gecko_distill.records import TaskQuery  # noqa: E402
from gecko_distill.stage_configs import MiningConfig  # noqa: E402


class CountingLLM:
    """A real backend that counts the loglik requests it is asked for."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.requests = 0

    @property
    def fingerprint(self) -> str:
        return self.backend.fingerprint

    def generate(self, prompts, **kw):
        return self.backend.generate(prompts, **kw)

    def loglik(self, requests, **kw):
        self.requests += len(requests)
        return self.backend.loglik(requests, **kw)


@pytest.fixture(scope="module")
def setup():
    from gecko_distill.corpus import read_corpus
    from gecko_distill.embedding.loader import load_embedder
    from gecko_distill.llm.llamacpp import LlamaCppBackend
    from gecko_distill.llm.packaged import resolve_packaged_llm

    passages, _ = read_corpus(CorpusConfig(path="demo:gensim-wiki", limit=24))
    # queries made from passages' opening words: enough overlap for passages to be shared candidates
    queries = [TaskQuery(p.id, "search_result", "Given a query, retrieve relevant passages",
                         " ".join(p.text.split()[:8])) for p in passages[:8]]
    llm = LlamaCppBackend(resolve_packaged_llm("gemma3-270m"), n_ctx=1024)
    yield passages, queries, llm, load_embedder("all-MiniLM-L6-v2")
    llm.close()


def _mine(setup, out, **cfg):
    from gecko_distill.mining import mine

    passages, queries, llm, embedder = setup
    counting = CountingLLM(llm)
    config = MiningConfig(**{"num_neighbours": 5, "max_passage_words": 40, "round_trip_k": None, "fusion": "rrf",
                             **cfg})
    res = mine(queries, passages, embedder=embedder, llm=counting, config=config, out_dir=out, progress=False)
    return res, counting.requests


def test_scores_do_not_depend_on_the_shard_size_and_reselection_needs_no_llm(setup, tmp_path):
    one, asked = _mine(setup, tmp_path / "a", passages_per_shard=1)
    many, _ = _mine(setup, tmp_path / "b", passages_per_shard=7)
    table = (tmp_path / "a" / "scores" / "scores.jsonl").read_bytes()
    assert table == (tmp_path / "b" / "scores" / "scores.jsonl").read_bytes()
    rows = [json.loads(x) for x in table.decode().splitlines()]
    assert len(rows) == 8 * 5 and asked == 8 * 5 * 3  # every pair once: QL + RC's two labels
    shared = {r["passage_id"] for r in rows}
    assert len(shared) < len(rows)  # passages are candidates of several queries: the case packing serves
    assert (tmp_path / "a" / "scores" / "scores.parquet").exists()
    assert len(list((tmp_path / "a" / "scores" / "shards").glob("shard-*.jsonl"))) == len(shared)

    # another selection: the table is reused, the LLM is not asked at all, and the picks follow the policy
    seed_rows, asked = _mine(setup, tmp_path / "a", passages_per_shard=1, fusion="ql", positive_policy="seed")
    assert asked == 0
    assert all(r["positive_id"] == r["seed_id"] for r in seed_rows.rows)
    assert (tmp_path / "a" / "scores" / "scores.jsonl").read_bytes() == table
    ranked = _mine(setup, tmp_path / "a", passages_per_shard=1, fusion="ql")[0]
    for r in ranked.rows:  # fusion = ql: the positive is the candidate with the best QL score
        assert r["positive_id"] == max(r["candidates"], key=lambda c: c["ql"])["id"]


def test_passage_major_scores_equal_the_query_major_path(setup, tmp_path):
    """The same engine, both schedules: every score bit-identical (each query branches off its passage's
    KV cells exactly where the query-major path decodes it), so the whole scores table is the same file."""
    passages, queries, llm, embedder = setup
    _mine(setup, tmp_path / "new", passages_per_shard=3)
    _mine(setup, tmp_path / "old", schedule="query", batch_size=3)
    new = (tmp_path / "new" / "scores" / "scores.jsonl").read_bytes()
    assert new == (tmp_path / "old" / "scores" / "scores.jsonl").read_bytes()
    assert (tmp_path / "new" / "fret.jsonl").read_bytes() == (tmp_path / "old" / "fret.jsonl").read_bytes()


def test_fusion_none_mines_without_one_llm_call(setup, tmp_path):
    """fusion = 'none' (the LLM-free recipe): no scoring at all; the seed is the positive, the retriever's
    lowest-ranked other candidate the negative, and the candidates travel without LLM scores."""
    from gecko_distill.errors import InputError
    from gecko_distill.training.data import format_fret_rows, resolve_distill

    res, asked = _mine(setup, tmp_path / "n", fusion="none", scorers=[])
    assert asked == 0 and not (tmp_path / "n" / "scores").exists()
    assert len(res.rows) == 8 and res.summary["scores"]["pairs"] == 0
    for r in res.rows:
        assert r["positive_id"] == r["seed_id"]
        others = [c for c in r["candidates"] if c["id"] != r["seed_id"]]
        assert r["negative_id"] == max(others, key=lambda c: c["rank_retriever"])["id"]
        assert all("ql" not in c and "rc" not in c for c in r["candidates"])
        assert r["ranks"]["fused"] == 1
    # the same rows from the default scorers list: scorers are ignored when nothing is scored
    again, asked = _mine(setup, tmp_path / "n2", fusion="none")
    assert asked == 0 and [r["negative_id"] for r in again.rows] == [r["negative_id"] for r in res.rows]
    # 'auto' distillation trains on eq. 3 alone; asking for the LLM's scores is refused with the way out
    assert resolve_distill("auto", res.rows, {"ql": 1.0}) == "none"
    with pytest.raises(InputError, match="no 'ql' score"):
        format_fret_rows(res.rows, teacher={"ql": 1.0})


class FlatRC(CountingLLM):
    """The real backend for QL; relevance classification answers the same for every pair (a useless RC)."""

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self.rc_requests = 0

    def loglik(self, requests, **kw):
        from gecko_distill.llm.base import LoglikResult

        from gecko_distill.prompts import prompts_for

        item = prompts_for(self.backend).rc_item  # an RC request continues the query with the relevance question
        rc = [item in r.continuation for r in requests]
        self.rc_requests += sum(rc)
        real = iter(self.backend.loglik([r for r, is_rc in zip(requests, rc) if not is_rc], **kw)) if not all(rc) \
            else iter(())
        self.requests += len(requests)
        return [LoglikResult(-1.0, 1) if is_rc else next(real) for is_rc in rc]


def test_auto_drops_a_useless_signal_before_scoring_the_rest(setup, tmp_path):
    """fusion = 'auto' checks on its sample first: a signal it drops is computed for the sample only."""
    from gecko_distill.mining import mine

    passages, queries, llm, embedder = setup
    flat = FlatRC(llm)
    config = MiningConfig(num_neighbours=5, max_passage_words=40, round_trip_k=None, fusion="auto", auto_sample=4)
    res = mine(queries, passages, embedder=embedder, llm=flat, config=config, out_dir=tmp_path / "a", progress=False)
    checks = {c["name"]: c["verdict"] for c in res.summary["auto_fusion"]["checks"]}
    assert checks["rc"] == "dropped"  # a flat signal ranks no better than the retriever: ties go to the retriever
    assert flat.rc_requests == 4 * 5 * 2  # the sample's pairs, Yes and No; none for the other 4 queries
    assert res.summary["scores"]["sample_pairs"] == 4 * 5
    assert "rc" not in res.summary["scores"]["signals"]
    assert all("rc" not in c for r in res.rows for c in r["candidates"])
