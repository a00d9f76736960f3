"""The recipe ablation of docs/headline.md: train each recipe on a FRet set, compare with the base, fairly.

Each model is evaluated in its own format (MTEB's protocol): the base (all-MiniLM-L6-v2) on raw text, a
trained model in the format it records (raw text when trained with ``input_format = "none"``, Gecko's prompts
when trained with them). Retrieval dev sets get per-query nDCG@10 at every Matryoshka dim and a paired
bootstrap interval of the difference to the base (same queries, resampled 2,000 times); STS-B, Banking77
and MRPC go through ``gecko-distill evaluate`` (mteb's protocols) as regression checks.

    python scripts/ablation.py --fret scifact=runs/headline-cpu/fret --dev scifact=$B/scifact:train \\
        --recipes docs/experiments/ablation.toml --out runs/ablation [--only NAME ...]

``--recipes`` is a TOML file of ``[recipe.NAME]`` tables of ``[training]`` keys (``domain`` picks the FRet
set and dev set, ``fret = "DIR"`` overrides the FRet set; ``model = "DIR"`` evaluates an already trained model instead of training one). Results land in ``OUT/results.jsonl`` (one row per recipe x task x dim, appended as they finish, so an
interrupted run resumes) and ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("ablation")

BASE = "all-MiniLM-L6-v2"
DIMS = [384, 256, 128, 64]


def _bench() -> Path:
    return Path(os.environ.get("GECKO_BENCHDATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "benchdata"))


def retrieval_per_query(model_path: str, set_path: str, split: str, dims: list[int],
                        max_corpus: int | None = None) -> dict[int, dict[str, float]]:
    """Per-query nDCG@10 at each dim, the model in its own format (exact cosine search over the corpus)."""
    from gecko_distill.corpus.eval_sets import load_eval_set
    from gecko_distill.embedding import load_embedder, resolve_embedder_path
    from gecko_distill.embedding.batching import encode_batched
    from gecko_distill.embedding.formats import native_mode
    from gecko_distill.embedding.task_strings import task_string_for
    from gecko_distill.evaluation.formatting import InputFormat
    from gecko_distill.retrieval.metrics import ndcg_at_k

    s = load_eval_set(set_path, kind="retrieval", split=split, max_corpus=max_corpus, seed=42)
    path = resolve_embedder_path(model_path)
    mode = native_mode(path if Path(path).is_dir() else None)
    fmt = InputFormat.for_set(s.name, "retrieval", mode=mode, task=task_string_for(s.name, "retrieval"))
    st = load_embedder(model_path)
    docs = encode_batched(st, [fmt.document(t, title) for _, title, t in s.corpus], batch_size=32,
                          prompt="", normalize_embeddings=False)
    judged = [(qid, q) for qid, q in s.queries if qid in s.qrels]
    qs = encode_batched(st, [fmt.query(q) for _, q in judged], batch_size=64, prompt="", normalize_embeddings=False)
    ids = [d for d, _, _ in s.corpus]
    out: dict[int, dict[str, float]] = {}
    for dim in dims:
        d = docs[:, :dim] / np.linalg.norm(docs[:, :dim], axis=1, keepdims=True)
        q = qs[:, :dim] / np.linalg.norm(qs[:, :dim], axis=1, keepdims=True)
        sims = q @ d.T
        top = np.argsort(-sims, axis=1)[:, :10]
        out[dim] = {qid: ndcg_at_k([ids[j] for j in top[i]], s.qrels[qid], 10) for i, (qid, _) in enumerate(judged)}
    return out


def paired_bootstrap(a: dict[str, float], b: dict[str, float], *, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of b - a over shared queries and its 95% percentile interval (queries resampled with replacement)."""
    keys = sorted(set(a) & set(b))
    diff = np.array([b[k] - a[k] for k in keys])
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def regression_scores(model_path: str, dims: list[int], cache: Path) -> dict[str, dict[int, float]]:
    from gecko_distill.evaluation import EvaluationConfig, evaluate

    b = _bench()
    res = evaluate(model_path, [b / "stsb", b / "banking77", b / "mrpc"],
                   config=EvaluationConfig(base=None, dims=dims, cache_dir=str(cache), show_progress=False))
    out: dict[str, dict[int, float]] = {}
    for r in res.records:
        if r.model == "trained":
            out.setdefault(r.task, {})[r.dim] = r.main_score
    return out


