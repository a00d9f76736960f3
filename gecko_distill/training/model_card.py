"""``MODEL_DIR/README.md``: a hub-ready model card for a trained gecko-distill model directory.

The card follows sentence-transformers' model-card conventions (YAML front matter with ``library_name``,
``base_model``, ``pipeline_tag: sentence-similarity``, ``tags`` such as ``loss:...`` and ``dataset_size:...``,
``license`` and a ``model-index`` of evaluation results; then usage, training and evaluation sections), so the
folder can be pushed to a hub as is. Everything on it is read from the directory itself, so it can be
re-rendered at any time:

- ``gecko_distill.json`` (:mod:`.model_info`): base model, input format, prompts, Matryoshka dims, loss;
- ``train_config.json``: the hyper-parameters;
- the training summary (``manifest.json``, or the one passed while the manifest is not yet written): rows,
  steps, first/last loss and the sources; the FRet source's own manifest (rows, fusion, signals, neighbours)
  and its run's ``pipeline.json`` (corpus, LLM) when they are still where training found them;
- ``eval_results.json``, written by :func:`record_evaluation` after ``gecko-distill evaluate``.

Omitted: widget examples and carbon/hardware sections (we have no reliable source for them here).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from gecko_distill._markdown import markdown_cell
from gecko_distill.artifacts import atomic_write_text
from gecko_distill.training.model_info import read_model_info

__all__ = ["CARD_FILE", "EVAL_RESULTS_FILE", "record_evaluation", "render_model_card", "write_model_card"]

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
EVAL_RESULTS_FILE = "eval_results.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        logger.warning("%s is not valid JSON; the model card leaves it out", path)
        return {}


def _hub_id(name: str) -> str | None:
    """The hub id of a base model: a hub name as is, a packaged alias by its hub name, a local path: None."""
    from gecko_distill.embedding.loader import PACKAGED_EMBEDDERS

    if Path(name).exists():
        return None
    for key in PACKAGED_EMBEDDERS:
        if "/" in key and key.rsplit("/", 1)[1] == name:
            return key
    return name if "/" in name else None


def _base_license(name: str) -> str | None:
    """The ``license:`` of the base model's own card, when the base is on disk (a packaged alias or a path)."""
    from gecko_distill.embedding.loader import resolve_embedder_path

    try:
        readme = Path(resolve_embedder_path(name)) / CARD_FILE
    except Exception:  # an optional package missing: the licence stays unknown
        return None
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    for line in text.split("---", 2)[1].splitlines():
        if line.startswith("license:"):
            return line.split(":", 1)[1].strip() or None
    return None


def _yaml_scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON scalars are valid YAML scalars


def _front_matter(meta: dict[str, Any]) -> str:
    """A small YAML writer for the card's flat keys, string lists and the model-index block."""
    lines = ["---"]
    for key, value in meta.items():
        if value is None or value == []:
            continue
        if key == "model-index":
            lines.append("model-index:")
            lines.append(f"- name: {_yaml_scalar(value['name'])}")
            lines.append("  results:")
            for r in value["results"]:
                lines += [f"  - task: {{type: {r['task']}}}",
                          f"    dataset: {{name: {_yaml_scalar(r['dataset'])}, type: {_yaml_scalar(r['dataset'])}, "
                          f"split: {_yaml_scalar(r['split'])}}}",
                          "    metrics:"]
                lines += [f"    - {{type: {_yaml_scalar(m)}, value: {v}}}" for m, v in r["metrics"].items()]
        elif isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"- {_yaml_scalar(v)}" for v in value]
        else:
            lines.append(f"{key}: {_yaml_scalar(value)}")
    lines.append("---")
    return "\n".join(lines)


def _fret_facts(summary: dict[str, Any]) -> dict[str, Any]:
    """What the FRet source's own manifest and its run's pipeline.json say, if they are still on disk."""
    src = summary.get("sources", {}).get("fret")
    if not src or not src.get("path"):
        return {}
    fret_dir = Path(src["path"])
    manifest = _read_json(fret_dir / "manifest.json")
    pipeline = _read_json(fret_dir.parent / "pipeline.json")
    return {"dir": str(fret_dir), "summary": manifest.get("summary", {}), "pipeline": pipeline}


