"""Evaluation sets from local files: BEIR folders, STS TSV, classification and pair-classification JSONL.

Four on-disk layouts are read (the layouts of ``../shared/benchdata``, and of BEIR / MTEB exports):

=======================  ===================================================================================
kind                     folder contents
=======================  ===================================================================================
``retrieval``            ``corpus.jsonl[.gz]`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
                         ``text``), ``qrels/<split>.tsv`` (``query-id  corpus-id  score``, header optional)
``sts``                  ``<split>.tsv``: ``sentence1 <TAB> sentence2 <TAB> score``, header optional
``classification``       ``train.jsonl`` + ``<split>.jsonl`` with ``text`` and ``label``
``pair_classification``  ``<split>.jsonl`` with ``sentence1``, ``sentence2`` and a 0/1 ``label``
``clustering``           a classification folder read for its ``<split>`` texts and labels (V-measure)
=======================  ===================================================================================

TSV files are split on tabs with **no quote processing**: STS-B sentences contain unbalanced ``"`` that a CSV
reader would swallow across lines. Evaluation files are not cleaned or skipped row by row as corpora are: a
bad row changes the benchmark, so it is an :class:`~gecko_distill.errors.InputError` naming the file and line.

Subsets (``limit``, ``max_corpus``) are seeded random samples that keep the original order, so the base and
the trained model always see the same items; a subset is recorded in :attr:`EvalSet.notes` and is never
comparable with published MTEB numbers.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gecko_distill.errors import InputError

__all__ = [
    "TASK_KINDS",
    "EvalSet",
    "LabelledSet",
    "PairSet",
    "RetrievalSet",
    "TaskKind",
    "detect_kind",
    "load_eval_set",
]

logger = logging.getLogger(__name__)

TaskKind = Literal["retrieval", "sts", "classification", "pair_classification", "clustering"]
TASK_KINDS: tuple[str, ...] = ("retrieval", "sts", "classification", "pair_classification", "clustering")

_SPLIT_PREFERENCE = ("test", "dev", "validation", "train")


@dataclass
class RetrievalSet:
    """A BEIR-style retrieval set: corpus ``(id, title, text)``, queries ``(id, text)`` and graded qrels."""

    name: str
    path: Path
    split: str
    corpus: list[tuple[str, str, str]]
    queries: list[tuple[str, str]]
    qrels: dict[str, dict[str, int]]
    notes: list[str] = field(default_factory=list)
    kind: TaskKind = "retrieval"

    @property
    def size(self) -> int:
        return len(self.queries)


@dataclass
class PairSet:
    """Sentence pairs with a gold score (STS, 0-5) or a 0/1 label (pair classification)."""

    name: str
    path: Path
    split: str
    kind: TaskKind
    pairs: list[tuple[str, str]]
    gold: list[float]
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.pairs)


@dataclass
class LabelledSet:
    """Texts with labels: ``train`` is the logistic-regression training split (classification only)."""

    name: str
    path: Path
    split: str
    kind: TaskKind
    texts: list[str]
    labels: list[str]
    train_texts: list[str] = field(default_factory=list)
    train_labels: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.texts)


EvalSet = RetrievalSet | PairSet | LabelledSet


# ----------------------------------------------------------------------------------------------- detection
def _corpus_file(folder: Path) -> Path | None:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _first_json_row(path: Path) -> dict[str, Any]:
    with _open(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}:{lineno}: expected a JSON object per line")
                return row
    raise InputError(f"{path}: the file is empty")


def detect_kind(path: str | Path) -> TaskKind:
    """The task kind of an evaluation folder (or of a file inside one), from its layout and fields."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(
            f"evaluation data not found: {path} (give a BEIR folder, an STS TSV folder, or a "
            "classification / pair-classification JSONL folder)"
        )
    if _corpus_file(folder) is not None:
        return "retrieval"
    if any(folder.glob("*.tsv")):
        return "sts"
    jsonls = sorted(folder.glob("*.jsonl"))
    if jsonls:
        row = _first_json_row(jsonls[0])
        if {"sentence1", "sentence2", "label"} <= row.keys():
            return "pair_classification"
        if {"text", "label"} <= row.keys():
            return "classification"
        raise InputError(
            f"{jsonls[0]}: cannot tell the task kind from fields {sorted(row)}; expected "
            "'text'+'label' (classification) or 'sentence1'+'sentence2'+'label' (pair classification), "
            "or pass the kind explicitly (--task-type)"
        )
    raise InputError(f"{folder}: no corpus.jsonl[.gz], *.tsv or *.jsonl found; not an evaluation folder")


