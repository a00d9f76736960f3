"""`evaluate`, `report` and `decontam`: measuring what a run produced (parse → config → library → render)."""

from __future__ import annotations

import json
from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gecko_distill.config import load_table
from gecko_distill.errors import ConfigError, GeckoDistillError
from gecko_distill.evaluation.config import EvaluationConfig

__all__ = ["register", "render_evaluation"]

console = Console()

_KINDS = "auto, retrieval, sts, classification, pair_classification, clustering"


def _fail(e: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
    raise typer.Exit(code=2)


def _help(name: str) -> str:
    return EvaluationConfig.model_fields[name].description or ""


def _parse_dims(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--dims {text!r}: give comma-separated integers like 384,256,128,64") from None


def _aligned(values: list[str] | None, n: int, flag: str) -> list[str | None]:
    """One value for every --data, or exactly one per --data (in order)."""
    if not values:
        return [None] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ConfigError(
            f"{flag} was given {len(values)} times for {n} --data paths; give it once (for all) "
            f"or once per --data, in the same order"
        )
    return list(values)


def _parse_task_strings(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    out = {}
    for it in items:
        name, sep, task = it.partition("=")
        if not sep or not name.strip() or not task.strip():
            raise ConfigError(f"--task-string {it!r}: expected NAME=TASK, e.g. 'scifact=fact checking'")
        out[name.strip()] = task.strip()
    return out


def render_evaluation(result: Any) -> None:
    """One table: task × dim rows, a column per model (main score ×100) and the trained − base delta."""
    labels = sorted(result.models, key=lambda label: label != "base")  # base first, as in the report
    both = {"base", "trained"} <= set(labels)
    t = Table(title="evaluation: main score ×100 (MTEB's per task kind)")
    for col in ("task", "metric", "dim", *labels, *(["Δ"] if both else [])):
        t.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for task, by_model in result.summary.items():
        rec = next(r for r in result.records if r.task == task)
        dims = sorted({int(d) for m in by_model.values() for d in m}, reverse=True)
        for i, d in enumerate(dims):
            vals = [by_model.get(label, {}).get(str(d)) for label in labels]
            row = [task if i == 0 else "", rec.main_score_name if i == 0 else "", str(d)]
            row += ["" if v is None else f"{100 * v:.2f}" for v in vals]
            if both:
                b, tr = by_model.get("base", {}).get(str(d)), by_model.get("trained", {}).get(str(d))
                delta = 100 * (tr - b) if b is not None and tr is not None else None
                style = "green" if delta and delta > 0 else "red" if delta and delta < 0 else ""
                row.append("" if delta is None else f"[{style}]{delta:+.2f}[/]" if style else f"{delta:+.2f}")
            t.add_row(*row, end_section=i == len(dims) - 1)
    console.print(t)
    for s in result.sets:
        line = f"{s['name']}: {s['kind']}, split {s['split']}, {s['items']} items"
        if s["notes"]:
            line += f" [yellow](subset, not MTEB-comparable: {'; '.join(s['notes'])})[/]"
        console.print(line)
    secs = {label: sum(m.get("seconds", {}).values()) for label, m in result.models.items()}
    console.print(
        "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items()) + f", total {result.elapsed_s:.0f} s"
    )
    if result.out_dir is not None:
        console.print(f"results: {result.out_dir}/summary.json, results.json, results.md; mteb's layout: "
                      f"{result.out_dir}/mteb/results (mteb.ResultCache({str(result.out_dir / 'mteb')!r}))")
    trained = result.models.get("trained", {}).get("path")
    if trained and (Path(trained) / "eval_results.json").is_file() and result.out_dir is not None:
        console.print(f"model card updated with these results: {Path(trained) / 'README.md'}")


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        model: Annotated[
            str, typer.Option(help="Model to evaluate: a path, a packaged alias or a hub name.")
        ],
        data: Annotated[
            list[Path],
            typer.Option(
                help="Evaluation folder (repeatable): BEIR, STS TSV, "
                "classification or pair-classification JSONL; NAME=PATH names the set's results, e.g. after "
                "an mteb task (STSBenchmark=../shared/benchdata/stsb); PATH:SPLIT picks a split."
            ),
        ],
        out: Annotated[Path, typer.Option(help="Output folder (summary.json, results.json, mteb/…).")],
        base: Annotated[
            str | None,
            typer.Option(
                help="Base model evaluated beside the trained one (alias, path or hub name). Default: "
                "all-MiniLM-L6-v2; --no-base skips it."
            ),
        ] = None,
        no_base: Annotated[bool, typer.Option("--no-base", help="Evaluate the model alone.")] = False,
        dims: Annotated[
            str | None,
            typer.Option(help="Comma-separated Matryoshka dims, e.g. 384,256,128,64. " + _help("dims")),
        ] = None,
        task_type: Annotated[
            list[str] | None,
            typer.Option(
                help=f"Task kind ({_KINDS}); once for all --data "
                "or once per --data. 'clustering' reads a "
                "classification folder's labels."
            ),
        ] = None,
        split: Annotated[
            list[str] | None,
            typer.Option(
                help="Split to evaluate; once for all or once per "
                "--data (default: test, dev, validation, or the only one)."
            ),
        ] = None,
        task_string: Annotated[
            list[str] | None,
            typer.Option(help="NAME=TASK instruction override (repeatable), e.g. 'scifact=fact checking'."),
        ] = None,
        prompts: Annotated[str | None, typer.Option(help=_help("prompts"))] = None,
        base_prompts: Annotated[str | None, typer.Option(help=_help("base_prompts"))] = None,
        limit: Annotated[int | None, typer.Option(help=_help("limit"))] = None,
        max_corpus: Annotated[int | None, typer.Option(help=_help("max_corpus"))] = None,
        batch_size: Annotated[int | None, typer.Option(help=_help("batch_size"))] = None,
        max_seq_length: Annotated[int | None, typer.Option(help=_help("max_seq_length"))] = None,
        cache_dir: Annotated[
            Path | None,
            typer.Option(help="Embedding cache folder (default: $GECKO_DISTILL_CACHE/embeddings)."),
        ] = None,
        no_cache: Annotated[
            bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")
        ] = False,
        seed: Annotated[int | None, typer.Option(help=_help("seed"))] = None,
        config: Annotated[
            Path | None, typer.Option(help="TOML file with an \\[evaluation] table; flags override it.")
        ] = None,
        progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    ) -> None:
        """Evaluate a sentence-transformers model beside its base on local MTEB-style sets, at every
        Matryoshka dim; writes mteb-format results and OUT/summary.json (task → model → dim → main score)."""
        import logging

        from gecko_distill._paths import cache_home
        from gecko_distill.evaluation.runner import DataSpec
        from gecko_distill.evaluation.runner import evaluate as run_evaluate

        logging.getLogger("mteb").setLevel(logging.WARNING)  # per-phase chatter; our runner logs each score
        if not progress:
            import datasets

            datasets.disable_progress_bars()
        try:
            kinds = _aligned(task_type, len(data), "--task-type")
            splits = _aligned(split, len(data), "--split")
            parsed = [DataSpec.parse(str(p)) for p in data]  # NAME=PATH[:SPLIT] names a set (an mteb task)
            specs = [
                DataSpec(d.path, kind=k or "auto", split=s or d.split, name=d.name)
                for d, k, s in zip(parsed, kinds, splits, strict=True)
            ]
            overrides: dict[str, Any] = {
                "dims": _parse_dims(dims),
                "prompts": prompts,
                "base_prompts": base_prompts,
                "limit": limit,
                "max_corpus": max_corpus,
                "batch_size": batch_size,
                "max_seq_length": max_seq_length,
                "seed": seed,
                "task_strings": _parse_task_strings(task_string),
                "show_progress": progress,
                "base": base,
            }
            cfg = load_table(config, EvaluationConfig, table="evaluation", overrides=overrides)
            if no_base:
                cfg.base = None
            if no_cache:
                cfg.cache_dir = None
            elif cache_dir is not None:
                cfg.cache_dir = str(cache_dir)
            elif cfg.cache_dir is None:
                cfg.cache_dir = str(cache_home() / "embeddings")
            result = run_evaluate(model, specs, out_dir=out, config=cfg)
        except GeckoDistillError as e:
            _fail(e)
        render_evaluation(result)

    @app.command()
    def report(
        run_dir: Annotated[
            Path, typer.Argument(help="Run directory (generation/, fret/, model/, eval/ inside).")
        ],
    ) -> None:
        """Write RUN_DIR/report.html (self-contained, plots embedded) and RUN_DIR/report.md."""
        from gecko_distill.report import build_report

        try:
            rep = build_report(run_dir)
        except GeckoDistillError as e:
            _fail(e)
        console.print(f"report: {rep.html_path} and {rep.md_path}")
        if rep.missing:
            console.print("[yellow]not in this run:[/] " + "; ".join(rep.missing))

    @app.command()
    def decontam(
        corpus: Annotated[Path, typer.Option(help="Corpus file or folder (JSONL, Parquet, CSV, BEIR).")],
        eval_paths: Annotated[
            list[Path], typer.Option("--eval", help="Evaluation folder (repeatable); read in full.")
        ],
        queries: Annotated[
            Path | None,
            typer.Option(
                help="Generated queries: a JSONL with a 'query' field (generation.jsonl or fret.jsonl)."
            ),
        ] = None,
        ngram: Annotated[
            int, typer.Option(min=1, help="Word n-gram length of the near-duplicate test.")
        ] = 13,
        min_words: Annotated[
            int, typer.Option(min=1, help="Shorter evaluation texts match exactly only.")
        ] = 8,
        drop_documents: Annotated[
            bool,
            typer.Option(
                help="Also drop passages that appear in a retrieval set's "
                "corpus (off: generating on the target corpus is BEIR's "
                "unsupervised setting)."
            ),
        ] = False,
        kept_out: Annotated[Path | None, typer.Option(help="Write the kept passages here (JSONL).")] = None,
        out: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    ) -> None:
        """Measure overlap (exact and n-gram) between a corpus / generated queries and evaluation sets;
        optionally write the corpus without the overlapping passages."""
        from gecko_distill.artifacts import atomic_write_text, read_jsonl, to_jsonl
        from gecko_distill.config import CorpusConfig
        from gecko_distill.corpus import read_corpus
        from gecko_distill.corpus.eval_sets import load_eval_set
        from gecko_distill.evaluation.decontam import DEFAULT_DROP_FIELDS, decontaminate_passages

        try:
            passages, _ = read_corpus(CorpusConfig(path=str(corpus), min_chars=1, dedup=False))
            sets = [load_eval_set(p) for p in eval_paths]
            qs = [str(r["query"]) for r in read_jsonl(queries) if r.get("query")] if queries else []
            fields = (*DEFAULT_DROP_FIELDS, "document") if drop_documents else DEFAULT_DROP_FIELDS
            kept, rep = decontaminate_passages(
                passages, sets, queries=qs, drop_fields=fields, n=ngram, min_words=min_words
            )
        except GeckoDistillError as e:
            _fail(e)
        s = rep.summary()
        t = Table(title=f"overlap with evaluation sets ({ngram}-grams; exact under {s['min_words']} words)")
        for col in (
            "eval set",
            "field",
            "eval items",
            "passages exact",
            "passages n-gram",
            "queries exact",
            "queries n-gram",
        ):
            t.add_column(col, justify="right" if col not in ("eval set", "field") else "left")
        for es, fields_ in s["eval_sizes"].items():
            for fl, size in fields_.items():
                pc = s["passage_counts"].get(es, {}).get(fl, {})
                qc = s["query_counts"].get(es, {}).get(fl, {})
                t.add_row(
                    es,
                    fl,
                    str(size),
                    str(pc.get("exact", 0)),
                    str(pc.get("ngram", 0)),
                    str(qc.get("exact", 0)),
                    str(qc.get("ngram", 0)),
                )
        console.print(t)
        console.print(
            f"passages overlapping: {s['passages_overlapping']} / {s['passages']}; "
            f"queries overlapping: {s['queries_overlapping']} / {s['queries']}; "
            f"dropped (on {', '.join(rep.drop_fields)}): {s['dropped']}"
        )
        if out is not None:
            atomic_write_text(out, json.dumps(rep.to_dict(), indent=2, ensure_ascii=False))
            console.print(f"report: {out}")
        if kept_out is not None:
            atomic_write_text(
                kept_out, to_jsonl({"_id": p.id, "title": p.title, "text": p.text} for p in kept)
            )
            console.print(f"kept passages: {kept_out} ({len(kept)})")
