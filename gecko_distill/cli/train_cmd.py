"""`train` and `prefinetune`: the training commands; thin: parse → config → call → render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gecko_distill.config import load_table
from gecko_distill.errors import ConfigError, GeckoDistillError
from gecko_distill.training.config import PrefinetuneConfig, TrainingConfig, parse_mix_spec

__all__ = ["register"]

console = Console()


def _help(model: type, name: str) -> str:
    return model.model_fields[name].description or ""


def _t(name: str) -> str:
    return _help(TrainingConfig, name)


def _p(name: str) -> str:
    return _help(PrefinetuneConfig, name)


def _parse_dims(text: str | None) -> list[int] | None:
    """``"384,256,128"`` → dims; ``"none"`` → ``[]`` (no Matryoshka); ``None`` → not given."""
    if text is None:
        return None
    if text.strip().lower() in ("none", "off", ""):
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--dims {text!r}: give comma-separated integers like 384,256,128,64, "
                          "or 'none'") from None


def _render(result: Any, title: str) -> None:
    if result.skipped:
        console.print(f"{result.model_dir} already holds a finished run with this config and data: "
                      "nothing to do.")
        return
    t = Table(title=title)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("model directory", str(result.model_dir))
    t.add_row("training rows", str(result.rows))
    t.add_row("optimizer steps", str(result.steps))
    t.add_row("Matryoshka dims", ", ".join(map(str, result.matryoshka_dims)))
    if result.first_loss is not None:
        t.add_row("loss first / last step", f"{result.first_loss:.4f} / {result.last_loss:.4f}")
    t.add_row("time", f"{result.elapsed_s:.1f} s")
    card = Path(result.model_dir) / "README.md"
    if card.is_file():
        t.add_row("model card", str(card))
    console.print(t)
    console.print(f"loss log: {Path(result.model_dir) / 'train_log.jsonl'}; load with "
                  f"SentenceTransformer({str(result.model_dir)!r})")


def _fail(e: Exception) -> None:
    console.print(f"[bold red]error:[/] {e}")
    raise typer.Exit(code=2)


def register(app: typer.Typer) -> None:

    @app.command()
    def train(
        out: Annotated[Path, typer.Option(help="Model directory to write (SentenceTransformer loads it).")],
        data: Annotated[Path | None, typer.Option(help="FRet stage directory (DIR/fret or run DIR).")] = None,
        base: Annotated[str | None, typer.Option(help=_t("base_model"))] = None,
        mix: Annotated[list[str] | None, typer.Option(
            help="Extra source PATH[:weight]: pairs/triplets, NLI or classification JSONL; repeatable.",
        )] = None,
        epochs: Annotated[float | None, typer.Option(help=_t("epochs"))] = None,
        max_steps: Annotated[int | None, typer.Option(help=_t("max_steps"))] = None,
        batch_size: Annotated[int | None, typer.Option(help=_t("batch_size"))] = None,
        mini_batch_size: Annotated[int | None, typer.Option(help=_t("mini_batch_size"))] = None,
        lr: Annotated[float | None, typer.Option(help=_t("learning_rate"))] = None,
        temperature: Annotated[float | None, typer.Option(help=_t("temperature"))] = None,
        dims: Annotated[str | None, typer.Option(help="Matryoshka dims, e.g. 384,256,128,64; 'none' = off. "
                                                 "Default: the full dim + the standard widths below it "
                                                 "(1024/768/512/256/128/64).")] = None,
        max_seq_length: Annotated[int | None, typer.Option(help=_t("max_seq_length"))] = None,
        input_format: Annotated[str | None, typer.Option(help=_t("input_format"))] = None,
        distill: Annotated[str | None, typer.Option(help=_t("distill"))] = None,
        base_weight: Annotated[float | None, typer.Option(help=_t("base_weight"))] = None,
        same_tower: Annotated[bool | None, typer.Option("--same-tower/--no-same-tower",
                                                        help=_t("same_tower"))] = None,
        task_sampling: Annotated[str | None, typer.Option(help=_t("fret_task_sampling"))] = None,
        negatives: Annotated[bool | None, typer.Option("--negatives/--no-negatives",
                                                       help=_t("use_negatives"))] = None,
        hard_negatives: Annotated[int | None, typer.Option(help=_t("hard_negatives"))] = None,
        seed: Annotated[int | None, typer.Option(help=_t("seed"))] = None,
        soup_seeds: Annotated[int | None, typer.Option(help=_t("soup_seeds"))] = None,
        save_steps: Annotated[int | None, typer.Option(help=_t("save_steps"))] = None,
        resume: Annotated[bool | None, typer.Option("--resume/--no-resume", help=_t("resume"))] = None,
        keep_checkpoints: Annotated[bool | None, typer.Option(help=_t("keep_checkpoints"))] = None,
        device: Annotated[str | None, typer.Option(help=_t("device"))] = None,
        config: Annotated[Path | None, typer.Option(help="TOML file: a [training] table (or a whole file) "
                                                    "of TrainingConfig keys; flags override it.")] = None,
        progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    ) -> None:
        """Fine-tune an embedder on a FRet set with the Gecko loss (eq. 3), Matryoshka dims and unified
        formats; writes a sentence-transformers model directory, train_log.jsonl and manifest.json."""
        from gecko_distill.training import train as run_train

        try:
            overrides = {
                "base_model": base, "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size,
                "mini_batch_size": mini_batch_size, "learning_rate": lr, "temperature": temperature,
                "matryoshka_dims": _parse_dims(dims), "max_seq_length": max_seq_length,
                "input_format": input_format, "distill": distill, "base_weight": base_weight,
                "same_tower": same_tower,
                "fret_task_sampling": task_sampling,
                "use_negatives": negatives, "hard_negatives": hard_negatives,
                "seed": seed, "soup_seeds": soup_seeds, "save_steps": save_steps, "resume": resume,
                "keep_checkpoints": keep_checkpoints,
                "device": device, "show_progress": progress,
                "mix": [parse_mix_spec(m).model_dump() for m in mix] if mix else None,
            }
            cfg = load_table(config, TrainingConfig, table="training", overrides=overrides)
            if data is None and not cfg.mix:
                raise ConfigError("give --data DIR/fret (a FRet stage directory) and/or --mix PATH[:weight]")
            result = run_train(data, out, config=cfg)
        except GeckoDistillError as e:
            _fail(e)
        _render(result, "gecko-distill train")

    @app.command()
    def prefinetune(
        out: Annotated[Path, typer.Option(help="Model directory to write.")],
        corpus: Annotated[str | None, typer.Option(help="Corpus file/folder or demo corpus "
                                                   "(default demo:gensim-wiki).")] = None,
        base: Annotated[str | None, typer.Option(help=_p("base_model"))] = None,
        pair_mode: Annotated[str | None, typer.Option(help=_p("pair_mode"))] = None,
        task: Annotated[str | None, typer.Option(help=_p("task"))] = None,
        max_pairs: Annotated[int | None, typer.Option(help=_p("max_pairs"))] = None,
        epochs: Annotated[float | None, typer.Option(help=_p("epochs"))] = None,
        max_steps: Annotated[int | None, typer.Option(help=_p("max_steps"))] = None,
        batch_size: Annotated[int | None, typer.Option(help=_p("batch_size"))] = None,
        mini_batch_size: Annotated[int | None, typer.Option(help=_p("mini_batch_size"))] = None,
        lr: Annotated[float | None, typer.Option(help=_p("learning_rate"))] = None,
        dims: Annotated[str | None, typer.Option(help="Matryoshka dims, e.g. 384,256; 'none' = off.")] = None,
        max_seq_length: Annotated[int | None, typer.Option(help=_p("max_seq_length"))] = None,
        seed: Annotated[int | None, typer.Option(help=_p("seed"))] = None,
        device: Annotated[str | None, typer.Option(help=_p("device"))] = None,
        config: Annotated[Path | None, typer.Option(help="TOML file: a [prefinetune] table (or a whole file) "
                                                    "of PrefinetuneConfig keys; flags override it.")] = None,
        progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    ) -> None:
        """Optional stage before `train`: self-supervised (title, body) / (first sentence, rest) / (a sentence,
        the rest: inverse cloze) pairs from a corpus, in-batch negatives only (paper eq. 2). Pass OUT as
        `train --base OUT`."""
        from gecko_distill.training import prefinetune as run_prefinetune

        try:
            overrides = {
                "base_model": base, "pair_mode": pair_mode, "task": task, "max_pairs": max_pairs,
                "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size,
                "mini_batch_size": mini_batch_size, "learning_rate": lr, "matryoshka_dims": _parse_dims(dims),
                "max_seq_length": max_seq_length, "seed": seed, "device": device, "show_progress": progress,
            }
            cfg = load_table(config, PrefinetuneConfig, table="prefinetune", overrides=overrides)
            if corpus is not None:
                cfg.corpus = cfg.corpus.model_copy(update={"path": corpus})
            result = run_prefinetune(out, config=cfg)
        except GeckoDistillError as e:
            _fail(e)
        _render(result, "gecko-distill prefinetune")
