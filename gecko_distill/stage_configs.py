"""Typed configs of the data stages and their shared resources (pydantic, unknown keys rejected).

``[corpus]``, ``[llm]``, ``[embedder]``, ``[generation]``, ``[mining]`` and ``[ray]``. Defaults live here,
once; each field's description doubles as CLI help. A config is resolved (defaults filled in) and written
next to each stage's data, and its hash enters the stage fingerprint. The whole run's config
(:class:`~gecko_distill.config.PipelineConfig`) and the TOML loader are in :mod:`gecko_distill.config`;
this module imports no stage, so every stage can import it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_TASK_TYPES",
    "CorpusConfig",
    "EmbedderConfig",
    "GenerationConfig",
    "LLMConfig",
    "MiningConfig",
    "RayConfig",
    "StrictModel",
]

#: The four most frequent FRet task types (paper §3.2); sampled uniformly (paper Table 4).
DEFAULT_TASK_TYPES = ["question_answering", "search_result", "fact_checking", "sentence_similarity"]


class StrictModel(BaseModel):
    """Base of every config table: unknown keys are rejected, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: Fields added after stages of this config were first written. A stage's fingerprint leaves each one out
    #: while it holds its default, so a stage finished before the field existed still resumes as finished.
    LATER_FIELDS: ClassVar[tuple[str, ...]] = ()

    def fingerprint_dump(self, **dump_kwargs: Any) -> dict[str, Any]:
        """``model_dump(**dump_kwargs)`` for a stage fingerprint: ``LATER_FIELDS`` at their default left out.

        Only the fingerprint uses this; what a stage records (its config file, the model card) is the full
        ``model_dump``, so a default is still written down.
        """
        dump = self.model_dump(**dump_kwargs)
        for name in self.LATER_FIELDS:
            if getattr(self, name) == type(self).model_fields[name].get_default(call_default_factory=True):
                dump.pop(name, None)
        return dump


class CorpusConfig(StrictModel):
    """Where passages come from and how they are cleaned."""

    path: str = Field("demo:gensim-wiki", description="Corpus file/folder, or a packaged demo corpus "
                      "('demo:gensim-wiki', 'demo:gensim-lee').")
    format: Literal["auto", "jsonl", "parquet", "csv", "beir"] = Field(
        "auto", description="Reader; 'auto' picks by extension / folder layout.")
    id_field: str = Field("_id", description="Column with the passage id ('id' is tried too).")
    text_field: str = Field("text", description="Column with the passage text.")
    title_field: str = Field("title", description="Column with the title (optional).")
    min_chars: int = Field(40, ge=0, description="Drop passages shorter than this (after normalisation).")
    max_chars: int = Field(20000, ge=1, description="Drop passages longer than this (likely junk).")
    dedup: bool = Field(True, description="Drop exact duplicates (normalised text).")
    limit: int | None = Field(None, ge=1, description="Read at most this many usable passages.")


class LLMConfig(StrictModel):
    """The LLM used to write (task, query) and to score candidates."""

    backend: Literal["llamacpp", "transformers", "openai", "vllm"] = Field(
        "llamacpp", description="LLM backend.")
    model: str = Field("gemma3-270m", description="'gemma3-270m' / 'smollm2-135m' (packaged GGUF), a local "
                       "path (GGUF file or HF folder), or a hub name.")
    model_file: str | None = Field(None, description="GGUF file name inside a hub repo or folder.")
    prompt_style: Literal["completion", "chat"] = Field(
        "completion", description="'completion' (default): few-shot completion prompts, for base LLMs "
        "(the packaged ones); 'chat': the same instructions and examples as conversation turns in the model's own "
        "chat template (from the GGUF or tokenizer), for instruction-tuned LLMs; relevance is then the "
        "assistant's Yes/No answer, query likelihood still log P(query | passage) (docs/labeller.md).")
    n_ctx: int = Field(2048, ge=128, description="Context window (llamacpp).")
    n_threads: int | None = Field(None, ge=1, description="CPU threads (default: all cores).")
    n_batch: int = Field(512, ge=8, description="Tokens per llama.cpp decode call.")
    device: str = Field("auto", description="transformers device: auto, cpu, cuda.")
    base_url: str | None = Field(None, description="openai backend: server URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai backend: name of the environment "
                             "variable holding the API key (the key itself is never put in a config).")
    max_concurrency: int = Field(4, ge=1, description="openai backend: requests in flight.")
    timeout_s: float = Field(60.0, gt=0, description="openai backend: per-request timeout.")
    max_retries: int = Field(5, ge=0, description="openai backend: retries on 429/5xx/timeouts.")
    trust_remote_code: bool = Field(False, description="Allow model repos to run their own code.")
    seed: int = Field(0, description="Sampling seed.")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                             "not the key itself")
        return v


