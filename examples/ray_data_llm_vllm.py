"""Gecko's two LLM steps as ``ray.data.llm`` vLLM processors, for a GPU cluster (issue 6; docs/scaling.md).

NOT RUN IN CI: it needs GPUs and ``pip install "ray[data,llm]==2.60.0" "vllm==0.33.0"``. It was checked
against Ray 2.60's API (``vLLMEngineProcessorConfig`` + ``build_processor``; Ray 2.60 no longer exports
the old ``build_llm_processor``) but has not been run on a GPU by the project. The pipeline's own route to a GPU
cluster is ``executor = "ray"`` with ``llm.backend = "vllm"`` (examples/ray_vllm_cluster.toml); this
script is the alternative when you want Ray Data's vLLM stages (continuous batching, autoscaling pools)
and are willing to glue the stages yourself. It reuses gecko-distill's prompts and parser, so the text
the LLM sees is the same as in the pipeline.

    # 1) (task, query) generation: passages JSONL {"_id", "title", "text"} -> generated.jsonl
    python examples/ray_data_llm_vllm.py generate --model google/gemma-3-4b-pt \\
        --passages corpus.jsonl --out generated --replicas 4
    # 2) loglik scoring: pairs JSONL {"qid", "query", "pid", "passage"} -> scored/ (Parquet, ql + rc)
    python examples/ray_data_llm_vllm.py score --model google/gemma-3-4b-pt \\
        --pairs pairs.jsonl --out scored --replicas 4

Scores are log-probabilities of a continuation given ``prefix + context`` from vLLM's
``prompt_logprobs`` (``SamplingParams(max_tokens=1, prompt_logprobs=0)``: entry i holds the actual token's
log-prob whatever k is). The prompt is passed as token ids (``tokenized_prompt``) built from separately
tokenized parts, so the continuation's span is exact, as in gecko-distill's ``vllm`` and llama.cpp backends.
vLLM does NOT use its prefix cache for requests that ask for prompt logprobs, so the shared few-shot prefix is
recomputed for every pair: keep scoring prefixes short, and budget one full prefill per (query, passage, label).
"""

from __future__ import annotations

import argparse
from typing import Any


def _engine(args: argparse.Namespace, **overrides: Any) -> Any:
    from ray.data.llm import vLLMEngineProcessorConfig

    return vLLMEngineProcessorConfig(
        model_source=args.model,
        engine_kwargs={"tensor_parallel_size": args.tp, "max_model_len": args.max_model_len,
                       "enable_prefix_caching": True, "max_logprobs": 20},
        concurrency=args.replicas,  # vLLM engine replicas (data parallel), tp GPUs each
        batch_size=args.batch_size,
        chat_template_stage=False,  # base-model few-shot prompts, no chat template
        **overrides,
    )


def generate(args: argparse.Namespace) -> None:
    import ray
    from ray.data.llm import build_processor

    from gecko_distill.config import DEFAULT_TASK_TYPES
    from gecko_distill.corpus.normalize import truncate_words
    from gecko_distill.errors import ParseError
    from gecko_distill.generation.parsing import parse_task_query
    from gecko_distill.prompts import load_prompts

    prompts = load_prompts(args.prompts)
    types = args.task_types.split(",") if args.task_types else DEFAULT_TASK_TYPES

    def pre(row: dict[str, Any]) -> dict[str, Any]:
        # Task type drawn uniformly, from a hash of the id, so reruns give every passage the same type.
        import zlib

        tt = types[zlib.crc32(str(row["_id"]).encode()) % len(types)]
        text = truncate_words(row["text"], args.max_passage_words)
        return {"_id": row["_id"], "task_type": tt, "passage": text,
                "prompt": prompts.generation_prefix + prompts.generation_prompt(text, tt),
                "sampling_params": {"temperature": 0.0, "max_tokens": 64,
                                    "stop": ["\n\n", "\nPassage:", "\nTask type:"]}}

    def post(row: dict[str, Any]) -> dict[str, Any]:
        out = {"passage_id": row["_id"], "task_type": row["task_type"], "raw": row["generated_text"]}
        try:
            out["task"], out["query"] = parse_task_query(row["generated_text"], row["passage"])
            out["reject"] = None
        except ParseError as e:
            out["task"], out["query"], out["reject"] = None, None, e.reason
        return out

    processor = build_processor(_engine(args), preprocess=pre, postprocess=post)
    processor(ray.data.read_json(args.passages)).write_json(args.out)


