"""`gecko-distill report RUN_DIR` on a synthetic run directory (rows written by hand, the real renderer).

Run: ``.venv/bin/pytest tests/integration/test_report.py``. The screenshot check needs Chromium
(``apt-get install -y chromium``) and is skipped without it.
"""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from gecko_distill.report import build_report

if TYPE_CHECKING:
    from pathlib import Path


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def make_run_dir(root: Path, *, parts: tuple[str, ...] = ("generation", "fret", "model", "eval")) -> Path:
    """A run directory with synthetic but well-formed stage outputs (seeded)."""
    rng = random.Random(0)
    types = ["question_answering", "search_result", "fact_checking", "sentence_similarity"]
    if "generation" in parts:
        gen = [
            {
                "passage_id": f"p{i}",
                "task_type": types[i % 4],
                "task": f"Given a question, find the answer {i % 3}",
                "query": " ".join(["word"] * rng.randint(3, 18)) + " | pipe",
            }
            for i in range(40)
        ]
        _jsonl(root / "generation" / "generation.jsonl", gen)
        (root / "generation" / "manifest.json").write_text(
            json.dumps(
                {
                    "summary": {
                        "rows_in": 47,
                        "rows_out": 40,
                        "rejects": {"empty": 2, "too_long": 3, "copy_of_passage": 2, "malformed": 0},
                    }
                }
            )
        )
    if "fret" in parts:
        fret = []
        for i in range(30):
            cands = [
                {
                    "id": f"p{j}",
                    "retriever": rng.random(),
                    "ql": -rng.uniform(5, 40),
                    "rc": -rng.uniform(0, 3),
                    "fused": rng.random(),
                    "rank_ql": j + 1,
                    "rank_rc": j + 1,
                    "rank_fused": j + 1,
                }
                for j in range(10)
            ]
            fret.append(
                {
                    "query": f"query {i}",
                    "task": "t",
                    "task_type": types[i % 4],
                    "positive_id": f"p{i}",
                    "positive_title": f"Title {i}",
                    "negative_id": f"p{i + 1}",
                    "negative_title": "Other",
                    "positive_moved": i % 5 == 0,
                    "ranks": {"seed_fused": 1 if i % 5 else 3},
                    "scores": {"ql": -rng.uniform(5, 15), "rc": -rng.uniform(0, 1), "fused": 2.0},
                    "negative_scores": {"ql": -rng.uniform(20, 40), "rc": -rng.uniform(1, 3)},
                    "candidates": cands,
                }
            )
        _jsonl(root / "fret" / "fret.jsonl", fret)
        (root / "fret" / "manifest.json").write_text(
            json.dumps({"summary": {"rows_out": 30, "positive_moved_rate": 0.2}})
        )
    if "model" in parts:
        _jsonl(
            root / "model" / "train_log.jsonl",
            [{"step": s, "loss": 3.0 * 0.97**s + rng.uniform(0, 0.1)} for s in range(1, 61)],
        )
    if "eval" in parts:
        summary = {
            "scifact": {
                "trained": {"384": 0.62, "256": 0.61, "128": 0.58, "64": 0.52},
                "base": {"384": 0.60, "256": 0.58, "128": 0.55, "64": 0.47},
            },
            "stsb": {"trained": {"384": 0.80, "64": 0.75}, "base": {"384": 0.82, "64": 0.76}},
        }
        (root / "eval").mkdir(parents=True, exist_ok=True)
        (root / "eval" / "summary.json").write_text(json.dumps(summary))
        records = [
            {
                "task": t,
                "kind": "retrieval" if t == "scifact" else "sts",
                "model": m,
                "dim": int(d),
                "main_score_name": "ndcg_at_10" if t == "scifact" else "cosine_spearman",
                "main_score": v,
                "metrics": {"ndcg_at_10": v, "recall_at_10": v + 0.1},
            }
            for t, bm in summary.items()
            for m, bd in bm.items()
            for d, v in bd.items()
        ]
        (root / "eval" / "results.json").write_text(json.dumps(records))
    return root


def test_full_report_has_every_section_and_embedded_plots(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    rep = build_report(run)
    assert rep.missing == []
    assert rep.sections == [
        "Overview",
        "Generation: tasks and queries",
        "Mining: LLM relabelling",
        "Training",
        "Evaluation: base vs trained",
    ]
    page = rep.html_path.read_text(encoding="utf-8")
    # Self-contained: every image is a data URI that decodes to a PNG, and nothing is fetched.
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == 8  # task mix, query lengths, rejects, seed rank, QL, RC, loss, dims
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    assert not re.search(r'(src|href)="(https?:)?//', page)
    # Numbers from the inputs reach the page.
    assert "20.0%" in page  # positive-moved rate from the fret manifest
    assert "too_long" in page and "copy_of_passage" in page and "malformed" not in page  # zero counts hidden
    assert "+2.00" in page and "-2.00" in page  # scifact 384 and stsb 384 deltas
    md = rep.md_path.read_text(encoding="utf-8")
    assert "| scifact | ndcg_at_10 | 384 | 60.00 | 62.00 | +2.00 |" in md
    assert "word \\| pipe" in md  # table cells escape '|'
    for name in re.findall(r"\]\((report_files/[^)]+)\)", md):
        assert (run / name).is_file()


def test_missing_parts_are_listed_not_fatal(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", parts=("eval",))
    rep = build_report(run)
    assert rep.sections == ["Overview", "Evaluation: base vs trained"]
    assert len(rep.missing) == 3
    assert "generation/generation.jsonl" in rep.md_path.read_text(encoding="utf-8")


def test_interrupted_stage_is_reported_from_its_shards(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _jsonl(
        run / "generation" / "shards" / "shard-00000.jsonl",
        [{"passage_id": "p1", "task_type": "fact_checking", "task": "t", "query": "a b c"}],
    )
    rep = build_report(run)
    md = rep.md_path.read_text(encoding="utf-8")
    assert "interrupted" in md and "Reject reasons: unknown" in md


def test_report_cli(tmp_path: Path) -> None:
    from gecko_distill.cli import app

    run = make_run_dir(tmp_path / "run", parts=("model",))
    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert (run / "report.html").is_file() and (run / "report.md").is_file()
    assert "not in this run" in res.output
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "run directory not found" in bad.output


def _chromium() -> str | None:
    return next(
        (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None
    )


@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    """The documented visual check, automated: the page renders offline to a non-blank screenshot."""
    run = make_run_dir(tmp_path / "run")
    rep = build_report(run)
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--screenshot={shot}",
        "--window-size=1200,3000",
        rep.html_path.resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    from PIL import Image

    img = Image.open(shot).convert("L")
    assert img.size == (1200, 3000)
    # A rendered page has text and plots: many distinct grey levels, not a blank (single-colour) canvas.
    assert len(set(img.getdata())) > 50
