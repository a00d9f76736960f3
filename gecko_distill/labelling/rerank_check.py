"""Re-ranker evaluation (Gecko Table 6 protocol): is the LLM a better ranker than the retriever it relabels?

Protocol, on a BEIR-layout set with qrels:

1. First stage: the seed embedder retrieves the top-``k`` documents (default 20) for each query, queries in
   Gecko's unified format ``task: {task} | query: {q}`` and documents as ``title: {t} | text: {x}``.
2. The LLM scores every (query, candidate) with the configured scorers (query likelihood, relevance
   classification; :mod:`gecko_distill.labelling.scoring`) and the candidates are re-ranked by each signal alone
   and by each fusion of them.
3. nDCG@10 of every ranking, beside the first stage's, by pytrec_eval (:func:`.metrics.score_run`). Only the
   top-``k`` are in a run (documents outside it count as not retrieved, the same for every ranking) and
   queries without a judged-relevant document are skipped.

Besides nDCG@10 each ranking reports P@1 (its top-1 is judged relevant) and the *moved* rate (its top-1 differs
from the first stage's top-1): the mining stage's positive-moved rate, measured where we know whether the
move helped. ``seed_first`` is the rate at which a ranking puts a judged-relevant document first among the
queries whose top-``k`` holds one: the same statistic that :mod:`gecko_distill.labelling.auto_fusion` computes on
mined queries, with the generating passage as the relevant one.
"""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gecko_distill.artifacts import atomic_write_bytes, fingerprint
from gecko_distill.corpus.eval_sets import RetrievalSet
from gecko_distill.corpus.normalize import truncate_words
from gecko_distill.embedding.formats import format_document, format_query
from gecko_distill.embedding.loader import embedder_format, embedder_id
from gecko_distill.labelling.auto_fusion import RETRIEVER, FusionPlan, plan_from_seed, plan_fusion
from gecko_distill.labelling.fusion import fuse, rank
from gecko_distill.labelling.scoring import score_candidates
from gecko_distill.retrieval.metrics import score_run
from gecko_distill.retrieval.neighbours import encode_texts
from gecko_distill.retrieval.passage_index import search

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from gecko_distill.llm.base import LLMBackend
    from gecko_distill.prompts import PromptSet
    from gecko_distill.stage_configs import MiningConfig

__all__ = ["RerankQuery", "RerankReport", "cut_texts", "evaluate_reranker", "first_stage", "labeller_warnings",
           "plan_on_qrels", "plan_on_seed", "rerank_report", "score_queries"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankQuery:
    """One query's first-stage candidates (best first) and its judgements."""

    qid: str
    query: str
    doc_ids: list[str]
    texts: list[str]  # "title. text" as the LLM sees it (not yet cut to length)
    retriever: list[float]  # cosine scores, decreasing
    qrels: dict[str, int]


@dataclass
class RerankReport:
    """nDCG@10 / P@1 / moved / seed-first per ranking name ('first_stage', 'ql', 'rc', 'rrf', ...)."""

    num_queries: int
    top_k: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    plans: list[dict[str, Any]] = field(default_factory=list)  # fusion=auto: the plan of each fold

    def as_dict(self) -> dict[str, Any]:
        return {"num_queries": self.num_queries, "top_k": self.top_k, "metrics": self.metrics, "plans": self.plans}


def _llm_text(title: str, text: str) -> str:
    title = title.strip()
    return f"{title}. {text}" if title and not text.startswith(title) else text


def _corpus_embeddings(embedder: SentenceTransformer, docs: Sequence[tuple[str, str, str]], cache_dir: Path | None,
                       batch_size: int) -> np.ndarray:
    path = None
    if cache_dir is not None:
        key = fingerprint([embedder_id(embedder), embedder_format(embedder), fingerprint([d for d, _, _ in docs]), len(docs),
                           fingerprint([t[:64] for _, _, t in docs])])
        path = cache_dir / f"corpus-{key}.npy"
        if path.exists():
            return np.load(path)
    logger.info("encoding %d documents with the first-stage embedder", len(docs))
    mode = embedder_format(embedder)
    emb = encode_texts(embedder, [format_document(t, title, mode=mode) for _, title, t in docs], batch_size=batch_size)
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, emb)
        atomic_write_bytes(path, buf.getvalue())
    return emb