def merged_copy(src: Path, dst: Path, alpha: float, other: str = BASE) -> Any:
    """A copy of a trained model directory with its weights averaged with the base (``merge_base``), or with
    ``other`` (``merge_with``: a model soup of two fine-tunings of the base)."""
    import shutil
    from types import SimpleNamespace

    from gecko_distill.embedding import load_embedder
    from gecko_distill.training.loop import merge_weights

    if not (dst / "model.safetensors").exists():
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        model = load_embedder(str(src), device="cpu")
        merge_weights(model, other, alpha)
        model.save_pretrained(str(dst))
    m = json.loads((src / "manifest.json").read_text())
    return SimpleNamespace(rows=m["rows"], steps=m["summary"]["steps"])


def first_query_per_passage(fret: Path, out: Path) -> Path:
    """A FRet stage holding only each seed passage's first row (rows are passage-major)."""
    from gecko_distill.artifacts import StageDir
    from gecko_distill.training.data import read_fret

    rows, manifest = read_fret(fret)
    seen: set[str] = set()
    kept = [r for r in rows if not (r["seed_id"] in seen or seen.add(r["seed_id"]))]
    stage = StageDir(out, "fret")
    fp = f"{manifest.get('fingerprint')}-1qpp"
    if not stage.is_complete(fp):
        stage.prepare(fp)
        stage.finalize(kept, fp=fp, config={}, summary={"rows_out": len(kept), "from": str(fret)})
    return stage.path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fret", action="append", default=[], help="DOMAIN=FRET_DIR (repeatable)")
    ap.add_argument("--dev", action="append", default=[], help="DOMAIN=BEIR_DIR:SPLIT (repeatable)")
    ap.add_argument("--recipes", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--only", nargs="*", default=None, help="Run only these recipes.")
    ap.add_argument("--no-regression", action="store_true", help="Skip STS-B / Banking77 / MRPC.")
    ap.add_argument("--max-corpus", type=int, default=None, help="Shrink each retrieval corpus to N documents, "
                    "every judged one kept (same sample for every model; not MTEB-comparable, ~3x faster).")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gecko_distill.training import TrainingConfig, train

    frets = dict(x.split("=", 1) for x in args.fret)
    devs = {k: v.rsplit(":", 1) for k, v in (x.split("=", 1) for x in args.dev)}
    recipes: dict[str, dict[str, Any]] = tomllib.loads(args.recipes.read_text())["recipe"]
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.jsonl"
    done = {(r["recipe"], r["task"]) for r in map(json.loads, results_path.read_text().splitlines())} \
        if results_path.exists() else set()
    per_query_dir = args.out / "per_query"
    per_query_dir.mkdir(exist_ok=True)

    def record(recipe: str, task: str, scores: dict[int, float], extra: dict[str, Any] | None = None) -> None:
        with results_path.open("a") as f:
            if not scores:  # a marker that a step finished
                f.write(json.dumps({"recipe": recipe, "task": task, "dim": None, "score": None}) + "\n")
            for dim, v in scores.items():
                f.write(json.dumps({"recipe": recipe, "task": task, "dim": dim, "score": v, **(extra or {})}) + "\n")

    def per_query(recipe: str, model: str, domain: str) -> dict[int, dict[str, float]]:
        p = per_query_dir / f"{recipe}.{domain}.{args.max_corpus or 'full'}.json"
        if p.exists():
            return {int(k): v for k, v in json.loads(p.read_text()).items()}
        path, split = devs[domain]
        pq = retrieval_per_query(model, path, split, DIMS, args.max_corpus)
        p.write_text(json.dumps(pq))
        return pq

    base_pq = {dom: per_query("base", BASE, dom) for dom in devs}
    for dom in devs:
        if ("base", dom) not in done:
            record("base", dom, {d: float(np.mean(list(v.values()))) for d, v in base_pq[dom].items()})
    if not args.no_regression and ("base", "regression") not in done:
        for task, sc in regression_scores(BASE, DIMS, args.out / "emb-cache").items():
            record("base", task, sc)
        record("base", "regression", {})

    for name, spec in recipes.items():
        if args.only and name not in args.only:
            continue
        spec = dict(spec)
        domain = spec.pop("domain")
        fret = spec.pop("fret", None) or frets.get(domain)  # a recipe may name its own FRet set (same dev set)
        if fret is None and "model" not in spec:
            sys.exit(f"recipe {name!r} trains on domain {domain!r}: give --fret {domain}=FRET_DIR")
        if spec.pop("first_query_only", False):  # the "1 query per passage" arm of the queries-per-passage lever
            fret = str(first_query_per_passage(Path(fret), args.out / "fret-1qpp" / domain))
        model_dir = args.out / "models" / name
        t0 = time.time()
        merge_from = spec.pop("merge_from", None)
        trained = spec.pop("model", None)
        if trained:  # an already trained model (e.g. `gecko-distill run`'s <out_dir>/model): evaluate only
            from types import SimpleNamespace

            model_dir = Path(trained)
            m = json.loads((model_dir / "manifest.json").read_text())
            res = SimpleNamespace(rows=m["rows"], steps=m["summary"]["steps"])
        elif merge_from:  # WiSE-FT / a soup applied to an already trained recipe: as training with merge_base
            res = merged_copy(args.out / "models" / merge_from, model_dir, spec["merge_base"],
                              spec.get("merge_with") or BASE)
        else:
            res = train(fret, model_dir, config=TrainingConfig(show_progress=False, **spec))
        train_s = time.time() - t0
        if (name, domain) not in done:
            pq = per_query(name, str(model_dir), domain)
            extra = {"rows": res.rows, "steps": res.steps, "train_s": round(train_s, 1)}
            for dim in DIMS:
                mean, lo, hi = paired_bootstrap(base_pq[domain][dim], pq[dim])
                record(name, domain, {dim: float(np.mean(list(pq[dim].values())))},
                       {**extra, "delta": mean, "ci": [lo, hi]})
        if not args.no_regression and (name, "regression") not in done:
            for task, sc in regression_scores(str(model_dir), DIMS, args.out / "emb-cache").items():
                record(name, task, sc)
            record(name, "regression", {})
        logger.info("%s done", name)
    (args.out / "table.md").write_text(table(results_path))
    print(table(results_path))
    return 0


def table(results_path: Path) -> str:
    rows = [json.loads(x) for x in results_path.read_text().splitlines()]
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in rows:
        if r["task"] != "regression" and r["dim"] is not None:
            by.setdefault((r["recipe"], r["task"]), {})[r["dim"]] = r
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows if r["task"] != "regression"))
    lines = ["| recipe | task | " + " | ".join(str(d) for d in DIMS) + " |", "|---|---|" + "---|" * len(DIMS)]
    for rec in recipes:
        for task in tasks:
            cells = by.get((rec, task))
            if not cells:
                continue
            out = []
            for d in DIMS:
                r = cells.get(d)
                if r is None:
                    out.append("")
                    continue
                base = by.get(("base", task), {}).get(d)
                s = f"{100 * r['score']:.2f}"
                if "ci" in r:
                    s += f" ({100 * r['delta']:+.2f} [{100 * r['ci'][0]:+.2f}, {100 * r['ci'][1]:+.2f}])"
                elif base is not None and rec != "base":
                    s += f" ({100 * (r['score'] - base['score']):+.2f})"
                out.append(s)
            lines.append(f"| {rec} | {task} | " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
