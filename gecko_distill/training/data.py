"""Training data: FRet rows and user sources → formatted (anchor, positive[, negative]) datasets.

Every source ends up as a ``datasets.Dataset`` whose only columns are the texts the loss sees, already in
Gecko's unified formats (paper §2; :mod:`gecko_distill.embedding.formats`). FRet rows carry their own task
per row, so texts are formatted here from the raw fields rather than through one model prompt.

Sources and their conversions:

- **FRet** (``DIR/fret``): ``task: {task} | query: {query}`` → positive / hard negative, formatted as
  documents (``title: … | text: …``) or, for symmetric task types, as queries with the same task.
- **pairs / triplets** JSONL (``query`` or ``anchor``, ``positive``, optional ``negative``, ``task``,
  ``positive_title``, ``negative_title``, ``symmetric``/``task_type``).
- **NLI** JSONL (``premise``, ``hypothesis``, ``label``): premise → entailed hypothesis (positive) and
  contradicted hypothesis (hard negative), symmetric format (method.md §6 [ours]).
- **classification** JSONL (``text``, ``label``): (x, same-label x⁺, other-label x⁻) with one unique,
  seeded id appended to all three (paper §3.3): other rows in the batch carry other ids, so they are
  trivially wrong and the loss concentrates on x⁺ vs x⁻ instead of punishing same-label false negatives.

``mode="plain"`` swaps the formats for plain concatenation (``{task} {query}``, ``{title} {text}``), the
paper's Table 4 format ablation; ``mode="none"`` is raw text (the native format of an off-the-shelf model).

For distillation (:mod:`gecko_distill.training.distill`) a FRet row also yields its N candidate passages
(columns ``cand_0 … cand_{N-1}``, formatted like the positive) and the teacher's score of each (the
``label`` column, a list of N floats), read from the scores mining stored for every candidate.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gecko_distill.artifacts import StageDir, read_jsonl
from gecko_distill.embedding.formats import SYMMETRIC_TASK_TYPES, InputMode, format_document, format_query
from gecko_distill.errors import InputError

if TYPE_CHECKING:
    from datasets import Dataset

    from gecko_distill.training.config import MixSource, TrainingConfig

__all__ = [
    "TrainingData",
    "build_training_data",
    "classification_triples",
    "format_fret_rows",
    "nli_triples",
    "pair_rows",
    "read_fret",
    "resolve_fret_dir",
]

logger = logging.getLogger(__name__)

DEFAULT_TASKS = {"pairs": "search result", "nli": "semantic similarity", "classification": "classification"}
_NLI_LABELS = {"entailment": "entailment", "0": "entailment", "contradiction": "contradiction",
               "2": "contradiction", "neutral": "neutral", "1": "neutral"}


@dataclass(frozen=True)
class TrainingData:
    """Formatted training sources, their per-batch sampling weights, and what was read/dropped."""

    datasets: dict[str, Dataset]
    weights: dict[str, float]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return sum(len(d) for d in self.datasets.values())


def _columns_to_dataset(columns: dict[str, list[str]]) -> Dataset:
    from datasets import Dataset

    return Dataset.from_dict(columns)


def _is_symmetric(task_type: str | None) -> bool:
    return (task_type or "").strip().lower().replace(" ", "_") in SYMMETRIC_TASK_TYPES


# -- FRet ---------------------------------------------------------------------------------------------

def resolve_fret_dir(path: str | Path) -> Path:
    """``DIR/fret`` itself, or a run directory ``DIR`` holding a ``fret/`` stage."""
    p = Path(path)
    if not (p / "manifest.json").exists() and (p / "fret").is_dir():
        return p / "fret"
    return p


def read_fret(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows and manifest of a *finished* FRet stage (raises ``StageIncompleteError`` otherwise)."""
    p = resolve_fret_dir(path)
    if not p.exists():
        raise InputError(f"FRet directory not found: {p} (run `gecko-distill demo --out DIR` or "
                         "`gecko-distill mine` first, then pass --data DIR/fret)")
    stage = StageDir(p, "fret")
    manifest = stage.require_complete()
    if not stage.jsonl_path.exists():
        raise InputError(f"{stage.jsonl_path} is missing although {stage.manifest_path} exists; rerun mining")
    return read_jsonl(stage.jsonl_path), manifest