class EmbedderConfig(StrictModel):
    """The seed embedder that retrieves neighbours (any sentence-transformers model)."""

    model: str = Field("all-MiniLM-L6-v2", description="'all-MiniLM-L6-v2' (packaged), a local path or a "
                       "hub name.")
    batch_size: int = Field(64, ge=1, description="Encoding batch size (texts per batch, at most).")
    batch_tokens: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        "auto", description="Cap each encoding batch at this many padded tokens: long passages go in small "
        "batches, short queries in big ones (faster on a CPU, same embeddings). 'auto' = 2048 on a CPU and "
        "plain batches of batch_size on a GPU; null = always plain batches.")
    max_seq_length: int | None = Field(256, ge=8, description="Truncate inputs to this many tokens.")
    device: str | None = Field(None, description="Device (default: sentence-transformers' choice).")
    trust_remote_code: bool = Field(False, description="Allow model repos to run their own code.")
    input_format: Literal["auto", "unified", "plain", "none"] = Field(
        "auto", description="How the retriever reads queries and passages: 'auto' (default) = the format it "
        "was trained with (raw text for an off-the-shelf model, its recorded format for a gecko-distill "
        "model); 'unified' = Gecko's 'task: … | query: …' / 'title: … | text: …'; 'plain'; 'none' = raw text.")


class GenerationConfig(StrictModel):
    """Step 1: passages → (task, query)."""

    LATER_FIELDS = ("max_passage_overlap",)

    num_passages: int = Field(50, ge=1, description="Seed passages to sample from the corpus.")
    task_types: list[str] = Field(default_factory=lambda: list(DEFAULT_TASK_TYPES),
                                  description="Task types, sampled uniformly.")
    prompts: str | None = Field(None, description="TOML file overriding the prompt templates "
                                "(e.g. for another language).")
    max_new_tokens: int = Field(64, ge=8, description="Token budget for the (task, query) completion.")
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy.")
    max_query_words: int = Field(40, ge=2, description="Reject queries longer than this.")
    max_passage_words: int = Field(160, ge=16, description="Passages are cut to this many words in prompts.")
    batch_size: int = Field(8, ge=1, description="Prompts per backend call (and per resumable shard), rounded "
                            "up to a multiple of queries_per_passage so one passage's prompts share a call.")
    seed: int = Field(0, description="Seed for passage and task sampling.")
    queries_per_passage: int = Field(1, ge=1, description="Queries written per seed passage, each for a "
                                     "different task type (small corpora need several: GPL on SciFact gains "
                                     "from 1 to 50). Above len(task_types) needs temperature > 0.")
    filter_generic: bool = Field(True, description="Reject queries that cannot be understood without their "
                                 "passage ('What is the purpose of the article?', 'this study shows ...') "
                                 "or that are too short to name anything (reject reason 'generic').")
    max_passage_overlap: float | None = Field(
        None, gt=0.0, le=1.0, description="Reject a query when at least this share of its word 4-grams occur "
        "in its passage (reject reason 'near_copy'): a query stitched from the passage's own phrases is found "
        "by word overlap and teaches little (docs/headline.md). None = off; 0.5 drops about 1 in 6 of "
        "Gemma-3-270M's SciFact queries and half of Qwen2.5-Coder-0.5B's.")

    @model_validator(mode="after")
    def _enough_types(self) -> GenerationConfig:
        if self.queries_per_passage > len(self.task_types) and self.temperature == 0:
            raise ValueError(f"queries_per_passage={self.queries_per_passage} > {len(self.task_types)} task types "
                             "with temperature=0 would write the same query twice; set temperature > 0 "
                             "(e.g. 0.7) or lower queries_per_passage")
        return self


