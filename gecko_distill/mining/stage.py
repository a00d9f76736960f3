"""Stage 2 (Gecko §3.2, steps 2-4): neighbours → LLM relabelling → FRet rows.

For each (task, query): embed the query with the seed embedder (in the format it was trained with), fetch the
top-N passages with the seed forced in, score every candidate with query likelihood and relevance
classification into the scores table (:mod:`.scores`, passage-major by default), fuse the rankings and
select a positive and a hard negative. Every row keeps its audit trail: the seed, both ranks and scores,
whether the positive moved, and every candidate's scores.

``fusion = "auto"`` checks the signals on a sample first and scores the rest with the kept ones only;
``fusion = "none"`` (and auto's fallback) asks the LLM nothing: the seed is the positive, the retriever orders
the rest.
"""

from __future__ import annotations

import json
import logging
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gecko_distill._stage import ShardRunner
from gecko_distill.artifacts import StageDir, atomic_write_text, fingerprint
from gecko_distill.corpus.eval_sets import RetrievalSet, load_eval_set
from gecko_distill.corpus.normalize import truncate_words
from gecko_distill.embedding.batching import BatchTokens
from gecko_distill.embedding.formats import SYMMETRIC_TASK_TYPES, InputMode, format_document, format_query
from gecko_distill.embedding.loader import embedder_format, embedder_id
from gecko_distill.embedding.task_strings import task_string_for
from gecko_distill.errors import InputError
from gecko_distill.labelling.auto_fusion import FusionPlan, plan_from_seed
from gecko_distill.labelling.fusion import fuse, rank
from gecko_distill.labelling.rerank_check import first_stage, plan_on_qrels, score_queries
from gecko_distill.llm.base import LLMBackend
from gecko_distill.mining.scores import ScoreTable, score_table
from gecko_distill.mining.selection import select
from gecko_distill.prompts import PromptSet, prompts_for
from gecko_distill.records import Passage, TaskQuery
from gecko_distill.retrieval.corpus_embeddings import encode_corpus_streaming
from gecko_distill.retrieval.neighbours import encode_texts, force_seed
from gecko_distill.stage_configs import MiningConfig

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["MiningResult", "fret_row", "load_fret", "mine"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiningResult:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    path: Path


def fret_row(tq: TaskQuery, pos: Passage, neg: Passage, **audit: Any) -> dict[str, Any]:
    """One FRet row: trainer-ready formatted ``anchor/positive/negative`` plus raw fields and the audit."""
    sym = tq.task_type in SYMMETRIC_TASK_TYPES

    def doc(p: Passage) -> str:
        return format_document(p.text, p.title, task=tq.task, symmetric=sym)

    return {
        "anchor": format_query(tq.task, tq.query), "positive": doc(pos), "negative": doc(neg),
        "task_type": tq.task_type, "task": tq.task, "query": tq.query,
        "positive_id": pos.id, "positive_title": pos.title, "positive_text": pos.text,
        "negative_id": neg.id, "negative_title": neg.title, "negative_text": neg.text,
        **audit,
    }


def mine(
    queries: Sequence[TaskQuery],
    passages: Sequence[Passage],
    *,
    embedder: SentenceTransformer,
    llm: LLMBackend,
    config: MiningConfig,
    out_dir: str | Path,
    prompts: PromptSet | None = None,
    embed_batch_size: int = 64,
    embed_batch_tokens: BatchTokens = "auto",
    embed_format: str = "auto",
    progress: bool = True,
    shard_runner: ShardRunner | None = None,
) -> MiningResult:
    """Write ``out_dir/fret.jsonl`` + ``fret.parquet`` + ``manifest.json`` and return the rows.

    ``embed_format`` is how the retriever reads queries and passages ('auto': the format it was trained with,
    raw text for an off-the-shelf model). ``shard_runner`` runs the LLM scoring elsewhere (e.g. a Ray actor
    pool, see ``gecko_distill.executors``); neighbour search and selection stay here, so the rows are the same
    either way.
    """
    prompts = prompts or prompts_for(llm)
    fmt: InputMode = embedder_format(embedder) if embed_format == "auto" else embed_format  # type: ignore[assignment]
    if not queries:
        raise InputError("mining got no queries: the generation stage produced none")
    stage = StageDir(Path(out_dir), "fret")
    by_id = {p.id: i for i, p in enumerate(passages)}
    missing = [q.passage_id for q in queries if q.passage_id not in by_id]
    if missing:
        raise InputError(f"{len(missing)} queries point at passages not in the corpus (e.g. {missing[0]!r}); "
                         "mine with the same corpus the generation stage used")
    # Two fingerprints: the scores table depends on what the LLM reads; the FRet rows also on how they are
    # selected from it. Changing fusion / weights / policies re-selects from the saved table, no LLM call.
    select_keys = {"fusion", "auto_sample", "auto_labelled", "rrf_k", "weights", "positive_policy",
                   "negative_policy", "seed"}
    score_fp = fingerprint({
        "stage": "scores", "config": config.model_dump(exclude=select_keys),
        "llm": None if config.fusion == "none" else llm.fingerprint,  # 'none' never calls the LLM
        "embedder": embedder_id(embedder), "embed_format": fmt,
        "queries": fingerprint([(q.passage_id, q.task_type, q.task, q.query) for q in queries]),
        "corpus": fingerprint([(p.id, p.title, p.text) for p in passages]),
        "prompts": [prompts.version, prompts.ql_prefix, prompts.ql_item, prompts.rc_prefix, prompts.rc_item],
    })
    fp = fingerprint({"stage": "fret", "scores": score_fp, "select": config.model_dump(include=select_keys)})
    if stage.is_complete(fp):
        logger.info("mining: %s is complete, skipping", stage.path)
        return load_fret(stage.path)
    started = time.time()
    stage.prepare(fp)
    if len(passages) < 2:
        raise InputError("mining needs at least two passages in the corpus")

    # Step 2: neighbours. Cheap relative to LLM scoring, so recomputed on resume (deterministic).
    # Streamed in shards (cached under the stage dir, resumable) into an index chosen by corpus size:
    # memory stays flat as the corpus grows (bench/scale.py).
    corpus = encode_corpus_streaming(
        embedder, (format_document(p.text, p.title, mode=fmt) for p in passages), out_dir=stage.path / "embeddings",
        index=config.index, k=config.num_neighbours, batch_size=embed_batch_size, batch_tokens=embed_batch_tokens,
        show_progress=progress)
    q_emb = encode_texts(embedder, [format_query(q.task, q.query, mode=fmt) for q in queries],
                         batch_size=embed_batch_size, batch_tokens=embed_batch_tokens)
    nb = corpus.search(q_emb, k=config.num_neighbours)
    n_generated = len(queries)
    keep = list(range(n_generated))  # the queries that go on to LLM scoring, selected once below
    if config.round_trip_k is not None:
        # Round-trip consistency (Promptagator): a query whose own passage the retriever does not put in its
        # top-k is often unanswerable or generic. Decided before any LLM call, so dropping costs nothing.
        keep = [qi for qi in keep if by_id[queries[qi].passage_id] in nb.indices[qi][: config.round_trip_k]]
        if not keep:
            raise InputError(f"the round-trip filter (round_trip_k={config.round_trip_k}) dropped all "
                             f"{n_generated} queries: the retriever never ranks a query's own passage in its top "
                             f"{config.round_trip_k} (a retriever that does not read this corpus's language or "
                             "domain?): set mining.round_trip_k higher, or to none to keep every query; the "
                             "generated queries are kept")
    round_trip_dropped = n_generated - len(keep)
    if config.max_queries is not None:
        # After the filter, so that max_queries caps the LLM work (the costly part) and a filtered run still
        # mines up to max_queries rows.
        keep = keep[: config.max_queries]
    if len(keep) < n_generated:
        queries = [queries[qi] for qi in keep]
        q_emb, nb = q_emb[keep], type(nb)(nb.indices[keep], nb.scores[keep])
    seed_vecs = corpus.vectors([by_id[q.passage_id] for q in queries])
    cand_lists: list[tuple[list[int], list[float]]] = []
    for qi, q in enumerate(queries):
        seed = by_id[q.passage_id]
        seed_score = float(q_emb[qi] @ seed_vecs[qi])
        cand_lists.append(force_seed(nb.indices[qi].tolist(), nb.scores[qi].tolist(), seed, seed_score))

    # Step 3: the LLM scores every (query, candidate) pair once with each signal that fusion uses, into the
    # scores table (mining/scores.py).
    cut: dict[int, str] = {}

    def passage_text(c: int) -> str:
        if c not in cut:
            cut[c] = truncate_words(passages[c].text, config.max_passage_words)
        return cut[c]

    def table_of(name: str, qidx: Sequence[int], signals: tuple[str, ...], fp: str) -> ScoreTable:
        return score_table(
            StageDir(stage.path / name, "scores"), llm=llm, prompts=prompts,
            queries=[queries[qi].query for qi in qidx], candidates=[cand_lists[qi] for qi in qidx],
            passage_ids=[p.id for p in passages], passage_text=passage_text, scorers=signals,
            schedule=config.schedule,
            shard_size=config.passages_per_shard if config.schedule == "passage" else config.batch_size,
            fingerprint=fp, progress=progress, runner=shard_runner)

    # fusion = "auto" decides before the main pass which signals earn their place, so that a signal it drops
    # (RC with the packaged LLMs) is never computed for the other queries and a fallback asks the LLM nothing
    # more: the check scores only its sample (``scores-sample/``, or the labelled set with auto_labelled).
    plan = None
    signals = () if config.fusion == "none" else tuple(config.scorers)
    sample_pairs = 0
    if config.fusion == "auto":
        sample = list(range(min(config.auto_sample, len(queries))))

        def seed_sample() -> tuple[list[dict[str, list[float]]], list[int]]:
            nonlocal sample_pairs
            tab = table_of("scores-sample", sample, signals, fingerprint([score_fp, "sample", len(sample)]))
            sample_pairs = len(tab.rows)
            return tab.per_query(), [cand_lists[qi][0].index(by_id[queries[qi].passage_id]) for qi in sample]

        plan = _fusion_plan(stage.path, score_fp, config, llm=llm, prompts=prompts, embedder=embedder,
                            sample=seed_sample)
        signals = tuple(n for n in config.scorers if n in plan.weights)
    if not signals:  # fusion = "none", or auto's fallback: no LLM call for the rows
        scored: list[dict[str, list[float]]] = [{} for _ in queries]
        n_pairs = 0
    else:
        # Scores of the same signals keep the fingerprint they had before auto could drop one.
        table = table_of("scores", range(len(queries)), signals,
                         score_fp if signals == tuple(config.scorers) else fingerprint([score_fp, signals]))
        scored = table.per_query()
        n_pairs = len(table.rows)

    def _select_row(qi: int, tq: TaskQuery, cands: tuple[list[int], list[float]],
                    s: dict[str, list[float]]) -> dict[str, Any]:
        idx, retr = cands
        seed_pos = idx.index(by_id[tq.passage_id])
        ranks = {name: rank(s[name]) for name in scorers}
        if plan is not None:
            fused, order = plan.order(ranks, seed_pos, len(idx), tie_scores=s.get("ql"), k=config.rrf_k)
        elif config.fusion == "none":  # the seed first, then the retriever's order (= auto's fallback)
            order = [seed_pos] + [i for i in range(len(idx)) if i != seed_pos]
            fused = [0.0] * len(idx)
            for r, i in enumerate(order, 1):
                fused[i] = 1.0 / r
        elif config.fusion == "rrf":
            fused, order = fuse(ranks, k=config.rrf_k, weights=config.weights, tie_scores=s.get("ql"))
        else:  # a single signal: its ranking is the fused ranking
            fused = [1.0 / r for r in ranks[config.fusion]]
            order = sorted(range(len(idx)), key=lambda i: ranks[config.fusion][i])
        fused_rank = [0] * len(idx)
        for r, i in enumerate(order, 1):
            fused_rank[i] = r
        # Seeded per query (not per shard) so 'random' is the same however the work is sharded.
        rng = random.Random(f"{config.seed}:{qi}")
        sel = select(order, seed_pos, positive_policy=config.positive_policy,
                     negative_policy=config.negative_policy, rng=rng)
        # Candidate texts travel with the row so that training can distil the LLM's ranking of all of them.
        candidates = [{"id": passages[c].id, "title": passages[c].title, "text": passages[c].text,
                       "retriever": round(retr[j], 6), "rank_retriever": j + 1,
                       **{n: round(s[n][j], 6) for n in s}, **{f"rank_{n}": ranks[n][j] for n in ranks},
                       "fused": round(fused[j], 6), "rank_fused": fused_rank[j]} for j, c in enumerate(idx)]

        def audit(j: int) -> dict[str, Any]:
            return {"retriever": round(retr[j], 6), "fused": round(fused[j], 6), **{n: round(s[n][j], 6) for n in s}}

        return fret_row(
            tq, passages[idx[sel.positive]], passages[idx[sel.negative]],
            seed_id=tq.passage_id, positive_moved=sel.positive != seed_pos,
            ranks={"retriever": sel.positive + 1, "fused": fused_rank[sel.positive],
                   **{n: ranks[n][sel.positive] for n in ranks},
                   "seed_fused": fused_rank[seed_pos], "negative_fused": fused_rank[sel.negative]},
            scores=audit(sel.positive), negative_scores=audit(sel.negative), seed_scores=audit(seed_pos),
            candidates=candidates)

    # Step 4: fusion and selection (cheap, recomputed whenever the selection settings change).
    scorers = signals
    rows = [_select_row(qi, q, cand_lists[qi], scored[qi]) for qi, q in enumerate(queries)]
    summary = _summary(rows, len(queries), config)
    summary["embed_format"] = fmt
    summary["scores"] = {"schedule": config.schedule, "pairs": n_pairs, "signals": list(signals),
                         "path": "scores/scores.parquet" if signals else None}
    if sample_pairs:
        summary["scores"]["sample_pairs"] = sample_pairs
    if config.round_trip_k is not None:
        summary["round_trip"] = {"k": config.round_trip_k, "generated": n_generated, "dropped": round_trip_dropped}
    if plan is not None:
        summary["auto_fusion"] = plan.as_dict()
    stage.finalize(rows, fp=fp, config=config.model_dump(), summary=summary, started_at=started,
                   inputs={"prompts_version": prompts.version, "llm": llm.fingerprint, "embedder": embedder_id(embedder)})
    return MiningResult(rows=rows, summary=summary, path=stage.path)


def _stats(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return {"mean": round(statistics.fmean(xs), 4), "p25": round(q[0], 4), "median": round(q[1], 4),
            "p75": round(q[2], 4), "min": round(min(xs), 4), "max": round(max(xs), 4)}


def _summary(rows: list[dict[str, Any]], n_queries: int, config: MiningConfig) -> dict[str, Any]:
    moved = sum(r["positive_moved"] for r in rows)
    out: dict[str, Any] = {
        "rows_in": n_queries, "rows_out": len(rows),
        "positive_moved": moved, "positive_moved_rate": round(moved / max(len(rows), 1), 4),
        "seed_fused_rank": _stats([float(r["ranks"]["seed_fused"]) for r in rows]),
        "positive_policy": config.positive_policy, "negative_policy": config.negative_policy,
        "fusion": config.fusion, "num_neighbours": config.num_neighbours,
    }
    for name in (n for n in config.scorers if rows and n in rows[0]["scores"]):  # auto may skip a signal
        out[f"{name}_positive"] = _stats([r["scores"][name] for r in rows])
        out[f"{name}_negative"] = _stats([r["negative_scores"][name] for r in rows])
    return out


def load_fret(path: str | Path) -> MiningResult:
    stage = StageDir(Path(path), "fret")
    manifest = stage.require_complete()
    return MiningResult(rows=stage.rows(), summary=manifest["summary"], path=stage.path)


def _fusion_plan(stage_path: Path, score_fp: str, config: MiningConfig, *, llm: LLMBackend, prompts: PromptSet,
                 sample: Callable[[], tuple[list[dict[str, list[float]]], list[int]]],
                 embedder: SentenceTransformer) -> FusionPlan:
    """``fusion = "auto"``: the stage's plan, kept in ``auto-fusion.json`` for the scores it was made from.

    Args:
        stage_path: The FRet stage directory.
        score_fp: The scores table's fingerprint (a plan made for other scores is not reused).
        sample: Without ``auto_labelled``, makes the seed-agreement sample (called only when no saved plan
            applies): every signal's scores of the first ``config.auto_sample`` queries and the seed's index
            in each.
        embedder: The first-stage embedder (used on the labelled set).
    """
    key = fingerprint([score_fp, config.auto_sample, config.auto_labelled, config.seed])
    path = Path(stage_path) / "auto-fusion.json"
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("fingerprint") == key:
            plan = FusionPlan.from_dict(saved["plan"])
            logger.info("fusion=auto: reusing the plan in %s (mode %s)", path, plan.mode)
            return plan
    if config.auto_labelled:
        ds = load_eval_set(config.auto_labelled, kind="retrieval", limit=config.auto_sample, seed=config.seed)
        assert isinstance(ds, RetrievalSet)
        cands = first_stage(ds, embedder, task=task_string_for(ds.name, "retrieval"), top_k=config.num_neighbours)
        scores = score_queries(llm, prompts, cands, scorers=config.scorers, max_passage_words=config.max_passage_words)
        plan = plan_on_qrels(cands, scores)
    else:
        plan = plan_from_seed(*sample())
    atomic_write_text(path, json.dumps({"fingerprint": key, "plan": plan.as_dict()}, indent=1))
    return plan