def _pick_split(folder: Path, available: list[str], wanted: str | None, what: str) -> str:
    if wanted is not None:
        if wanted not in available:
            raise InputError(
                f"{folder}: split {wanted!r} not found for {what}; "
                f"available: {', '.join(available) or 'none'}"
            )
        return wanted
    for s in _SPLIT_PREFERENCE:
        if s in available:
            return s
    if len(available) == 1:
        return available[0]
    raise InputError(
        f"{folder}: several splits ({', '.join(available)}) and none is 'test'; pick one with --split"
    )


# ----------------------------------------------------------------------------------------------- readers
def _open(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open(encoding="utf-8")


def _iter_json(path: Path) -> Any:
    """Yield ``(lineno, row)``; a bad line raises an InputError naming ``path:line``."""
    try:
        with _open(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}:{lineno}: expected a JSON object per line")
                yield lineno, row
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def _field(row: dict[str, Any], path: Path, lineno: int, *names: str) -> Any:
    for n in names:
        if n in row and row[n] is not None:
            return row[n]
    raise InputError(f"{path}:{lineno}: missing field {names[0]!r} (row has {sorted(row)})")


def _read_tsv(path: Path) -> list[list[str]]:
    """Tab-split lines without quote processing; the header (if any) is kept as the first row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return [line.split("\t") for line in text.splitlines() if line.strip()]


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _read_beir(folder: Path, split: str | None, name: str) -> RetrievalSet:
    corpus_path = _corpus_file(folder)
    assert corpus_path is not None
    qrels_dir = folder / "qrels"
    available = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
    if not available:
        raise InputError(
            f"{folder}: no qrels/<split>.tsv found (BEIR layout needs corpus, queries.jsonl and qrels/)"
        )
    split = _pick_split(folder, available, split, "qrels")
    qrels_path = qrels_dir / f"{split}.tsv"
    qrels: dict[str, dict[str, int]] = {}
    for i, cols in enumerate(_read_tsv(qrels_path), 1):
        if i == 1 and not _is_number(cols[-1]):
            continue  # header
        if len(cols) == 4:  # TREC style: qid iter docid rel
            cols = [cols[0], cols[2], cols[3]]
        if len(cols) != 3 or not _is_number(cols[2]):
            raise InputError(f"{qrels_path}:{i}: expected 'query-id<TAB>corpus-id<TAB>score', got {cols!r}")
        qrels.setdefault(cols[0], {})[cols[1]] = int(float(cols[2]))

    queries_path = folder / "queries.jsonl"
    if not queries_path.is_file():
        raise InputError(f"{folder}: queries.jsonl not found")
    queries = []
    for lineno, row in _iter_json(queries_path):
        qid = str(_field(row, queries_path, lineno, "_id", "id"))
        if qid in qrels:  # queries of other splits are not this split's business
            queries.append((qid, str(_field(row, queries_path, lineno, "text"))))
    missing = set(qrels) - {q for q, _ in queries}
    if missing:
        raise InputError(
            f"{qrels_path}: {len(missing)} query ids have no text in {queries_path} "
            f"(e.g. {sorted(missing)[:3]})"
        )

    corpus = []
    for lineno, row in _iter_json(corpus_path):
        did = str(_field(row, corpus_path, lineno, "_id", "id"))
        corpus.append((did, str(row.get("title") or ""), str(_field(row, corpus_path, lineno, "text"))))
    ids = {d for d, _, _ in corpus}
    unknown = {d for rel in qrels.values() for d in rel} - ids
    if unknown:
        logger.warning(
            "%s: %d judged documents are not in the corpus (ignored by the metrics)", qrels_path, len(unknown)
        )
    return RetrievalSet(name=name, path=folder, split=split, corpus=corpus, queries=queries, qrels=qrels)


def _read_sts(folder: Path, split: str | None, name: str) -> PairSet:
    available = sorted(p.stem for p in folder.glob("*.tsv"))
    split = _pick_split(folder, available, split, "STS pairs")
    path = folder / f"{split}.tsv"
    rows = _read_tsv(path)
    cols = (0, 1, 2)
    if rows and not _is_number(rows[0][-1] if len(rows[0]) < 3 else rows[0][2]):
        header = [h.strip().lower() for h in rows[0]]
        try:
            cols = (header.index("sentence1"), header.index("sentence2"), header.index("score"))
        except ValueError:
            cols = (0, 1, 2)
        rows = rows[1:]
        start = 2
    else:
        start = 1
    pairs, gold = [], []
    for i, r in enumerate(rows, start):
        if len(r) <= max(cols) or not _is_number(r[cols[2]]):
            raise InputError(f"{path}:{i}: expected 'sentence1<TAB>sentence2<TAB>score', got {len(r)} fields")
        pairs.append((r[cols[0]], r[cols[1]]))
        gold.append(float(r[cols[2]]))
    if not pairs:
        raise InputError(f"{path}: no pairs")
    return PairSet(name=name, path=folder, split=split, kind="sts", pairs=pairs, gold=gold)


def _read_pairs(folder: Path, split: str | None, name: str) -> PairSet:
    available = sorted(p.stem for p in folder.glob("*.jsonl"))
    split = _pick_split(folder, available, split, "sentence pairs")
    path = folder / f"{split}.jsonl"
    pairs, gold = [], []
    for lineno, row in _iter_json(path):
        label = _field(row, path, lineno, "label", "labels")
        if label not in (0, 1, "0", "1", True, False):
            raise InputError(f"{path}:{lineno}: pair-classification label must be 0 or 1, got {label!r}")
        pairs.append(
            (str(_field(row, path, lineno, "sentence1")), str(_field(row, path, lineno, "sentence2")))
        )
        gold.append(float(int(label)))
    if len(set(gold)) < 2:
        raise InputError(f"{path}: pair classification needs both labels 0 and 1")
    return PairSet(name=name, path=folder, split=split, kind="pair_classification", pairs=pairs, gold=gold)


def _read_labelled_file(path: Path) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for lineno, row in _iter_json(path):
        texts.append(str(_field(row, path, lineno, "text", "sentence")))
        labels.append(str(_field(row, path, lineno, "label", "labels")))
    return texts, labels


def _read_labelled(folder: Path, split: str | None, name: str, kind: TaskKind) -> LabelledSet:
    available = sorted(p.stem for p in folder.glob("*.jsonl"))
    if kind == "classification":
        if "train" not in available:
            raise InputError(
                f"{folder}: classification needs train.jsonl (the logistic regression's training data)"
            )
        others = [s for s in available if s != "train"]
        if not others or split == "train":
            raise InputError(
                f"{folder}: classification is scored on a split other than train.jsonl (e.g. test.jsonl); "
                "to use the labels of train.jsonl alone, evaluate it as clustering (--task-type clustering)"
            )
        split = _pick_split(folder, others, split, "classification")
    else:
        split = _pick_split(folder, available, split, "clustering")
    texts, labels = _read_labelled_file(folder / f"{split}.jsonl")
    out = LabelledSet(name=name, path=folder, split=split, kind=kind, texts=texts, labels=labels)
    if kind == "classification":
        out.train_texts, out.train_labels = _read_labelled_file(folder / "train.jsonl")
    if len(set(labels)) < 2:
        raise InputError(f"{folder / (split + '.jsonl')}: needs at least two labels")
    return out


# ----------------------------------------------------------------------------------------------- subsets
def _sample_indices(n: int, k: int, seed: int) -> list[int]:
    """``k`` of ``range(n)`` chosen at random (seeded), returned in their original order."""
    return sorted(random.Random(seed).sample(range(n), k))


def _apply_limits(s: EvalSet, *, limit: int | None, max_corpus: int | None, seed: int) -> EvalSet:
    if limit is not None and s.size > limit:
        keep = _sample_indices(s.size, limit, seed)
        if isinstance(s, RetrievalSet):
            s.queries = [s.queries[i] for i in keep]
            s.qrels = {q: s.qrels[q] for q, _ in s.queries}
        elif isinstance(s, PairSet):
            s.pairs = [s.pairs[i] for i in keep]
            s.gold = [s.gold[i] for i in keep]
        else:
            s.texts = [s.texts[i] for i in keep]
            s.labels = [s.labels[i] for i in keep]
        s.notes.append(f"subset: {limit} of the split's items (seed {seed})")
    if isinstance(s, RetrievalSet) and max_corpus is not None and len(s.corpus) > max_corpus:
        # Keep every judged document of the kept queries, fill up with random others: the distractors
        # shrink, so scores rise — fine for a quick comparison of two models, never for reporting.
        judged = {d for rel in s.qrels.values() for d in rel}
        judged_idx = [i for i, (d, _, _) in enumerate(s.corpus) if d in judged]
        others = [i for i, (d, _, _) in enumerate(s.corpus) if d not in judged]
        n_fill = max(0, max_corpus - len(judged_idx))
        fill = random.Random(seed).sample(others, min(n_fill, len(others)))
        keep_set = set(judged_idx) | set(fill)
        s.corpus = [c for i, c in enumerate(s.corpus) if i in keep_set]
        s.notes.append(f"corpus subset: {len(s.corpus)} documents (all judged + random others, seed {seed})")
    return s


def load_eval_set(
    path: str | Path,
    *,
    kind: str = "auto",
    split: str | None = None,
    name: str | None = None,
    limit: int | None = None,
    max_corpus: int | None = None,
    seed: int = 42,
) -> EvalSet:
    """Read one evaluation set.

    Args:
        path: The set's folder (a file inside it also works: its stem is then the split).
        kind: One of :data:`TASK_KINDS` or ``"auto"`` (detected from the layout).
        split: Which split to evaluate; default ``test`` (then ``dev``, ``validation``) or the only
            one present.
        name: Task name in results; default the folder name.
        limit: Evaluate at most this many queries / pairs / examples (seeded sample).
        max_corpus: Retrieval only: shrink the corpus to this many documents, keeping every judged one.
        seed: Seed of the subsets.
    """
    p = Path(path)
    if p.is_file():
        split = split or p.name.split(".")[0]
        p = p.parent
    detected = detect_kind(p)
    if kind == "auto":
        kind = detected
    if kind not in TASK_KINDS:
        raise InputError(f"unknown task kind {kind!r}; choose one of: auto, {', '.join(TASK_KINDS)}")
    compatible = {
        "retrieval": {"retrieval"},
        "sts": {"sts"},
        "pair_classification": {"pair_classification"},
        "classification": {"classification"},
        "clustering": {"classification"},
    }
    if detected not in compatible[kind]:
        raise InputError(f"{p}: looks like a {detected} folder, cannot be evaluated as {kind}")
    name = name or p.name.lower()
    s: EvalSet
    if kind == "retrieval":
        s = _read_beir(p, split, name)
    elif kind == "sts":
        s = _read_sts(p, split, name)
    elif kind == "pair_classification":
        s = _read_pairs(p, split, name)
    else:
        s = _read_labelled(p, split, name, kind)  # type: ignore[arg-type]
    s = _apply_limits(s, limit=limit, max_corpus=max_corpus, seed=seed)
    logger.info(
        "loaded %s (%s, split %s): %d items%s",
        s.name,
        s.kind,
        s.split,
        s.size,
        f", {len(s.corpus)} documents" if isinstance(s, RetrievalSet) else "",
    )
    return s