def _usage(model_ref: str, info: Any, dims: list[int]) -> str:
    small = dims[-1] if dims else None
    code = ["```python", "from sentence_transformers import SentenceTransformer", "",
            f"model = SentenceTransformer({model_ref!r})  # this folder, or the hub id it was pushed to"]
    if info is not None and info.prompts:
        code += ["# the prompts ship with the model: encode_query / encode_document apply them",
                 'queries = model.encode_query(["which vitamins help the immune system?"])',
                 'docs = model.encode_document(["Vitamin C supports several cellular functions of the immune '
                 'system."])',
                 "print(model.similarity(queries, docs))",
                 "# another task: name one of the prompts listed below",
                 'claims = model.encode(["Vitamin C cures colds."], prompt_name="fact checking")',
                 "# without prompts (raw text), e.g. to compare with a model that has none",
                 'raw = model.encode(["which vitamins help the immune system?"])']
    else:
        code += ["# trained on raw text: no prompts, as its base model is used",
                 'embeddings = model.encode(["which vitamins help the immune system?", '
                 '"Vitamin C supports the immune system."])',
                 "print(model.similarity(embeddings[:1], embeddings[1:]))"]
    if small:
        code += ["", f"# Matryoshka: a smaller embedding (any trained dim: {', '.join(map(str, dims))})",
                 f"small = SentenceTransformer({model_ref!r}, truncate_dim={small})"]
    code.append("```")
    return "\n".join(code)


def _eval_section(evaluation: dict[str, Any]) -> list[str]:
    models = evaluation.get("models", {})
    fmts = "; ".join(f"{label} = `{m.get('name')}` ({m.get('prompts')})" for label, m in models.items())
    out = ["## Evaluation", "",
           f"Main score x100 per set (MTEB's main score for its kind), each model in its own input format "
           f"({fmts}). Evaluated with `gecko-distill evaluate` on {evaluation.get('finished_at', '?')}.", "",
           evaluation.get("table_md", "")]  # rendered by evaluate (the evaluation layer owns its tables)
    notes = sorted({n for s in evaluation.get("sets", []) for n in s.get("notes", [])})
    if notes:
        out += ["Subsets (not comparable with published MTEB numbers):", *[f"- {n}" for n in notes], ""]
    return out


def _model_index(name: str, evaluation: dict[str, Any]) -> dict[str, Any] | None:
    types = evaluation.get("mteb_types", {})  # the hub's model-index uses mteb's task types (set by evaluate)
    sets = {s["name"]: s for s in evaluation.get("sets", [])}
    results = []
    for task, by_model in evaluation.get("summary", {}).items():
        trained = by_model.get("trained", {})
        if not trained or task not in sets:
            continue
        full = max(trained, key=int)
        s = sets[task]
        results.append({"task": types.get(s["kind"], s["kind"]), "dataset": task,
                        "split": s.get("split") or "test",
                        "metrics": {s.get("main_score", "main_score"): round(trained[full], 6)}})
    return {"name": name, "results": results} if results else None