class MiningConfig(StrictModel):
    """Steps 2-4: neighbours → LLM scores → RRF → positive + hard negative."""

    num_neighbours: int = Field(20, ge=2, description="Top-N neighbours per query (seed forced in).")
    index: Literal["auto", "exact", "faiss-flat", "faiss-ivf", "faiss-hnsw"] = Field(
        "auto", description="Neighbour search; 'auto' = exact below 100k passages, FAISS IVF above.")
    scorers: list[Literal["ql", "rc"]] = Field(default_factory=lambda: ["ql", "rc"],
                                               description="LLM scorers to run.")
    # Default 'auto', not the paper's plain RRF: with the small LLMs that run on a CPU, RC ranks at chance
    # level on SciFact and RRF(QL, RC) is worse than QL alone (docs/labeller.md); 'auto' measures each signal
    # against the retriever on a sample and keeps both (weighted RRF) when a capable LLM earns it.
    # 'none' is the LLM-free recipe (Promptagator/GPL-style seed positives): with the 270M default LLM the
    # relabelling moved 5% of positives and changed nothing measurable, while it cost 60% of the CPU time that
    # could generate more queries instead (docs/headline.md, "LLM scoring or more queries").
    fusion: Literal["rrf", "ql", "rc", "auto", "none"] = Field(
        "auto", description="How to combine the rankings: RRF of the scorers, one signal alone, 'auto' (default): "
        "check each signal against the retriever on a sample first and drop or down-weight the ones that do "
        "worse (docs/labeller.md), or 'none': no LLM scoring at all (scorers are not run): the seed passage "
        "ranks first (its query was written from it), the rest keep the retriever's order.")
    auto_sample: int = Field(32, ge=4, description="fusion='auto': queries in the check sample (the first mined "
                             "queries, or queries of auto_labelled).")
    auto_labelled: str | None = Field(None, description="fusion='auto': a BEIR folder with qrels to check the "
                                      "signals on (nDCG@10); unset: agreement with the seed passage.")
    rrf_k: float = Field(0.0, ge=0.0, description="RRF constant; the paper uses k=0: 1/r_QL + 1/r_RC.")
    weights: dict[str, float] = Field(default_factory=lambda: {"ql": 1.0, "rc": 1.0},
                                      description="Per-signal RRF weights.")
    positive_policy: Literal["fused", "seed"] = Field("fused", description="'fused' = fused top-1 (paper); "
                                                      "'seed' = the seed passage (ablation).")
    negative_policy: str = Field("last", description="'last' (rank N), 'random', or 'rank:K'.")
    max_passage_words: int = Field(160, ge=16, description="Passages are cut to this many words for scoring.")
    max_queries: int | None = Field(None, ge=1, description="LLM-score at most this many queries (the first ones kept by the round-trip filter).")
    # Default 3: the one lever with a significant gain in the ablation (docs/headline.md: SciFact +0.92
    # [+0.36, +1.51] nDCG@10 over the base, vs +0.33 without; NFCorpus +0.26 at 384 dims, +0.55..+0.88 at
    # 256-64, vs -0.10 without). It also saves the LLM calls of the ~40% of queries it drops.
    round_trip_k: int | None = Field(3, ge=1, description="Round-trip filter (Promptagator): keep a query "
                                     "only if the retriever ranks its seed passage in its top-k, before any "
                                     "LLM scoring (dropped queries cost no LLM call). None = keep all.")
    schedule: Literal["passage", "query"] = Field(
        "passage", description="How the LLM scoring is scheduled: 'passage' (default) groups the pairs by "
        "candidate passage, decodes each passage once and scores every query that retrieved it as a "
        "continuation (about 3x the FRet rows per CPU hour at top-20, docs/performance.md); 'query' scores "
        "each query's candidates together (a passage is decoded again for every query that retrieved it).")
    passages_per_shard: int = Field(32, ge=1, description="schedule='passage': candidate passages per scoring "
                                    "call (and per resumable shard of the scores table).")
    batch_size: int = Field(4, ge=1, description="schedule='query': queries per scoring call (and per "
                            "resumable shard of the scores table).")
    seed: int = Field(0, description="Seed for the 'random' negative policy.")

    @field_validator("negative_policy")
    @classmethod
    def _neg_policy(cls, v: str) -> str:
        if v in ("last", "random") or re.fullmatch(r"rank:[1-9][0-9]*", v):
            return v
        raise ValueError(f"negative_policy={v!r} is not one of 'last', 'random', 'rank:K' (K >= 1)")

    @model_validator(mode="after")
    def _fusion_needs_its_scorers(self) -> MiningConfig:
        # Checked here, not when the fused ranking is first built (after the corpus is encoded).
        if not self.scorers and self.fusion != "none":
            raise ValueError("scorers is empty: list at least one of 'ql', 'rc', or set fusion = 'none' to mine "
                             "without LLM scoring")
        if len(set(self.scorers)) != len(self.scorers):
            raise ValueError(f"scorers has duplicates: {self.scorers}")
        if self.fusion in ("ql", "rc") and self.fusion not in self.scorers:
            raise ValueError(f"fusion={self.fusion!r} ranks by the {self.fusion!r} scorer, which scorers="
                             f"{self.scorers} does not run: add it to scorers or set fusion to one of "
                             f"{self.scorers}")
        unknown = sorted(set(self.weights) - {"ql", "rc"})
        if unknown:
            raise ValueError(f"weights has keys {unknown} that name no scorer; valid: 'ql', 'rc'")
        return self


class RayConfig(StrictModel):
    """The Ray executor (``executor = "ray"``): an actor pool, one LLM backend per actor."""

    address: str | None = Field(None, description="Ray cluster to join ('auto', 'ray://HOST:10001'); unset: "
                                "the RAY_ADDRESS variable, else a new local Ray instance.")
    num_workers: int = Field(2, ge=1, description="LLM actors; each loads its own backend.")
    num_cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per actor (llama.cpp also uses "
                                       "this many threads unless llm.n_threads is set).")
    num_gpus_per_worker: float = Field(0.0, ge=0, description="GPUs reserved per actor (1 for a vLLM or "
                                       "GPU llama.cpp backend).")
    window_shards: int = Field(4096, ge=1, description="Shards sent per Ray Data run; bounds the driver's "
                               "memory for prompts (each window starts the actor pool afresh).")