def _need(row: dict[str, Any], key: str, where: str, hint: str) -> str:
    v = row.get(key)
    if not isinstance(v, str) or not v.strip():
        raise InputError(f"{where}: missing or empty {key!r} ({hint})")
    return v


def format_fret_rows(rows: list[dict[str, Any]], *, mode: InputMode = "unified", use_negatives: bool = True,
                     where: str = "fret.jsonl", teacher: dict[str, float] | None = None,
                     corpus: dict[str, tuple[str, str]] | None = None,
                     max_candidates: int | None = None,
                     hard_negatives: int = 1) -> tuple[dict[str, list[Any]], Counter[str]]:
    """FRet rows → ``{"anchor", "positive"[, "negative"]}`` columns from the raw fields.

    Rows without a hard negative are dropped (and counted) when the others have one: a dataset must have
    one column set. Returns the columns and a counter of dropped rows by reason.

    With ``hard_negatives`` k > 1 each row also gives ``negative_2 … negative_k``: its candidates after the
    selected negative, lowest fused rank first, never the positive (:func:`extra_negatives`); rows with fewer
    candidates are dropped (reason ``few_candidates``).

    With ``teacher`` (signal name → weight, e.g. ``{"ql": 1.0}``) each row also gives ``cand_0 … cand_{N-1}``
    (its N candidates, formatted like the positive) and ``label`` (the teacher score of each candidate, see
    :func:`teacher_scores`). Candidate texts come from the row, else from ``corpus`` (id → (title, text)) for
    FRet sets mined before rows carried them. Rows whose candidate count differs from the most common one are
    dropped (a batch needs one column set).
    """
    n_cands = n_all = 0
    if teacher:
        counts = Counter(len(r.get("candidates") or []) for r in rows)
        n_all = n_cands = counts.most_common(1)[0][0] if counts else 0
        if max_candidates is not None:
            n_cands = min(n_cands, max_candidates)
        if n_cands < 2:
            raise InputError(f"{where}: distillation needs each row's scored candidates, but the rows carry "
                             f"{n_cands}; mine again, or train without distillation (distill = 'none')")
    hint = "FRet rows need task, query, positive_text; rerun `gecko-distill mine`"
    has_neg = [bool(isinstance(r.get("negative_text"), str) and r["negative_text"].strip()) for r in rows]
    with_neg = use_negatives and any(has_neg)
    cols: dict[str, list[str]] = {"anchor": [], "positive": []}
    if with_neg:
        cols["negative"] = []
    n_extra = hard_negatives - 1 if with_neg else 0
    for j in range(2, n_extra + 2):
        cols[f"negative_{j}"] = []
    for j in range(n_cands):
        cols[f"cand_{j}"] = []
    if teacher:
        cols["label"] = []
    dropped: Counter[str] = Counter()
    for i, (row, neg_ok) in enumerate(zip(rows, has_neg, strict=True)):
        loc = f"{where}:{i + 1}"
        task = _need(row, "task", loc, hint)
        query = _need(row, "query", loc, hint)
        pos = _need(row, "positive_text", loc, hint)
        if with_neg and not neg_ok:
            dropped["no_negative"] += 1
            continue
        sym = _is_symmetric(row.get("task_type"))
        extras = extra_negatives(row, n_extra) if n_extra else []
        if len(extras) < n_extra:
            dropped["few_candidates"] += 1
            continue
        if teacher:
            cands = row.get("candidates") or []
            if len(cands) != n_all:
                dropped["candidate_count"] += 1
                continue
            scores = teacher_scores(cands, teacher, where=loc)  # z-scored over all N, then subset
            keep = spread_subset(scores, n_cands)
            for j, k in enumerate(keep):
                title, text = _candidate_text(cands[k], corpus, loc)
                cols[f"cand_{j}"].append(format_document(text, title, task=task, symmetric=sym, mode=mode))
            cols["label"].append([scores[k] for k in keep])
        cols["anchor"].append(format_query(task, query, mode=mode))
        cols["positive"].append(format_document(pos, row.get("positive_title"), task=task, symmetric=sym,
                                                mode=mode))
        if with_neg:
            cols["negative"].append(format_document(row["negative_text"], row.get("negative_title"),
                                                    task=task, symmetric=sym, mode=mode))
        for j, cand in enumerate(extras, 2):
            title, text = _candidate_text(cand, corpus, loc)
            cols[f"negative_{j}"].append(format_document(text, title, task=task, symmetric=sym, mode=mode))
    for reason, n in dropped.items():
        logger.warning("%s: dropped %d row(s): %s", where, n, reason)
    return cols, dropped


