"""`rerank-eval` and `check-labeller`: is the LLM a better ranker than the retriever it relabels?

Thin: parse → configs → :mod:`gecko_distill.labelling.rerank_check` / :func:`gecko_distill.mining.mine` → render.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gecko_distill.config import PipelineConfig, load_table
from gecko_distill.errors import ConfigError, GeckoDistillError
from gecko_distill.pipeline import embed_options, load_seed_embedder

__all__ = ["register"]

console = Console()


def _fail(e: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
    raise typer.Exit(code=2)


def _pipeline_config(config_file: Path | None, llm: str | None, llm_backend: str | None,
                     mining: dict[str, Any], prompt_style: str | None = None) -> PipelineConfig:
    """A TOML config (optional) overlaid with the flags actually given."""
    return load_table(config_file, PipelineConfig, overrides={
        "llm": {"model": llm, "backend": llm_backend, "prompt_style": prompt_style}, "mining": mining})


def _render(report: Any, title: str) -> None:
    base = report.metrics["first_stage"]["ndcg_at_10"]
    t = Table(title=title)
    for col in ("ranking", "nDCG@10", "Δ vs first stage", "P@1", "top-1 moved", "relevant first*"):
        t.add_column(col, justify="left" if col == "ranking" else "right")
    for name, m in report.metrics.items():
        d = m["ndcg_at_10"] - base
        style = "" if name == "first_stage" else "green" if d >= 0 else "red"
        t.add_row(name, f"{m['ndcg_at_10']:.3f}", "" if name == "first_stage" else f"[{style}]{d:+.3f}[/]",
                  f"{m['p_at_1']:.3f}", f"{m['moved']:.1%}", f"{m['seed_first']:.1%}")
    console.print(t)
    console.print("* among queries whose top-k holds a judged-relevant document", style="dim")


def _open_llm(cfg: PipelineConfig, cache: Path | None) -> Any:
    from gecko_distill.llm import CachedLLM, load_llm

    backend = load_llm(cfg.llm)
    return CachedLLM(backend, cache) if cache is not None else backend


def _rerank(data: Path, split: str | None, queries: int, top_k: int, task: str | None, cfg: PipelineConfig,
            cache: Path | None, seed: int, progress: bool) -> Any:
    from gecko_distill.corpus.eval_sets import RetrievalSet, load_eval_set
    from gecko_distill.embedding.task_strings import task_string_for
    from gecko_distill.labelling.rerank_check import evaluate_reranker, first_stage
    from gecko_distill.prompts import prompts_for

    ds = load_eval_set(data, kind="retrieval", split=split, limit=queries, seed=seed)
    assert isinstance(ds, RetrievalSet)
    cands = first_stage(ds, load_seed_embedder(cfg.embedder), task=task or task_string_for(ds.name, "retrieval"),
                        top_k=top_k, cache_dir=cache.parent if cache is not None else None,
                        batch_size=cfg.embedder.batch_size)
    llm = _open_llm(cfg, cache)
    return evaluate_reranker(cands, llm, prompts_for(llm, cfg.generation.prompts), cfg.mining, progress=progress)


def _write(out: Path | None, data: Path, cfg: PipelineConfig, rep: Any, raw: list[dict[str, list[float]]]) -> None:
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"data": str(data), "llm": cfg.llm.model_dump(), "mining": cfg.mining.model_dump(),
                               **rep.as_dict(), "scores": raw}, indent=1), encoding="utf-8")
    console.print(f"report: {out}")


def register(app: typer.Typer) -> None:
    @app.command(name="rerank-eval")
    def rerank_eval(
        data: Annotated[Path, typer.Option(help="BEIR folder with qrels (corpus.jsonl[.gz], queries.jsonl, qrels/).")],
        split: Annotated[str | None, typer.Option(help="qrels split (default: test, dev, ... or the only one).")] = None,
        queries: Annotated[int, typer.Option(min=1, help="Judged queries to evaluate (a seeded sample).")] = 200,
        top_k: Annotated[int, typer.Option(min=2, help="First-stage candidates re-ranked (Table 6: 20).")] = 20,
        task: Annotated[str | None, typer.Option(help="Task string of the query format (default: Gecko's for "
                                                 "the set, e.g. 'fact checking' for SciFact).")] = None,
        llm: Annotated[str | None, typer.Option(help="LLM (packaged alias, GGUF path or hub name).")] = None,
        llm_backend: Annotated[str | None, typer.Option("--llm-backend", help="llamacpp|transformers|openai|vllm")] = None,
        prompt_style: Annotated[str | None, typer.Option("--prompt-style", help="completion (base LLMs) | chat "
                                "(instruction-tuned LLMs: the model's chat template; docs/labeller.md).")] = None,
        scorers: Annotated[str | None, typer.Option(help="Comma-separated LLM scorers (default: the config's).")] = None,
        max_passage_words: Annotated[int | None, typer.Option(help="Cut candidates to this many words.")] = None,
        config: Annotated[Path | None, typer.Option(help="Pipeline TOML: its [llm] and [mining] settings apply.")] = None,
        cache: Annotated[Path | None, typer.Option(help="SQLite LLM cache (reruns are free); the corpus embeddings "
                                                   "are kept next to it.")] = None,
        seed: Annotated[int, typer.Option(help="Seed of the query sample.")] = 42,
        out: Annotated[Path | None, typer.Option(help="Write the report (and raw scores) as JSON here.")] = None,
        progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    ) -> None:
        """Re-ranker evaluation (Gecko Table 6): first-stage top-k, then QL / RC / fusions by the LLM; nDCG@10 of
        each beside the first stage."""
        try:
            cfg = _pipeline_config(config, llm, llm_backend, {
                "scorers": scorers.split(",") if scorers else None, "max_passage_words": max_passage_words},
                prompt_style)
            rep, raw = _rerank(data, split, queries, top_k, task, cfg, cache, seed, progress)
        except GeckoDistillError as e:
            _fail(e)
        _render(rep, f"re-ranker evaluation: {data.name}, {rep.num_queries} queries, top-{rep.top_k}, "
                     f"LLM {cfg.llm.model}")
        _write(out, data, cfg, rep, raw)

    @app.command(name="check-labeller")
    def check_labeller(
        data: Annotated[Path | None, typer.Option(help="BEIR folder with qrels: nDCG@10 of QL / RC / fusion vs "
                                                  "the first stage.")] = None,
        corpus: Annotated[str | None, typer.Option(help="With --queries: the corpus they were generated from.")] = None,
        generated: Annotated[Path | None, typer.Option("--queries", help="A finished generation stage: how often the "
                                                       "LLM ranks the seed passage first (no labels needed).")] = None,
        sample: Annotated[int, typer.Option(min=4, help="Queries to check (minutes, not hours).")] = 24,
        top_k: Annotated[int | None, typer.Option(help="Candidates per query (default: mining.num_neighbours).")] = None,
        llm: Annotated[str | None, typer.Option(help="LLM (packaged alias, GGUF path or hub name).")] = None,
        llm_backend: Annotated[str | None, typer.Option("--llm-backend", help="llamacpp|transformers|openai|vllm")] = None,
        prompt_style: Annotated[str | None, typer.Option("--prompt-style", help="completion (base LLMs) | chat "
                                "(instruction-tuned LLMs: the model's chat template; docs/labeller.md).")] = None,
        config: Annotated[Path | None, typer.Option(help="Pipeline TOML: its [llm] and [mining] settings apply.")] = None,
        cache: Annotated[Path | None, typer.Option(help="SQLite LLM cache (share it with the run to reuse scores).")] = None,
        out: Annotated[Path | None, typer.Option(help="Write the labelled check's report as JSON here.")] = None,
        progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    ) -> None:
        """Before a long run: is the configured LLM a better ranker than the retriever? Exits 1 when it is not."""
        if data is None and generated is None:
            _fail(ConfigError("give --data BEIR_FOLDER (labelled check) and/or --queries GENERATION_DIR --corpus "
                              "CORPUS (seed-agreement check)"))
        if generated is not None and corpus is None:
            _fail(ConfigError("--queries needs --corpus: the corpus the queries were generated from"))
        worse = False
        try:
            cfg = _pipeline_config(config, llm, llm_backend, {}, prompt_style)
            k = top_k or cfg.mining.num_neighbours
            if data is not None:
                from gecko_distill.labelling.rerank_check import labeller_advice, labeller_warnings

                rep, raw = _rerank(data, None, sample, k, None, cfg, cache, 42, progress)
                _render(rep, f"labeller check on {data.name}: {rep.num_queries} labelled queries, top-{rep.top_k}, "
                             f"LLM {cfg.llm.model}")
                configured = cfg.mining.fusion
                m = rep.metrics.get(configured)
                if m is None and configured == "auto":  # cross-fitted over two halves: too few queries to judge
                    console.print(f"note: fusion=auto is judged on 8 or more queries (--sample {sample})")
                for w in labeller_warnings(rep, configured=configured):
                    console.print(f"[bold yellow]warning:[/] {escape(w)}")
                console.print(f"[bold]advice:[/] {escape(labeller_advice(rep))}")
                worse = m is not None and m["ndcg_at_10"] < rep.metrics["first_stage"]["ndcg_at_10"]
                _write(out, data, cfg, rep, raw)
            if generated is not None:
                worse = _seed_check(cfg, corpus, generated, sample, k, cache, progress) or worse
        except GeckoDistillError as e:
            _fail(e)
        if worse:
            console.print("[bold red]the configured labeller ranks worse than the retriever:[/] use mining.fusion = "
                          "\"auto\" (drops signals that do not beat the first stage), another LLM, or "
                          "positive_policy = \"seed\"")
            raise typer.Exit(code=1)


def _seed_check(cfg: PipelineConfig, corpus: str | None, generated: Path, sample: int, k: int, cache: Path | None,
                progress: bool) -> bool:
    """Mine the first ``sample`` generated queries with fusion=auto and show its seed-agreement plan."""
    import tempfile

    from gecko_distill.corpus import read_corpus
    from gecko_distill.generation import load_task_queries
    from gecko_distill.mining import mine
    from gecko_distill.prompts import prompts_for

    mcfg = cfg.mining.model_copy(update={"fusion": "auto", "auto_sample": sample, "max_queries": sample,
                                         "num_neighbours": k, "auto_labelled": None})
    ccfg = cfg.corpus.model_copy(update={"path": corpus})
    passages, _ = read_corpus(ccfg)
    gen = load_task_queries(generated)
    with tempfile.TemporaryDirectory(prefix="gecko-check-") as tmp:
        llm = _open_llm(cfg, cache)
        res = mine(gen.queries, passages, embedder=load_seed_embedder(cfg.embedder), llm=llm,
                   config=mcfg, out_dir=Path(tmp) / "fret", prompts=prompts_for(llm, cfg.generation.prompts),
                   progress=progress, **embed_options(cfg.embedder))
    plan = res.summary["auto_fusion"]
    t = Table(title=f"seed agreement on {plan['sample_size']} generated queries, top-{k}, LLM {cfg.llm.model}")
    for col in ("ranking", "seed MRR", "seed first", "mean seed rank", "verdict", "weight"):
        t.add_column(col, justify="left" if col in ("ranking", "verdict") else "right")
    for c in plan["checks"]:
        d = c["details"]
        t.add_row(c["name"], f"{c['score']:.3f}", f"{d.get('seed_first', 0):.1%}", f"{d.get('mean_seed_rank', 0):.2f}",
                  c["verdict"], f"{c['weight']:.2f}")
    console.print(t)
    for w in plan["warnings"]:
        console.print(f"[bold yellow]warning:[/] {escape(w)}")
    # Worse = the configured fusion relies on a signal that ranks the seed lower than the retriever does
    # (auto handles that itself, so it is never "worse").
    dropped = {c["name"] for c in plan["checks"] if c["verdict"] == "dropped"}
    used = {"rrf": set(cfg.mining.scorers), "auto": set()}.get(cfg.mining.fusion, {cfg.mining.fusion})
    return bool(used & dropped)
