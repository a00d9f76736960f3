"""`evaluate` on the real all-MiniLM-L6-v2, checked against reference implementations.

Small fixed inputs (hand-written here) are evaluated through our pipeline (local mteb tasks + the Matryoshka
encoder) and the numbers are recomputed independently: encode with sentence-transformers, truncate and
renormalise, then pytrec_eval (nDCG@10), scipy (Spearman) and scikit-learn (AP). The benchdata tier does the
same on real SciFact / STS-B subsets and reproduces MiniLM's published MTEB STSBenchmark score; it is skipped
when ``$GECKO_BENCHDATA`` (default ``<repo>/../shared/benchdata``) is absent.

Run: ``.venv/bin/pytest tests/integration/test_evaluate.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
from typer.testing import CliRunner

from gecko_distill.errors import ConfigError
from gecko_distill.evaluation import DataSpec, EvaluationConfig, evaluate
from gecko_distill.evaluation.formatting import InputFormat
from gecko_distill.evaluation.mteb_results import load_mteb_results

if TYPE_CHECKING:
    from pathlib import Path

DOCS = {
    "d1": ("Photosynthesis", "Plants convert sunlight, water and carbon dioxide into glucose and oxygen."),
    "d2": ("Volcanoes", "Magma rises through the crust and erupts as lava, ash and volcanic gases."),
    "d3": ("", "The French Revolution began in 1789 and ended the absolute monarchy in France."),
    "d4": ("Insulin", "Insulin is a hormone made by the pancreas that lowers blood sugar levels."),
    "d5": ("Tides", "Ocean tides are caused mainly by the gravitational pull of the Moon."),
    "d6": ("Vaccines", "Vaccines train the immune system to recognise a pathogen without causing disease."),
    "d7": ("Glaciers", "Glaciers form where snow accumulates for years and compresses into ice."),
    "d8": ("Bees", "Honey bees communicate the location of flowers with a waggle dance."),
}
QUERIES = {
    "q1": "How do plants make sugar from light?",
    "q2": "What hormone regulates blood glucose?",
    "q3": "Why does the sea level rise and fall each day?",
    "q4": "When did the monarchy in France end?",
}
QRELS = {"q1": {"d1": 1}, "q2": {"d4": 2, "d6": 1}, "q3": {"d5": 1}, "q4": {"d3": 1, "d2": 0}}
STS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "Someone is cutting an onion.", 4.2),
    ("A cat sits on the mat.", "A dog runs in the park.", 0.6),
    ("The stock market fell sharply today.", "Shares dropped steeply on Monday.", 3.9),
    ("Kids are playing football.", "Children play soccer outside.", 4.0),
    ("A plane is taking off.", "An airplane departs from the runway.", 4.5),
    ("He is reading a book.", "The weather is sunny.", 0.2),
    ("A chef cooks pasta.", "Someone is preparing food in a kitchen.", 3.1),
    ("The baby is sleeping.", "An infant naps in a crib.", 4.4),
    ("Two men are fighting.", "Two people are dancing together.", 1.2),
]
INTENTS = {
    "card": [
        "Where is my new card?",
        "My card has not arrived yet.",
        "When will the card be delivered?",
        "I am still waiting for my card.",
        "Has my card been sent?",
        "Track my card delivery.",
    ],
    "refund": [
        "I want my money back.",
        "How do I get a refund?",
        "Please refund this purchase.",
        "Can I return this and be refunded?",
        "Refund request for my order.",
        "Give me a refund now.",
    ],
    "pin": [
        "I forgot my PIN.",
        "How can I reset my PIN code?",
        "My PIN is blocked.",
        "Change the PIN of my card.",
        "Where do I set a new PIN?",
        "PIN not working at the ATM.",
    ],
}


def _write(tmp: Path) -> dict[str, Path]:
    beir = tmp / "minibeir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n" for k, (t, x) in DOCS.items())
    )
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in QUERIES.items())
    )
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{q}\t{d}\t{r}\n" for q, rel in QRELS.items() for d, r in rel.items())
    )
    sts = tmp / "minists"
    sts.mkdir()
    (sts / "test.tsv").write_text(
        "sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in STS)
    )
    cls = tmp / "miniintents"
    cls.mkdir()
    rows = [(t, lab) for lab, ts in INTENTS.items() for t in ts]
    (cls / "train.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows[::2])
    )
    (cls / "test.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows[1::2])
    )
    pairs = tmp / "minipairs"
    pairs.mkdir()
    (pairs / "test.jsonl").write_text(
        "".join(
            json.dumps({"sentence1": a, "sentence2": b, "label": int(s >= 3.5)}) + "\n" for a, b, s in STS
        )
    )
    return {"beir": beir, "sts": sts, "cls": cls, "pairs": pairs}


def _embed(model, texts: list[str], dim: int) -> np.ndarray:
    e = model.encode(texts, prompt="", convert_to_numpy=True)[:, :dim]
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("eval")
    paths = _write(tmp)
    # Gecko's format for both models: these tests check the metrics against hand computations in that format;
    # the default (each model in its own format) is tested below.
    cfg = EvaluationConfig(dims=[384, 64], cache_dir=str(tmp / "cache"), show_progress=False, prompts="unified",
                           base_prompts="same")
    data = [
        paths["beir"],
        paths["sts"],
        paths["cls"],
        DataSpec(str(paths["cls"]), kind="clustering"),
        paths["pairs"],
    ]
    res = evaluate("all-MiniLM-L6-v2", data, out_dir=tmp / "out", config=cfg)
    return tmp, paths, cfg, data, res


def test_outputs_in_mteb_format_and_summary(small_run) -> None:
    from mteb import TaskResult

    tmp, _, _, _, res = small_run
    out = tmp / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"minibeir", "minists", "miniintents", "miniintents-clustering", "minipairs"}
    for task, by_model in summary.items():
        assert set(by_model) == {"trained", "base"}
        assert set(by_model["trained"]) == {"384", "64"}
        # the base defaults to the same packaged MiniLM here: same embeddings, same numbers
        assert by_model["base"] == by_model["trained"]
    # mteb's own result layout, read back through mteb's own API: the trained model's plain result is its full
    # dim in its own format; the 64-dim one and the forced 'unified' format (not MiniLM's own) are experiments
    bench = load_mteb_results(out)
    got = {(m.model_name, tuple(sorted((m.model_meta.experiment_kwargs or {}).items()))): m for m in bench.model_results}
    assert {name for name, _ in got} == {"sentence-transformers/all-MiniLM-L6-v2"}
    for dim in ("384", "64"):
        kwargs = {"input_format": "unified", **({"truncate_dim": 64} if dim == "64" else {})}
        result = got[("sentence-transformers/all-MiniLM-L6-v2", tuple(sorted(kwargs.items())))]
        assert {t.task_name for t in result.task_results} == set(summary)
        for tr in result.task_results:
            assert tr.get_score() == pytest.approx(summary[tr.task_name]["trained"][dim], abs=1e-6)
    rev = next(iter(bench.model_results)).model_revision
    assert (out / "mteb" / "results" / "sentence-transformers__all-MiniLM-L6-v2" / rev / "experiments").is_dir()
    assert isinstance(TaskResult.from_disk(next((out / "mteb" / "results").rglob("minists.json"))), TaskResult)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["trained"]["dims"] == [384, 64]
    assert manifest["sets"][0]["format"]["trained"]["query"] == "task: search result | query: {text}"
    assert (
        manifest["sets"][0]["format"]["base"] == manifest["sets"][0]["format"]["trained"]
    )  # base_prompts="same"
    assert manifest["models"]["trained"]["encoded_texts"] > 0
    assert "| minibeir | 384 |" in (out / "results.md").read_text()
    rec = next(r for r in res.records if r.task == "minibeir" and r.dim == 384)
    assert rec.main_score_name == "ndcg_at_10" and "recall_at_100" in rec.metrics
    assert 0.0 <= res.score("miniintents-clustering") <= 1.0


def test_retrieval_ndcg_matches_pytrec_eval(small_run, minilm) -> None:
    import pytrec_eval

    _, _, _, _, res = small_run
    fmt = InputFormat.for_set("minibeir", "retrieval", mode="unified", task="search result")
    qids, dids = list(QUERIES), list(DOCS)
    for dim in (384, 64):
        q = _embed(minilm, [fmt.query(QUERIES[i]) for i in qids], dim)
        d = _embed(minilm, [fmt.document(DOCS[i][1], DOCS[i][0]) for i in dids], dim)
        sims = q @ d.T
        run = {qi: {di: float(sims[a, b]) for b, di in enumerate(dids)} for a, qi in enumerate(qids)}
        ev = pytrec_eval.RelevanceEvaluator(QRELS, {"ndcg_cut.10", "recall.10"}).evaluate(run)
        ref = float(np.mean([m["ndcg_cut_10"] for m in ev.values()]))
        assert res.score("minibeir", dim=dim) == pytest.approx(ref, abs=2e-5)  # mteb rounds to 5 decimals
    assert res.score("minibeir", dim=384) > 0.7  # and the model really retrieves (not a degenerate run)


def test_sts_spearman_and_pair_ap_match_scipy_and_sklearn(small_run, minilm) -> None:
    from scipy.stats import spearmanr
    from sklearn.metrics import average_precision_score

    _, _, _, _, res = small_run
    fmt = InputFormat.for_set("minists", "sts", mode="unified", task="semantic similarity")
    for dim in (384, 64):
        a = _embed(minilm, [fmt.query(x) for x, _, _ in STS], dim)
        b = _embed(minilm, [fmt.query(y) for _, y, _ in STS], dim)
        cos = (a * b).sum(1)
        rho = spearmanr(cos, [s for _, _, s in STS]).statistic
        assert res.score("minists", dim=dim) == pytest.approx(rho, abs=1e-6)
        ap = average_precision_score([int(s >= 3.5) for _, _, s in STS], cos)
        rec = next(r for r in res.records if r.task == "minipairs" and r.dim == dim and r.model == "trained")
        assert rec.main_score_name == "max_ap"                     # mteb 2's main score: best AP over 4 similarities
        assert rec.metrics["cosine_ap"] == pytest.approx(ap, abs=1e-6)
        assert rec.main_score >= ap - 1e-6
    assert res.score("minists", dim=384) > 0.8


def test_embedding_cache_makes_the_second_run_free(small_run) -> None:
    tmp, _, cfg, data, res = small_run
    again = evaluate("all-MiniLM-L6-v2", data, out_dir=None, config=cfg.model_copy(update={"base": None}))
    assert again.models["trained"]["encoded_texts"] == 0  # every embedding came from the on-disk cache
    for r in again.records:
        assert r.main_score == pytest.approx(res.score(r.task, "trained", r.dim), abs=1e-6)


def test_evaluate_shows_a_progress_bar_over_sets_and_dims(small_run, capsys) -> None:
    tmp, paths, cfg, _, _ = small_run
    evaluate("all-MiniLM-L6-v2", [paths["sts"], paths["pairs"]],
             config=cfg.model_copy(update={"base": None, "show_progress": True}))
    err = capsys.readouterr().err
    assert "evaluate trained" in err and "4/4" in err  # 2 sets x 2 dims


def test_evaluate_cli(small_run) -> None:
    from gecko_distill.cli import app

    tmp, paths, _, _, res = small_run
    out = tmp / "cli"
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            "all-MiniLM-L6-v2",
            "--data",
            str(paths["sts"]),
            "--data",
            str(paths["cls"]),
            "--task-type",
            "sts",
            "--task-type",
            "clustering",
            "--out",
            str(out),
            "--no-base",
            "--dims",
            "384,64",
            "--no-cache",
            "--no-progress",
            "--prompts",
            "unified",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "evaluation: main score" in r.output and "mteb.ResultCache(" in r.output  # the closing summary
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == ["minists", "miniintents-clustering"] and list(summary["minists"]) == ["trained"]
    assert summary["minists"]["trained"]["384"] == pytest.approx(res.score("minists", dim=384), abs=1e-6)
    assert "minists" in r.output and "cosine_spearman" in r.output
    raw = tmp / "cli_raw_base"
    args = ["evaluate", "--model", "all-MiniLM-L6-v2", "--data", str(paths["sts"]), "--out", str(raw)]
    r = CliRunner().invoke(app, [*args, "--prompts", "unified", "--base-prompts", "none", "--dims", "384",
                                 "--no-cache"])
    assert r.exit_code == 0, r.output
    fmt = json.loads((raw / "manifest.json").read_text())["sets"][0]["format"]
    assert fmt["base"]["query"] == "{text}"
    assert fmt["trained"]["query"].startswith("task: semantic similarity")
    by_model = json.loads((raw / "summary.json").read_text())["minists"]
    assert by_model["trained"]["384"] == pytest.approx(res.score("minists", dim=384), abs=1e-6)
    assert by_model["base"]["384"] != by_model["trained"]["384"]  # same model, different inputs
    bad = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            "all-MiniLM-L6-v2",
            "--data",
            str(paths["sts"]),
            "--out",
            str(out),
            "--dims",
            "512",
            "--no-cache",
            "--no-base",
        ],
    )
    assert bad.exit_code == 2 and "exceed the model's embedding size 384" in bad.output
    bad = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            "all-MiniLM-L6-v2",
            "--data",
            str(paths["sts"]),
            "--data",
            str(paths["cls"]),
            "--task-type",
            "sts",
            "--task-type",
            "sts",
            "--task-type",
            "sts",
            "--out",
            str(out),
        ],
    )
    assert bad.exit_code == 2 and "--task-type was given 3 times for 2 --data paths" in bad.output


# ------------------------------------------------------------------------------------------- benchdata tier
# `benchdata` (tests/conftest.py) skips when $GECKO_BENCHDATA / ../shared/benchdata is absent.


def test_scifact_subset_ndcg_matches_pytrec_eval(benchdata: Path, minilm) -> None:
    import pytrec_eval

    from gecko_distill.corpus.eval_sets import load_eval_set

    cfg = EvaluationConfig(
        base=None, dims=[384], limit=20, max_corpus=200, show_progress=False, cache_dir=None, prompts="unified"
    )
    res = evaluate("all-MiniLM-L6-v2", [benchdata / "scifact"], config=cfg)
    s = load_eval_set(benchdata / "scifact", limit=20, max_corpus=200, seed=cfg.seed)  # the very same subset
    fmt = InputFormat.for_set("scifact", "retrieval", mode="unified", task="fact checking")
    q = _embed(minilm, [fmt.query(t) for _, t in s.queries], 384)
    d = _embed(minilm, [fmt.document(text, title) for _, title, text in s.corpus], 384)
    sims = q @ d.T
    run = {
        qid: {s.corpus[j][0]: float(sims[i, j]) for j in range(len(s.corpus))}
        for i, (qid, _) in enumerate(s.queries)
    }
    ev = pytrec_eval.RelevanceEvaluator(s.qrels, {"ndcg_cut.10"}).evaluate(run)
    ref = float(np.mean([m["ndcg_cut_10"] for m in ev.values()]))
    assert res.score("scifact") == pytest.approx(ref, abs=2e-5)
    assert res.records[0].notes  # flagged as a subset


def test_stsb_reproduces_the_published_mteb_score(benchdata: Path, tmp_path: Path) -> None:
    """MTEB's leaderboard: all-MiniLM-L6-v2 scores 82.03 on STSBenchmark (test, raw text, cosine)."""
    cfg = EvaluationConfig(base=None, dims=[384], prompts="none", show_progress=False, cache_dir=None)
    # the local files under mteb's official task name: the result file is STSBenchmark.json, read by mteb
    res = evaluate("all-MiniLM-L6-v2", [DataSpec.parse(f"STSBenchmark={benchdata / 'stsb'}")], out_dir=tmp_path,
                   config=cfg)
    assert res.records[0].n_items == 1379
    assert res.score("STSBenchmark") == pytest.approx(0.8203, abs=5e-4)
    (result,) = load_mteb_results(tmp_path).model_results
    assert result.model_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert [(t.task_name, round(t.get_score(), 4)) for t in result.task_results] == [("STSBenchmark", 0.8203)]
    with pytest.raises(ConfigError, match="mteb's Retrieval task, but the local set is sts"):
        evaluate("all-MiniLM-L6-v2", [DataSpec.parse(f"SciFact={benchdata / 'stsb'}")], config=cfg)