def extra_negatives(row: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """Up to ``k`` more hard negatives of a FRet row: its candidates other than the positive and the selected
    negative, lowest fused rank first (``rank_fused``, else the stored order read from the bottom).

    Why from the bottom: the selected negative is already the lowest (the paper's p_N); the next ones up are
    harder but also likelier to be unlabelled positives, so k grows towards the top only as far as asked.
    """
    cands = row.get("candidates") or []
    taken = {str(row.get("positive_id")), str(row.get("negative_id"))}
    pool = [c for c in cands if str(c.get("id")) not in taken]
    if all(isinstance(c.get("rank_fused"), int) for c in pool):
        pool.sort(key=lambda c: -c["rank_fused"])
    else:
        pool.reverse()
    return pool[:k]


def resolve_distill(distill: str, rows: list[dict[str, Any]], signals: dict[str, float], *,
                    has_corpus: bool = False) -> str:
    """``distill='auto'`` → 'listwise' when the rows carry candidates with every teacher signal and their texts
    (or a corpus is given to look them up), else 'none' (older FRet sets, hand-made triplets)."""
    if distill != "auto":
        return distill
    cands = (rows[0].get("candidates") or []) if rows else []
    ok = len(cands) >= 2 and all(all(s in c for s in signals) for c in cands) and (
        has_corpus or all(isinstance(c.get("text"), str) for c in cands))
    if not ok:
        logger.info("distill=auto: the FRet rows carry no scored candidate texts; training on eq. 3 alone")
    return "listwise" if ok else "none"


def spread_subset(scores: list[float], k: int) -> list[int]:
    """Indices of ``k`` of the candidates: the teacher's top ceil(k/2), then evenly spaced ranks below them
    down to the last. Keeps the head the listwise loss cares most about and a spread of negatives."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    if k >= len(order):
        return order
    head = (k + 1) // 2
    rest = order[head:]
    tail = k - head
    picks = [rest[round(i * (len(rest) - 1) / max(tail - 1, 1))] for i in range(tail)] if tail > 1 else rest[-1:]
    return order[:head] + picks


def _candidate_text(cand: dict[str, Any], corpus: dict[str, tuple[str, str]] | None, where: str) -> tuple[str, str]:
    if isinstance(cand.get("text"), str):
        return str(cand.get("title") or ""), cand["text"]
    if corpus is not None and str(cand.get("id")) in corpus:
        return corpus[str(cand["id"])]
    raise InputError(f"{where}: candidate {cand.get('id')!r} has no text (FRet sets mined before candidate texts "
                     "were stored); set training.corpus to the corpus it was mined from, or distill = 'none'")


def teacher_scores(cands: list[dict[str, Any]], signals: dict[str, float], *, where: str = "row") -> list[float]:
    """The teacher's score of each candidate: a weighted sum of per-row z-scored signals.

    Why z-scores: the signals live on unrelated scales (QL in nats per query token, RC a log-probability, the
    retriever a cosine), and a listwise loss reads only *differences within a row*; z-scoring per row puts
    them on one scale so that the weights mean what they say and the teacher temperature does not depend on
    the LLM. A signal that is flat over a row (std < 1e-6) contributes nothing to it.
    """
    total = [0.0] * len(cands)
    for name, w in signals.items():
        try:
            vals = [float(c[name]) for c in cands]
        except (KeyError, TypeError, ValueError):
            have = sorted(k for k in cands[0] if isinstance(cands[0][k], (int, float)) and not k.startswith("rank"))
            raise InputError(f"{where}: candidates have no {name!r} score (they have {have}); choose "
                             f"distill_signals among those, or mine with that scorer") from None
        mean = sum(vals) / len(vals)
        std = (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5
        if std < 1e-6:
            continue
        for j, v in enumerate(vals):
            total[j] += w * (v - mean) / std
    return total


def balance_task_types(rows: list[dict[str, Any]], *, seed: int) -> list[dict[str, Any]]:
    """Upsample every task type to the largest type's count (uniform task sampling, paper Table 4)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[str(r.get("task_type") or "unknown")].append(r)
    if len(groups) < 2:
        return rows
    rng = random.Random(seed)
    target = max(len(g) for g in groups.values())
    out: list[dict[str, Any]] = []
    for name in sorted(groups):
        g = groups[name]
        out.extend(g + [rng.choice(g) for _ in range(target - len(g))])
    return out


def _round_trip(rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Rows whose seed passage the mining retriever ranked in its top-k (round-trip consistency)."""
    kept = []
    for r in rows:
        seed = next((c for c in r.get("candidates") or [] if c.get("id") == r.get("seed_id")), None)
        if seed is not None and int(seed.get("rank_retriever", k + 1)) <= k:
            kept.append(r)
    logger.info("round-trip filter (top-%d): kept %d of %d FRet rows", k, len(kept), len(rows))
    return kept


def _corpus_lookup(path: str) -> dict[str, tuple[str, str]]:
    from gecko_distill.corpus import read_corpus
    from gecko_distill.stage_configs import CorpusConfig

    passages, _ = read_corpus(CorpusConfig(path=path, min_chars=0, dedup=False))
    return {p.id: (p.title, p.text) for p in passages}


# -- user sources -------------------------------------------------------------------------------------

def pair_rows(rows: list[dict[str, Any]], *, task: str | None, symmetric: bool | None, mode: InputMode,
              where: str) -> dict[str, list[str]]:
    """(query|anchor, positive[, negative]) rows → columns; all rows must agree on having a negative."""
    hint = "pair rows need 'query' (or 'anchor') and 'positive'; 'negative' is optional"
    with_neg = "negative" in rows[0]
    cols: dict[str, list[str]] = {"anchor": [], "positive": []} | ({"negative": []} if with_neg else {})
    for i, row in enumerate(rows):
        loc = f"{where}:{i + 1}"
        q = row.get("query", row.get("anchor"))
        if not isinstance(q, str) or not q.strip():
            raise InputError(f"{loc}: missing or empty 'query'/'anchor' ({hint})")
        pos = _need(row, "positive", loc, hint)
        if ("negative" in row) != with_neg:
            raise InputError(f"{loc}: every row of a source must have a 'negative' or none must "
                             "(split the file in two)")
        t = row.get("task") or task or DEFAULT_TASKS["pairs"]
        sym = symmetric if symmetric is not None else bool(
            row.get("symmetric", _is_symmetric(row.get("task_type"))))
        cols["anchor"].append(format_query(t, q, mode=mode))
        cols["positive"].append(format_document(pos, row.get("positive_title"), task=t, symmetric=sym,
                                                mode=mode))
        if with_neg:
            neg = _need(row, "negative", loc, hint)
            cols["negative"].append(format_document(neg, row.get("negative_title"), task=t, symmetric=sym,
                                                    mode=mode))
    return cols


def nli_triples(rows: list[dict[str, Any]], *, task: str, mode: InputMode, where: str,
                seed: int = 0) -> tuple[dict[str, list[str]], Counter[str]]:
    """NLI rows → (premise, entailed hypothesis, contradicted hypothesis), symmetric format.

    A premise needs at least one entailment and one contradiction; premises without both are counted in
    ``skipped``. With several of either, one is picked (seeded).
    """
    by_premise: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for i, row in enumerate(rows):
        loc = f"{where}:{i + 1}"
        hint = "NLI rows need 'premise', 'hypothesis' and 'label' (entailment/neutral/contradiction or 0/1/2)"
        premise, hyp = _need(row, "premise", loc, hint), _need(row, "hypothesis", loc, hint)
        label = _NLI_LABELS.get(str(row.get("label")).strip().lower())
        if label is None:
            raise InputError(f"{loc}: label {row.get('label')!r} is not one of {sorted(set(_NLI_LABELS))}")
        by_premise[premise][label].append(hyp)
    rng = random.Random(seed)
    cols: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": []}
    skipped: Counter[str] = Counter()
    for premise, labels in by_premise.items():
        if not labels["entailment"] or not labels["contradiction"]:
            skipped["nli_incomplete_premise"] += 1
            continue
        cols["anchor"].append(format_query(task, premise, mode=mode))
        cols["positive"].append(format_query(task, rng.choice(labels["entailment"]), mode=mode))
        cols["negative"].append(format_query(task, rng.choice(labels["contradiction"]), mode=mode))
    return cols, skipped


def classification_triples(rows: list[dict[str, Any]], *, task: str, mode: InputMode, seed: int,
                           where: str = "classification") -> tuple[dict[str, list[str]], Counter[str]]:
    """(text, label) rows → (x, same-label x⁺, other-label x⁻), one unique seeded id appended to all 3.

    The id (8 hex digits, ``"{text} [1f3a9c0e]"``) makes every in-batch candidate of another triple
    carry a different id, so same-label rows elsewhere in the batch stop acting as false negatives.
    Rows whose label has no other member get no triple (counted in ``skipped``).
    """
    texts: list[str] = []
    labels: list[str] = []
    for i, row in enumerate(rows):
        loc = f"{where}:{i + 1}"
        texts.append(_need(row, "text", loc, "classification rows need 'text' and 'label'"))
        if row.get("label") is None:
            raise InputError(f"{loc}: missing 'label' (classification rows need 'text' and 'label')")
        labels.append(str(row["label"]))
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by_label[y].append(i)
    if len(by_label) < 2:
        raise InputError(f"{where}: classification needs at least two labels, found {sorted(by_label)}")
    rng = random.Random(seed)
    used_ids: set[str] = set()
    cols: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": []}
    skipped: Counter[str] = Counter()
    for i, (x, y) in enumerate(zip(texts, labels, strict=True)):
        same = [j for j in by_label[y] if j != i]
        if not same:
            skipped["classification_singleton_label"] += 1
            continue
        pos = texts[rng.choice(same)]
        other = rng.choice([lab for lab in by_label if lab != y])
        neg = texts[rng.choice(by_label[other])]
        uid = f"{rng.getrandbits(32):08x}"
        while uid in used_ids:
            uid = f"{rng.getrandbits(32):08x}"
        used_ids.add(uid)
        for col, text in (("anchor", x), ("positive", pos), ("negative", neg)):
            cols[col].append(format_query(task, f"{text} [{uid}]", mode=mode))
    return cols, skipped


def detect_kind(row: dict[str, Any], where: str) -> str:
    keys = set(row)
    if {"premise", "hypothesis", "label"} <= keys:
        return "nli"
    if {"text", "label"} <= keys:
        return "classification"
    if ("query" in keys or "anchor" in keys) and "positive" in keys:
        return "pairs"
    raise InputError(f"{where}:1: cannot tell the source kind from keys {sorted(keys)}. Use pairs/triplets "
                     "{query|anchor, positive[, negative]}, NLI {premise, hypothesis, label} or "
                     "classification {text, label}, or set the kind explicitly.")


def read_mix_source(src: MixSource, *, mode: InputMode, seed: int) -> tuple[dict[str, list[str]], Counter[str]]:
    """One user source (JSONL) → formatted columns and a counter of skipped rows by reason."""
    p = Path(src.path)
    if not p.is_file():
        raise InputError(f"mix source not found: {p}")
    rows = read_jsonl(p)
    if not rows:
        raise InputError(f"{p}: no rows")
    kind = detect_kind(rows[0], str(p)) if src.kind == "auto" else src.kind
    task = src.task or DEFAULT_TASKS[kind]
    if kind == "pairs":
        cols = pair_rows(rows, task=src.task, symmetric=src.symmetric, mode=mode, where=str(p))
        return cols, Counter()
    if kind == "nli":
        return nli_triples(rows, task=task, mode=mode, where=str(p), seed=seed)
    return classification_triples(rows, task=task, mode=mode, seed=seed, where=str(p))


def _source_name(path: str, taken: set[str]) -> str:
    base = Path(path).stem or "source"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def build_training_data(fret_path: str | Path | None, config: TrainingConfig,
                        mode: InputMode | None = None) -> TrainingData:
    """All sources of a fine-tuning run, formatted, with their sampling weights and a summary.

    ``mode`` is the resolved input format (``config.input_format`` with 'auto' resolved against the base
    model); ``None`` takes ``config.input_format`` and reads 'auto' as 'unified'.
    """
    if mode is None:
        mode = "unified" if config.input_format == "auto" else config.input_format  # type: ignore[assignment]
    datasets: dict[str, Dataset] = {}
    weights: dict[str, float] = {}
    summary: dict[str, Any] = {"sources": {}}
    if fret_path is not None:
        rows, manifest = read_fret(fret_path)
        if not rows:
            raise InputError(f"{resolve_fret_dir(fret_path)}: the FRet set has no rows")
        task_counts = Counter(str(r.get("task_type")) for r in rows)
        if config.fret_task_sampling == "uniform":
            rows = balance_task_types(rows, seed=config.seed)
        distill = resolve_distill(config.distill, rows, config.distill_signals, has_corpus=bool(config.corpus))
        teacher = dict(config.distill_signals) if distill != "none" else None
        needs_texts = bool(teacher) or config.hard_negatives > 1
        corpus = _corpus_lookup(config.corpus) if (needs_texts and config.corpus) else None
        rows = _round_trip(rows, config.round_trip_k) if config.round_trip_k else rows
        cols, dropped = format_fret_rows(rows, mode=mode, use_negatives=config.use_negatives,
                                         where=str(resolve_fret_dir(fret_path) / "fret.jsonl"),
                                         teacher=teacher, corpus=corpus,
                                         max_candidates=config.distill_candidates,
                                         hard_negatives=config.hard_negatives)
        if not cols["anchor"]:
            hint = (f"; lower hard_negatives (now {config.hard_negatives}) to at most the candidates per row "
                    "minus one" if dropped.get("few_candidates") else "")
            raise InputError(f"{resolve_fret_dir(fret_path)}: every FRet row was dropped ({dict(dropped)})"
                             + hint)
        datasets["fret"] = _columns_to_dataset(cols)
        weights["fret"] = config.fret_weight
        summary["distill"] = distill
        summary["sources"]["fret"] = {"rows": len(cols["anchor"]), "dropped": dict(dropped),
                                      "task_types": dict(task_counts), "columns": list(cols),
                                      "fingerprint": manifest.get("fingerprint"),
                                      "path": str(resolve_fret_dir(fret_path))}
    for src in config.mix:
        cols, skipped = read_mix_source(src, mode=mode, seed=config.seed)
        if not cols["anchor"]:
            raise InputError(f"{src.path}: no usable rows after conversion (skipped: {dict(skipped)})")
        name = _source_name(src.path, set(datasets))
        datasets[name] = _columns_to_dataset(cols)
        weights[name] = src.weight
        summary["sources"][name] = {"rows": len(cols["anchor"]), "dropped": dict(skipped),
                                    "columns": list(cols), "path": src.path}
    if not datasets:
        raise InputError("no training data: give a FRet directory (--data) and/or mix sources (--mix)")
    for name, ds in datasets.items():
        if len(ds) < config.batch_size:
            logger.warning("source %r has %d rows, fewer than batch_size=%d: its batches will be smaller",
                           name, len(ds), config.batch_size)
    summary["weights"] = dict(weights)
    return TrainingData(datasets=datasets, weights=weights, summary=summary)