def first_stage(data: RetrievalSet, embedder: SentenceTransformer, *, task: str, top_k: int = 20,
                cache_dir: str | Path | None = None, batch_size: int = 64) -> list[RerankQuery]:
    """Top-``k`` candidates per judged query (inner-product search over the whole corpus, as in mining).

    Args:
        data: The set (its ``queries`` may be a subset; see ``load_eval_set(limit=)``).
        embedder: The first-stage (seed) embedder.
        task: The task string of the unified query format (Gecko Table 9; ``fact checking`` for SciFact), used
            when the embedder reads that format; the embedder reads queries and documents in its own format
            (raw text for an off-the-shelf model), as the mining stage does.
        cache_dir: Keep the corpus embeddings here (``corpus-<hash>.npy``) so reruns skip the encoding.
    """
    judged = [(q, t) for q, t in data.queries if any(r > 0 for r in data.qrels.get(q, {}).values())]
    skipped = len(data.queries) - len(judged)
    if skipped:
        logger.info("%d queries without a judged-relevant document are skipped", skipped)
    if not judged:
        raise ValueError(f"{data.path}: no query has a judged-relevant document")
    doc_emb = _corpus_embeddings(embedder, data.corpus, Path(cache_dir) if cache_dir else None, batch_size)
    mode = embedder_format(embedder)
    q_emb = encode_texts(embedder, [format_query(task, t, mode=mode) for _, t in judged], batch_size=batch_size)
    nb = search(q_emb, doc_emb, k=min(top_k, len(data.corpus)), index="auto")  # exact below 100k documents
    out = []
    for (qid, text), idx, sc in zip(judged, nb.indices, nb.scores, strict=True):
        keep = [(int(i), float(s)) for i, s in zip(idx, sc, strict=True) if i >= 0]
        out.append(RerankQuery(
            qid=qid, query=text, doc_ids=[data.corpus[i][0] for i, _ in keep],
            texts=[_llm_text(data.corpus[i][1], data.corpus[i][2]) for i, _ in keep],
            retriever=[s for _, s in keep], qrels=dict(data.qrels[qid])))
    return out


def cut_texts(queries: Sequence[RerankQuery], max_words: int) -> list[tuple[str, list[str]]]:
    """(query, [candidate texts cut to ``max_words``]) pairs, the input of ``score_candidates``."""
    return [(q.query, [truncate_words(t, max_words) for t in q.texts]) for q in queries]


def _order_metrics(queries: Sequence[RerankQuery], orders: Sequence[Sequence[int]]) -> dict[str, float]:
    """nDCG@10 (pytrec_eval), P@1, moved and seed-first of one ranking given as per-query candidate orders."""
    run: dict[str, dict[str, float]] = {}
    p1 = moved = first_hits = first_n = 0
    for q, order in zip(queries, orders, strict=True):
        n = len(order)
        # Scores n, n-1, ... encode the order exactly: pytrec_eval then never falls back to its id tie-break.
        run[q.qid] = {q.doc_ids[i]: float(n - r) for r, i in enumerate(order)}
        top_rel = q.qrels.get(q.doc_ids[order[0]], 0) > 0
        p1 += top_rel
        moved += order[0] != 0
        if any(q.qrels.get(d, 0) > 0 for d in q.doc_ids):
            first_n += 1
            first_hits += top_rel
    m = score_run(run, {q.qid: q.qrels for q in queries}, k_values=(10,))
    nq = max(len(queries), 1)
    return {"ndcg_at_10": round(m["ndcg_at_10"], 4), "p_at_1": round(p1 / nq, 4), "moved": round(moved / nq, 4),
            "seed_first": round(first_hits / max(first_n, 1), 4)}


def _orders_of(name: str, scores: Sequence[Mapping[str, Sequence[float]]]) -> list[list[int]]:
    """Per query, the candidates ordered by one signal (ties: retriever order, as in mining)."""
    out = []
    for s in scores:
        r = rank(s[name])
        out.append(sorted(range(len(r)), key=r.__getitem__))
    return out


def rerank_report(queries: Sequence[RerankQuery], scores: Sequence[Mapping[str, Sequence[float]]],
                  fusions: Mapping[str, Callable[[Mapping[str, Sequence[float]]], list[int]]] | None = None,
                  ) -> RerankReport:
    """Metrics of the first stage, of each scored signal alone and of each named fusion.

    Args:
        queries: First-stage candidates.
        scores: Per query, signal name -> scores aligned with the candidates (higher is better).
        fusions: name -> function(per-query scores) -> candidate order (best first).
    """
    if len(queries) != len(scores):
        raise ValueError("one score dict per query is needed")
    rep = RerankReport(num_queries=len(queries), top_k=max((len(q.doc_ids) for q in queries), default=0))
    rep.metrics["first_stage"] = _order_metrics(queries, [list(range(len(q.doc_ids))) for q in queries])
    for name in scores[0] if scores else []:
        rep.metrics[name] = _order_metrics(queries, _orders_of(name, scores))
    for name, fn in (fusions or {}).items():
        rep.metrics[name] = _order_metrics(queries, [fn(s) for s in scores])
    return rep