def render_model_card(model_dir: str | Path, *, summary: dict[str, Any] | None = None) -> str:
    """The card of ``model_dir`` as Markdown with YAML front matter (see the module docstring)."""
    d = Path(model_dir)
    info = read_model_info(d)
    cfg = _read_json(d / "train_config.json")
    summary = summary if summary is not None else _read_json(d / "manifest.json").get("summary", {})
    evaluation = _read_json(d / EVAL_RESULTS_FILE)
    base = info.base_model if info else cfg.get("base_model", "")
    dims = list(info.matryoshka_dims) if info else []
    fret = _fret_facts(summary)
    fs, pipe = fret.get("summary", {}), fret.get("pipeline", {})
    rows = sum(int(s.get("rows", 0)) for s in summary.get("sources", {}).values())
    loss_name = (info.loss.get("name") if info else None) or "GeckoLoss"
    inner = (info.loss.get("base_loss") if info else None) or loss_name
    name = d.name
    tags = ["sentence-transformers", "sentence-similarity", "feature-extraction", "gecko-distill",
            "generated_from_trainer", f"dataset_size:{rows}", *dict.fromkeys([f"loss:{loss_name}", f"loss:{inner}"])]
    if len(dims) > 1:
        tags.append("matryoshka")
    hub_base = _hub_id(base) if base else None
    meta = {"library_name": "sentence-transformers", "pipeline_tag": "sentence-similarity",
            "base_model": hub_base, "license": _base_license(base) if base else None, "tags": tags,
            "model-index": _model_index(name, evaluation)}

    out = [_front_matter(meta), "", f"# {name}", "",
           f"A [sentence-transformers](https://www.sbert.net) model fine-tuned from "
           f"{f'[{hub_base}](https://huggingface.co/{hub_base})' if hub_base else f'`{base}`'} with "
           "[gecko-distill](https://arxiv.org/abs/2403.20327)'s recipe (Google's Gecko): an LLM wrote queries for "
           "corpus passages and re-labelled their positives and hard negatives (the FRet set), and the model was "
           "trained on them with the Gecko loss"
           + (f" at Matryoshka dims {', '.join(map(str, dims))}." if len(dims) > 1 else "."), "",
           "## Model details", "",
           "| | |", "|---|---|",
           f"| base model | `{base}` |",
           f"| embedding dimension | {info.embedding_dim if info else '?'} |",
           f"| Matryoshka dims | {', '.join(map(str, dims)) or 'full only'} |",
           f"| max sequence length | {cfg.get('max_seq_length', '?')} |",
           f"| input format | {info.input_format if info else '?'} |",
           "| similarity | cosine |", "",
           "## Usage", "", "```bash", "pip install -U sentence-transformers", "```", "",
           _usage(name, info, dims), ""]
    if info is not None and info.prompts:
        out += ["### Prompts", "",
                "Saved in `config_sentence_transformers.json`; pass `prompt_name=` to `encode`. Queries take the "
                "task prompt that fits the use; documents take `document`.", "",
                "| prompt name | prompt |", "|---|---|",
                *[f"| `{k}` | `{markdown_cell(v)}` |" for k, v in info.prompts.items()], ""]
    else:
        out += ["This model ships no prompts: it reads raw text, like its base model.", ""]

    out += ["## Training data", ""]
    if fs:
        corpus = pipe.get("corpus", {}).get("path")
        llm = pipe.get("llm", {})
        plan = fs.get("auto_fusion") or {}
        signals = ", ".join(f"{k}={v}" for k, v in (plan.get("weights") or {}).items()) or \
            ", ".join(k.removesuffix("_positive").upper() for k in fs if k.endswith("_positive")) or "none"
        out += ["| | |", "|---|---|",
                f"| FRet rows (mined / generated queries) | {fs.get('rows_out', '?')} / {fs.get('rows_in', '?')} |",
                f"| corpus | `{corpus or '?'}` |",
                f"| LLM (query writing and re-labelling) | `{llm.get('model', '?')}` ({llm.get('backend', '?')}) |",
                f"| neighbours per query | {fs.get('num_neighbours', '?')} |",
                f"| fusion | {fs.get('fusion', '?')}"
                + (f" (auto chose: {plan.get('decision', plan.get('mode', ''))})" if plan else "") + " |",
                f"| LLM signals | {signals} |",
                f"| positive / negative policy | {fs.get('positive_policy', '?')} / {fs.get('negative_policy', '?')} |",
                f"| positive moved off the seed passage | {fs.get('positive_moved_rate', '?')} |", ""]
    for src, s in summary.get("sources", {}).items():
        out.append(f"- source `{src}`: {s.get('rows', '?')} training rows"
                   + (f" (dropped: {s['dropped']})" if s.get("dropped") else "")
                   + (f", task types {s['task_types']}" if s.get("task_types") else ""))
    out += ["", "## Training procedure", "",
            f"Loss: `{inner}`"
            + (f" wrapped in `MatryoshkaLoss` over dims {dims}" if loss_name == "MatryoshkaLoss" else "")
            + (f"; settings {json.dumps(info.loss, sort_keys=True)}" if info and info.loss else "") + ".", ""]
    if "steps" in summary:
        first, last = summary.get("first_loss"), summary.get("last_loss")
        out.append(f"Steps: {summary['steps']}"
                   + (f"; loss first / last step: {first:.4f} / {last:.4f}" if first is not None else "") + ".")
        out.append("")
    hp = ["batch_size", "epochs", "max_steps", "learning_rate", "warmup_ratio", "weight_decay", "lr_scheduler",
          "temperature", "precision", "seed", "distill", "use_negatives", "hard_negatives", "same_tower",
          "merge_base"]
    shown = [(k, cfg[k]) for k in hp if k in cfg]
    if shown:
        out += ["| hyper-parameter | value |", "|---|---|", *[f"| `{k}` | `{json.dumps(v)}` |" for k, v in shown],
                "", "All settings: `train_config.json`; loss per step: `train_log.jsonl`.", ""]
    if evaluation:
        out += _eval_section(evaluation)
    out += ["## Citation", "", "```bibtex",
            "@article{lee2024gecko,", "  title={Gecko: Versatile Text Embeddings Distilled from Large Language "
            "Models},", "  author={Lee, Jinhyuk and Dai, Zhuyun and Ren, Xiaoqi and others},",
            "  journal={arXiv preprint arXiv:2403.20327},", "  year={2024}", "}", "```", ""]
    return "\n".join(out)


def write_model_card(model_dir: str | Path, *, summary: dict[str, Any] | None = None) -> Path:
    """Render and write ``MODEL_DIR/README.md`` (replacing sentence-transformers' generic card)."""
    path = Path(model_dir) / CARD_FILE
    atomic_write_text(path, render_model_card(model_dir, summary=summary))
    return path


def record_evaluation(model_dir: str | Path, evaluation: dict[str, Any]) -> Path | None:
    """Store an evaluation of a gecko-distill model directory beside it and refresh its card.

    Args:
        model_dir: the evaluated model; anything but a gecko-distill model directory is left alone.
        evaluation: ``{"summary", "models", "sets", "finished_at"}`` as ``evaluate`` writes them.

    Returns:
        The card's path, or ``None`` when ``model_dir`` is not a gecko-distill model directory.
    """
    d = Path(model_dir)
    if not d.is_dir() or read_model_info(d) is None:
        return None
    atomic_write_text(d / EVAL_RESULTS_FILE, json.dumps(evaluation, indent=2, ensure_ascii=False, default=str))
    return write_model_card(d)
