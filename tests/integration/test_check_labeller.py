"""The labeller checks on the REAL packaged Gemma-3-270M (llama.cpp) and the REAL all-MiniLM-L6-v2.

A tiny BEIR folder written here (our own sentences): each query has one answering passage and one passage on
the same topic that does not answer it, so the first stage is not trivially perfect. Kept to a few dozen
scored pairs so the module runs in about a minute on 2 cores.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gecko_distill.artifacts import StageDir
from gecko_distill.cli import app
from gecko_distill.config import MiningConfig
from gecko_distill.corpus.eval_sets import load_eval_set
from gecko_distill.retrieval.metrics import ndcg_at_k
from gecko_distill.labelling.rerank_check import first_stage
from gecko_distill.llm import CachedLLM
from gecko_distill.mining import mine
from gecko_distill.records import Passage, TaskQuery

DOCS = {
    "d1": ("Bees", ("Honeybees tell other bees where flowers are by dancing: the angle of the waggle run points "
                   "to the food and its length tells the distance.")),
    "d2": ("Bees", ("A honeybee colony has one queen, thousands of female workers and, in summer, a few hundred "
                   "male drones.")),
    "d3": ("Copper", ("Copper is a good conductor of electricity because each atom gives up a free electron that "
                     "moves through the metal.")),
    "d4": ("Copper", "Most of the world's copper is mined in Chile and Peru, from large open-pit mines."),
    "d5": ("Bread", ("Sourdough bread rises because wild yeast and lactic acid bacteria in the starter produce "
                    "carbon dioxide gas.")),
    "d6": ("Bread", "The oldest known bread was baked about fourteen thousand years ago from wild cereals."),
    "d7": ("Moon", ("The Moon always shows the same face to Earth because its rotation is tidally locked to its "
                   "orbit.")),
    "d8": ("Moon", "Twelve astronauts walked on the Moon between 1969 and 1972 during the Apollo programme."),
}
QUERIES = {"q1": "how do bees show each other where food is", "q2": "why does copper conduct electricity",
           "q3": "what makes sourdough bread rise", "q4": "why do we always see the same side of the moon"}
QRELS = {"q1": "d1", "q2": "d3", "q3": "d5", "q4": "d7"}


@pytest.fixture(scope="module")
def toy_beir(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"_id": did, "title": title, "text": text}) + "\n" for did, (title, text) in DOCS.items())
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"_id": qid, "text": text}) + "\n" for qid, text in QUERIES.items())
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                             + "".join(f"{q}\t{d}\t1\n" for q, d in QRELS.items()))
    return root


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory):
    return tmp_path_factory.mktemp("cache") / "llm.sqlite"


def test_rerank_eval_cli_on_real_models(toy_beir, cache_file, minilm):
    out = cache_file.parent / "rerank.json"
    res = CliRunner().invoke(app, ["rerank-eval", "--data", str(toy_beir), "--queries", "4", "--top-k", "3",
                                   "--max-passage-words", "40", "--cache", str(cache_file), "--out", str(out),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["num_queries"] == 4 and rep["top_k"] == 3
    assert {"first_stage", "ql", "rc", "rrf"} <= set(rep["metrics"])
    # The first stage's nDCG@10 (pytrec_eval inside) equals our hand-rolled nDCG on MiniLM's own top-3.
    cands = first_stage(load_eval_set(toy_beir), minilm, task="search result", top_k=3)
    expected = sum(ndcg_at_k(c.doc_ids, c.qrels, 10) for c in cands) / len(cands)
    assert rep["metrics"]["first_stage"]["ndcg_at_10"] == pytest.approx(expected, abs=1e-4)
    # Each LLM ranking's numbers follow from its raw scores: P@1 = its top candidate is the judged one.
    for name in ("ql", "rc"):
        tops = [max(range(3), key=lambda i, s=s: (s[name][i], -i)) for s in rep["scores"]]
        p1 = sum(c.doc_ids[t] == QRELS[c.qid] for c, t in zip(cands, tops, strict=True)) / 4
        assert rep["metrics"][name]["p_at_1"] == pytest.approx(p1)
    # The real Gemma is a useful query-likelihood ranker on these easy queries: the answer wins in most.
    assert rep["metrics"]["ql"]["p_at_1"] >= 0.75
    assert "re-ranker evaluation" in res.output and "nDCG@10" in res.output


def test_check_labeller_warns_exactly_when_a_ranking_is_worse(toy_beir, cache_file):
    out = cache_file.parent / "check.json"
    rrf = cache_file.parent / "rrf.toml"
    rrf.write_text('[mining]\nfusion = "rrf"\n')
    args = ["check-labeller", "--data", str(toy_beir), "--sample", "4", "--top-k", "3", "--cache", str(cache_file),
            "--out", str(out), "--no-progress"]
    res = CliRunner().invoke(app, [*args, "--config", str(rrf)])
    rep = json.loads(out.read_text())
    base = rep["metrics"]["first_stage"]["ndcg_at_10"]
    worse = {n for n, m in rep["metrics"].items() if m["ndcg_at_10"] < base}
    warned = {line.split("warning:")[1].split(":")[0].split()[0] for line in res.output.splitlines() if "warning:" in line}
    assert warned == worse
    # the configured fusion decides the exit code: 1 exactly when RRF ranks worse than the first stage
    assert res.exit_code == (1 if "rrf" in worse else 0), res.output
    # the default fusion, auto, is cross-fitted over two halves: 4 queries are too few to judge it
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "fusion=auto is judged on 8 or more queries" in res.output, res.output


def test_mine_with_auto_fusion_records_and_applies_its_plan(tmp_path, cache_file, gemma, minilm):
    passages = [Passage(d, t, title) for d, (title, t) in DOCS.items()]
    queries = [TaskQuery(QRELS[q], "question_answering", "Given a question, retrieve passages that answer it.", t)
               for q, t in QUERIES.items()]
    llm = CachedLLM(gemma, cache_file)
    cfg = MiningConfig(num_neighbours=3, fusion="auto", auto_sample=4, max_passage_words=40, batch_size=2)
    res = mine(queries, passages, embedder=minilm, llm=llm, config=cfg, out_dir=tmp_path / "fret", progress=False)
    plan = res.summary["auto_fusion"]
    assert plan["basis"] == "seed" and plan["sample_size"] == 4
    verdicts = {c["name"]: c["verdict"] for c in plan["checks"]}
    assert verdicts["retriever"] == "baseline" and set(verdicts) == {"retriever", "ql", "rc"}
    scores = {c["name"]: c["score"] for c in plan["checks"]}
    for name in ("ql", "rc"):  # dropped exactly when worse than the retriever
        assert (verdicts[name] == "dropped") == (scores[name] <= scores["retriever"])  # ties go to the retriever
    for r in res.rows:
        if plan["mode"] == "retriever":
            assert r["positive_id"] == r["seed_id"]  # fallback keeps the seed
        elif plan["mode"] in ("ql", "rc"):  # a single kept signal picks its own top-1
            top = min(r["candidates"], key=lambda c: c[f"rank_{plan['mode']}"])
            assert r["positive_id"] == top["id"]
    # the check scored its sample with both signals; the rows were scored with the kept ones only
    sample = [json.loads(x) for x in (tmp_path / "fret" / "scores-sample" / "scores.jsonl").read_text().splitlines()]
    assert len({r["query_index"] for r in sample}) == 4 and all("ql" in r and "rc" in r for r in sample)
    kept = set(plan["weights"])
    assert set(res.summary["scores"]["signals"]) == kept
    if kept:
        table = (tmp_path / "fret" / "scores" / "scores.jsonl").read_text().splitlines()
        assert {k for k in json.loads(table[0]) if k in ("ql", "rc")} == kept
    else:  # the fallback asks the LLM nothing beyond the sample
        assert not (tmp_path / "fret" / "scores").exists() and res.summary["scores"]["pairs"] == 0
    # the plan is stored once per stage and reused on resume (no new LLM calls)
    assert (tmp_path / "fret" / "auto-fusion.json").exists()
    StageDir(tmp_path / "fret", "fret").manifest_path.unlink()
    before = llm.misses
    again = mine(queries, passages, embedder=minilm, llm=llm, config=cfg, out_dir=tmp_path / "fret", progress=False)
    assert llm.misses == before and again.summary["auto_fusion"] == plan


def test_check_labeller_on_generated_queries_uses_seed_agreement(tmp_path, cache_file):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d, "title": t, "text": x}) + "\n" for d, (t, x) in DOCS.items()),
                      encoding="utf-8")
    rows = [{"passage_id": QRELS[q], "task_type": "question_answering",
             "task": "Given a question, retrieve passages that answer it.", "query": t} for q, t in QUERIES.items()]
    StageDir(tmp_path / "generation", "generation").finalize(rows, fp="test", config={}, summary={})
    rrf = tmp_path / "rrf.toml"
    rrf.write_text('[mining]\nfusion = "rrf"\n')
    args = ["check-labeller", "--queries", str(tmp_path / "generation"), "--corpus", str(corpus), "--sample", "4",
            "--top-k", "3", "--cache", str(cache_file), "--no-progress"]
    res = CliRunner().invoke(app, [*args, "--config", str(rrf)])
    assert "seed agreement on 4 generated queries" in res.output
    for name in ("retriever", "ql", "rc"):
        assert name in res.output
    dropped = "'ql' dropped" in res.output or "'rc' dropped" in res.output
    # RRF uses both signals: exit code 1 exactly when one of them is dropped, else 0
    assert res.exit_code == (1 if dropped else 0), res.output
    # the default, auto, drops such a signal itself: the same check passes
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "seed agreement on 4 generated queries" in res.output, res.output