def score_queries(llm: LLMBackend, prompts: PromptSet, queries: Sequence[RerankQuery], *, scorers: Sequence[str],
                  max_passage_words: int, batch_size: int = 8, progress: bool = False) -> list[dict[str, list[float]]]:
    """LLM scores of every candidate, ``batch_size`` queries per backend call (the mining stage's batching)."""
    from tqdm.auto import tqdm

    out: list[dict[str, list[float]]] = []
    bar = tqdm(total=len(queries), desc=f"LLM re-ranking ({'+'.join(scorers).upper()})", disable=not progress)
    for i in range(0, len(queries), batch_size):
        chunk = queries[i : i + batch_size]
        out.extend(score_candidates(llm, prompts, cut_texts(chunk, max_passage_words), scorers=scorers))
        bar.update(len(chunk))
    bar.close()
    return out


def plan_on_qrels(queries: Sequence[RerankQuery], scores: Sequence[Mapping[str, Sequence[float]]]) -> FusionPlan:
    """``fusion = "auto"`` with labels: each signal's nDCG@10 on these queries vs the first stage's."""
    metrics = {RETRIEVER: _order_metrics(queries, [list(range(len(q.doc_ids))) for q in queries])}
    for name in scores[0]:
        metrics[name] = _order_metrics(queries, _orders_of(name, scores))
    rng = random.Random(0)  # chance level: mean nDCG@10 of random re-rankings
    chance = sum(_order_metrics(queries, [rng.sample(range(len(q.doc_ids)), len(q.doc_ids)) for q in queries])
                 ["ndcg_at_10"] for _ in range(10)) / 10
    return plan_fusion({n: m["ndcg_at_10"] for n, m in metrics.items()}, basis="qrels", sample_size=len(queries),
                       chance=chance, details=metrics)


def plan_on_seed(queries: Sequence[RerankQuery], scores: Sequence[Mapping[str, Sequence[float]]]) -> FusionPlan:
    """``fusion = "auto"`` as mining runs it without labels: seed agreement, the seed being the best-ranked
    judged-relevant candidate (queries whose top-k holds none are left out, as mining forces the seed in)."""
    seeds = [next((j for j, d in enumerate(q.doc_ids) if q.qrels.get(d, 0) > 0), None) for q in queries]
    keep = [i for i, j in enumerate(seeds) if j is not None]
    return plan_from_seed([scores[i] for i in keep], [seeds[i] for i in keep])


def _auto_crossfit(queries: Sequence[RerankQuery], scores: Sequence[Mapping[str, Sequence[float]]], k: float,
                   planner: Callable[..., FusionPlan]) -> tuple[list[list[int]], list[dict[str, Any]]]:
    """``auto`` judged fairly: the plan for each half of the queries is made on the other half."""
    half = len(queries) // 2
    folds = [(range(half, len(queries)), range(half)), (range(half), range(half, len(queries)))]
    orders: list[list[int]] = [[] for _ in queries]
    plans = []
    for plan_idx, apply_idx in folds:
        plan = planner([queries[i] for i in plan_idx], [scores[i] for i in plan_idx])
        plans.append(plan.as_dict())
        for i in apply_idx:
            ranks = {n: rank(scores[i][n]) for n in scores[i]}
            # No seed in an evaluation set: the fallback keeps the first stage's order (seed index 0 = its top-1).
            orders[i] = plan.order(ranks, 0, len(queries[i].doc_ids), tie_scores=scores[i].get("ql"), k=k)[1]
    return orders, plans