def _token_logprob(entry: Any, token: int) -> float:
    """The actual token's log-prob from one ``prompt_logprobs`` entry ({token_id: {"logprob": ...}}).

    Rows pass through Arrow between stages, so keys may come back as strings and absent keys as None."""
    for k, v in (entry or {}).items():
        if v is not None and int(k) == int(token):
            return float(v["logprob"] if isinstance(v, dict) else v)
    raise KeyError(f"token {token} missing from a prompt_logprobs entry")


def score(args: argparse.Namespace) -> None:
    import ray
    from ray.data.llm import build_processor
    from transformers import AutoTokenizer

    from gecko_distill.corpus.normalize import truncate_words
    from gecko_distill.prompts import load_prompts

    prompts = load_prompts(args.prompts)
    tok = AutoTokenizer.from_pretrained(args.model)

    def requests(row: dict[str, Any]) -> list[dict[str, Any]]:
        # One (query, passage) pair -> three loglik rows: QL, RC " Yes", RC " No" (same as score_candidates).
        p = truncate_words(row["passage"], args.max_passage_words)
        ql = prompts.ql_request(row["query"], p)
        yes, no = prompts.rc_requests(row["query"], p)
        base = {"qid": row["qid"], "pid": row["pid"]}
        return [{**base, "kind": kind, "prefix": prefix, "context": r.context, "cont": r.continuation}
                for kind, prefix, r in (("ql", prompts.ql_prefix, ql), ("rc_yes", prompts.rc_prefix, yes),
                                        ("rc_no", prompts.rc_prefix, no))]

    def pre(row: dict[str, Any]) -> dict[str, Any]:
        # prefix, context and continuation tokenized separately, as gecko-distill's backends do
        head = (tok(row["prefix"], add_special_tokens=True)["input_ids"]
                + tok(row["context"], add_special_tokens=False)["input_ids"])
        cont = tok(row["cont"], add_special_tokens=False)["input_ids"]
        return {**{k: row[k] for k in ("qid", "pid", "kind")}, "n_cont": len(cont),
                "tokenized_prompt": head + cont,
                "sampling_params": {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}}

    def post(row: dict[str, Any]) -> dict[str, Any]:
        ids, lps, n = row["prompt_token_ids"], row["prompt_logprobs"], int(row["n_cont"])
        lp = sum(_token_logprob(lps[i], ids[i]) for i in range(len(ids) - n, len(ids)))
        return {"qid": row["qid"], "pid": row["pid"], "kind": row["kind"], "logprob": lp, "num_tokens": n}

    processor = build_processor(_engine(args, tokenize_stage=False, detokenize_stage=False),
                                preprocess=pre, postprocess=post)
    scored = processor(ray.data.read_json(args.pairs).flat_map(requests))
    # QL = mean log-prob of the query tokens; RC = log P(" Yes") - log P(" No"), as in labelling/scoring.py.
    scored.groupby(["qid", "pid"]).map_groups(_combine, batch_format="pandas").write_parquet(args.out)


def _combine(g: Any) -> Any:
    import pandas as pd

    by = {k: r for k, r in zip(g["kind"], g.itertuples(index=False), strict=True)}
    return pd.DataFrame([{"qid": g["qid"].iloc[0], "pid": g["pid"].iloc[0],
                          "ql": by["ql"].logprob / max(by["ql"].num_tokens, 1),
                          "rc": by["rc_yes"].logprob - by["rc_no"].logprob}])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["generate", "score"])
    ap.add_argument("--model", required=True, help="HF model name or local folder (vLLM loads it).")
    ap.add_argument("--passages", help="generate: JSONL with _id, title, text.")
    ap.add_argument("--pairs", help="score: JSONL with qid, query, pid, passage.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", help="Prompt TOML override (default: the packaged prompts).")
    ap.add_argument("--task-types", help="Comma-separated task types (default: the four of the paper).")
    ap.add_argument("--max-passage-words", type=int, default=160)
    ap.add_argument("--replicas", type=int, default=1, help="vLLM engine replicas.")
    ap.add_argument("--tp", type=int, default=1, help="tensor_parallel_size per replica.")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-model-len", type=int, default=4096)
    args = ap.parse_args()
    {"generate": generate, "score": score}[args.step](args)


if __name__ == "__main__":
    main()