def test_each_model_is_evaluated_in_its_own_format_by_default(small_run, tmp_path) -> None:
    """MTEB's protocol: a model without gecko-distill prompts reads raw text; a model trained with Gecko's
    prompts reads them. The same weights, labelled as a unified-format gecko model, score differently."""
    import shutil

    from gecko_distill.embedding import resolve_embedder_path

    _, paths, _, _, _ = small_run
    gecko = tmp_path / "gecko-model"
    shutil.copytree(resolve_embedder_path("all-MiniLM-L6-v2"), gecko)
    (gecko / "gecko_distill.json").write_text(json.dumps({"matryoshka_dims": [384], "embedding_dim": 384,
                                                          "input_format": "unified"}))
    cfg = EvaluationConfig(dims=[384], cache_dir=None, show_progress=False)
    res = evaluate(str(gecko), [paths["sts"]], out_dir=tmp_path / "out", config=cfg)
    fmt = json.loads((tmp_path / "out" / "manifest.json").read_text())["sets"][0]["format"]
    assert fmt["trained"]["query"] == "task: semantic similarity | query: {text}"
    assert fmt["base"]["query"] == "{text}"
    assert res.score("minists", "trained") != res.score("minists", "base")
    # The ablation: one format for both.
    same = evaluate(str(gecko), [paths["sts"]], out_dir=tmp_path / "same",
                    config=cfg.model_copy(update={"base_prompts": "same"}))
    assert same.score("minists", "trained") == pytest.approx(same.score("minists", "base"), abs=1e-6)


def test_a_finished_evaluation_is_read_back_and_a_changed_one_is_not(small_run) -> None:
    from gecko_distill.evaluation.resume import finished_evaluation

    tmp, _, cfg, _, res = small_run
    done = finished_evaluation(tmp / "out", model="all-MiniLM-L6-v2", config=cfg)
    assert done is not None and done.summary == res.summary and done.models == res.models

    def key(r):  # metrics may hold NaN (undefined AP), which never equals itself
        return (r.task, r.model, r.dim, r.main_score, r.notes)

    assert [key(r) for r in done.records] == [key(r) for r in res.records]
    assert finished_evaluation(tmp / "out", model="all-MiniLM-L6-v2", config=cfg.model_copy(update={"limit": 3})) is None
    assert finished_evaluation(tmp / "out", model=str(tmp), config=cfg) is None  # another model
    assert finished_evaluation(tmp / "nowhere", model="all-MiniLM-L6-v2", config=cfg) is None