def evaluate_reranker(queries: Sequence[RerankQuery], llm: LLMBackend, prompts: PromptSet, config: MiningConfig, *,
                      batch_size: int = 8, progress: bool = False,
                      ) -> tuple[RerankReport, list[dict[str, list[float]]]]:
    """The Table 6 protocol with the mining stage's scorers and fusion settings.

    Rankings reported: ``first_stage``, each scorer alone, ``rrf`` (the configured ``weights`` and ``rrf_k``) when
    there are two or more scorers, and, with at least 8 queries, ``auto`` (its plan made on qrels) and
    ``auto_seed`` (made on seed agreement, as mining does without labels), each cross-fitted over two halves.
    Returns the report and the raw scores (to recompute other fusions without the LLM).
    """
    scorers = list(config.scorers)
    scores = score_queries(llm, prompts, queries, scorers=scorers, max_passage_words=config.max_passage_words,
                           batch_size=batch_size, progress=progress)
    fusions: dict[str, Callable[[Mapping[str, Sequence[float]]], list[int]]] = {}
    if len(scorers) > 1:
        fusions["rrf"] = lambda s: fuse({n: rank(s[n]) for n in scorers}, k=config.rrf_k, weights=config.weights,
                                        tie_scores=s.get("ql"))[1]
    rep = rerank_report(queries, scores, fusions)
    if len(queries) >= 8:
        for name, planner in (("auto", plan_on_qrels), ("auto_seed", plan_on_seed)):
            orders, plans = _auto_crossfit(queries, scores, config.rrf_k, planner)
            rep.metrics[name] = _order_metrics(queries, orders)
            rep.plans += [{"ranking": name, **p} for p in plans]
    return rep, scores


def labeller_warnings(report: RerankReport, *, configured: str | None = None) -> list[str]:
    """Plain-language warnings for every ranking that is worse than the first stage."""
    base = report.metrics["first_stage"]["ndcg_at_10"]
    out = []
    for name, m in report.metrics.items():
        if name == "first_stage" or m["ndcg_at_10"] >= base:
            continue
        tag = " (the configured fusion)" if name == configured else ""
        out.append(f"{name}{tag}: nDCG@10 {m['ndcg_at_10']:.3f} < first stage {base:.3f} on {report.num_queries} "
                   f"queries: relabelling with it would make positives worse than the retriever's")
    return out


# Below this nDCG@10 margin over the retriever a signal's scoring was measured not to pay: Gemma-3-270M's QL
# (+0.018 on SciFact's top-20, docs/labeller.md) trained a student no better than seed positives on the same
# queries (docs/headline.md). One measured point, so the advice says so rather than deciding.
SMALL_MARGIN = 0.02


def labeller_advice(report: RerankReport) -> str:
    """What to set, from the measured rankings (issue 16; the table behind it is in docs/labeller.md).

    Measured so far: the 135M/270M base models and the 0.5B instruct model (completion prompts) rank with RC
    worse than the retriever, and their QL is within a few hundredths of it; Gecko's RRF gain came from a large
    LLM. So the advice names the signals that beat the first stage on the user's own labelled queries.
    """
    base = report.metrics["first_stage"]["ndcg_at_10"]
    score = {n: report.metrics[n]["ndcg_at_10"] for n in ("ql", "rc", "rrf") if n in report.metrics}
    good = {n: v for n, v in score.items() if v > base}
    n = report.num_queries
    if not good:
        # fusion = "none" keeps the seed positives without scoring a single pair: the LLM's time goes to the
        # queries it writes, where (docs/headline.md) its value is with the small packaged models.
        return (f"no LLM signal beats the retriever ({base:.3f}) on these {n} queries: mine without LLM scoring "
                "(mining.fusion = \"none\": seed positives, retriever negatives) and filter queries by round trip "
                "(mining.round_trip_k = 3), or use a larger or instruction-tuned LLM (with llm.prompt_style = "
                "\"chat\"); docs/labeller.md has the table by model size")
    best = max(good, key=good.get)
    if best == "rrf" or ("ql" in good and "rc" in good):
        return (f"both signals beat the retriever: mining.scorers = [\"ql\", \"rc\"] with fusion = \"rrf\" "
                f"(Gecko's setting) or \"auto\" (weights by skill); best here: {best} {good[best]:.3f} vs {base:.3f}")
    other = "rc" if best == "ql" else "ql"
    advice = (f"only {best.upper()} beats the retriever ({good[best]:.3f} vs {base:.3f}; {other.upper()} "
              f"{score.get(other, float('nan')):.3f}): mining.scorers = [\"{best}\"], fusion = \"{best}\" "
              f"(or \"auto\", which drops {other.upper()} on its own check)")
    if good[best] - base < SMALL_MARGIN:
        advice += (f"; its margin is small (+{good[best] - base:.3f}): Gemma-3-270M's QL beat MiniLM by +0.018 and "
                   "its scoring trained no better a student than mining.fusion = \"none\" on the same queries "
                   "(docs/headline.md), which skips the scoring")
    return advice
