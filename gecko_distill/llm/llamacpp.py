"""The default local backend: llama.cpp on CPU (or GPU builds), at the hardware limit for scoring.

How ``loglik`` avoids wasted work (issue 5; measured numbers in docs/performance.md):

1. **Prefix once.** The shared prefix (instructions + few-shot examples) is decoded once per process into
   sequence 0 at KV cell 0 and stays resident; every item sequence shares its cells (``seq_cp``) and only
   the item's cells are removed afterwards. Up to ``max_prefixes`` prefixes are kept as KV snapshots, so
   alternating query-likelihood / relevance / generation prompts restore theirs (a memcpy) instead of
   decoding it again.
2. **Shared contexts.** Requests with the same context decode the context once and walk the token trie
   of their continuations: common tokens are decoded once, only the differing tails branch off, and
   one-token tails (the labels) cost no extra pass. A query's scorer requests (" query", " query Relevant:
   Yes", " query Relevant: No") are one pass; a passage with every query that retrieved it (passage-major
   mining, issue 13) is decoded once and each query branches off it, in a call of its own padded to 8 rows
   only (flash attention off: see :mod:`gecko_distill.llm.llamacpp_engine`).
3. **Only needed logits.** Only positions that predict a continuation token produce logits; only the target
   ids are read, with a float32 log-sum-exp over the vocabulary row (Gemma: 262k entries).

**Exactly the same scores as without reuse.** ``reuse_prefix=False`` scores every request from an empty
cache (prefix + context + continuation in one sequence). Both paths give bit-identical log-probs because
(a) every decode call is padded so that each row takes the same ggml kernel path (see
:mod:`gecko_distill.llm.llamacpp_engine`), and (b) an item's KV cells sit right after its prefix at cell 0,
as in the plain path: attention sums over the cells in kernel-chosen blocks, and with this model a different
cell layout moves a log-prob by ~0.01-0.1 nats (measured with continuations packed side by side into one
call: all but the first differed at that level, so they are not packed). Every branch therefore sits right
after its parent's cells, as in the plain path: a score is bit-identical whether its passage was decoded
for one query or shared by twenty (query-major and passage-major mining agree exactly).

``generate`` decodes each prompt on top of the cached prefix (greedy, or seeded temperature / top-p), one
prompt at a time for the same reason: a prompt's output never depends on which prompts shared its batch,
so re-runs, resumed runs and distributed runs write the same text. Consecutive prompts that start with
the same tokens (the ``queries_per_passage`` prompts of one passage) decode that run once, into the KV
cells right after the prefix where one-at-a-time decoding puts it, and branch from it (``seq_cp``): each
prompt decodes only its own tail, then samples. Same cells, every call padded as above: outputs are bit-identical
to ``generate([prompt])`` (tests/integration/test_llamacpp.py). Sampling several prompts' next tokens in
one decode call is not done: it would move cells and change kernel paths (docs/performance.md).
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gecko_distill.errors import BackendError, BackendUnavailable
from gecko_distill.llm.base import ChatTemplate, GenerationParams, LoglikRequest, LoglikResult
from gecko_distill.llm.llamacpp_engine import PAD, TILE_ROWS, LlamaEngine, log_softmax_at
from gecko_distill.llm.model_files import download_gguf, file_identity, resolve_model_source

if TYPE_CHECKING:
    from gecko_distill.stage_configs import LLMConfig

__all__ = ["LlamaCppBackend"]

logger = logging.getLogger(__name__)

_PREFIX, _ITEM = 0, 1  # sequence ids: the prefix, then one per depth of the continuation trie
_MAX_DEPTH = 12  # deeper tries are scored one continuation per branch


@dataclass
class _Prefix:
    n_tokens: int
    last_row: np.ndarray  # logits after the prefix's last token (predicts an item's first token)
    state: bytes  # KV snapshot of sequence 0, restored when this prefix comes back


class LlamaCppBackend:
    """LLM backend on a GGUF file through llama-cpp-python (see the module docstring)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 2048,
        n_batch: int = 512,
        n_threads: int | None = None,
        max_prefixes: int = 4,
        reuse_prefix: bool = True,
        flash_attn: bool = False,
        share_prompt_prefix: bool = True,
        n_gpu_layers: int = 0,
        prompt_style: str = "completion",
    ) -> None:
        self.path = Path(model_path)
        # chat prompts write the template's control tokens as text ("<|im_end|>"): parse them in every part
        self.prompt_style = prompt_style
        self._special = prompt_style == "chat"
        if not self.path.is_file():
            raise BackendUnavailable(f"GGUF file not found: {self.path}")
        self.n_ctx = n_ctx
        self.reuse_prefix = reuse_prefix
        self.share_prompt_prefix = share_prompt_prefix
        self.max_prefixes = max(1, max_prefixes)
        kv_size = -(-(n_ctx + 2 * TILE_ROWS) // 256) * 256  # one window + the padding rows
        self._engine = LlamaEngine(self.path, kv_size=kv_size, n_batch=n_batch, n_seq=_ITEM + _MAX_DEPTH + 2,
                                   n_threads=n_threads, n_gpu_layers=n_gpu_layers, flash_attn=flash_attn)
        self._prefixes: OrderedDict[tuple[int, ...], _Prefix] = OrderedDict()  # LRU of snapshots
        self._active: tuple[int, ...] | None = None  # the prefix now in sequence 0
        self._lock = threading.Lock()
        # llama.cpp's kernels (and so the last digits of a score) change between releases: part of the identity
        self._fingerprint = f"llamacpp:{file_identity(self.path)}:{self._engine.version}:{self._engine.numerics}" + (
            ":chat" if self._special else "")
        logger.info("llama.cpp backend: %s (kv=%d cells, %d threads)", self.path.name,
                    self._engine.kv_size, self._engine.n_threads)

    @classmethod
    def from_config(cls, cfg: LLMConfig) -> LlamaCppBackend:
        src = resolve_model_source(cfg.model, cfg.model_file)
        if src.kind == "folder":
            ggufs = sorted(p.name for p in src.path.glob("*.gguf"))
            found = f" (found: {', '.join(ggufs[:5])})" if ggufs else " (no .gguf files there)"
            raise BackendUnavailable(f"{src.path} is a folder: set llm.model_file to the GGUF inside it{found}")
        path = src.path
        if src.kind == "hub":
            if not src.filename:
                raise BackendUnavailable(f"llm.model {cfg.model!r} is a hub repo: set llm.model_file to the "
                                         "GGUF file name in it (e.g. 'gemma-3-270m-Q4_K_M.gguf')")
            path = download_gguf(src.repo, src.filename)
        return cls(path, n_ctx=cfg.n_ctx, n_batch=cfg.n_batch, n_threads=cfg.n_threads,
                   prompt_style=cfg.prompt_style)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def chat_template(self) -> ChatTemplate | None:
        """The GGUF's chat template (for ``llm.prompt_style = "chat"``), or None."""
        src = self._engine.chat_template()
        eng = self._engine
        return ChatTemplate(src, eng.special_text(eng.bos), eng.special_text(eng.eos)) if src else None

    def close(self) -> None:
        """Free the model and its context now."""
        self._engine.close()

    # --- prefix -------------------------------------------------------------------------------
    def _prefix_tokens(self, prefix: str) -> list[int]:
        eng = self._engine
        toks = eng.tokenize(prefix, add_bos=eng.add_bos, special=True) if prefix else (
            [eng.bos] if eng.add_bos else [])
        if not toks:  # something must condition the first scored token
            toks = [eng.bos if eng.bos >= 0 else eng.eos]
        if len(toks) >= self.n_ctx:
            raise BackendError(f"the prefix has {len(toks)} tokens, llm.n_ctx is {self.n_ctx}; "
                               "shorten the few-shot examples or raise llm.n_ctx")
        return toks

    def _ensure_prefix(self, toks: list[int]) -> _Prefix:
        """Make ``toks`` the prefix in sequence 0 at cell 0: keep, restore a snapshot, or decode it."""
        key = tuple(toks)
        pre = self._prefixes.get(key)
        if pre is not None:
            self._prefixes.move_to_end(key)
            if self._active != key:
                self._engine.clear()
                self._engine.load_seq(pre.state, _PREFIX)
                self._active = key
            return pre
        eng = self._engine
        eng.clear()
        self._active = None
        rows: dict[int, np.ndarray] = {}
        last = len(toks) - 1
        eng.run(toks, range(len(toks)), [_PREFIX] * len(toks), [i == last for i in range(len(toks))],
                lambda i, row: rows.__setitem__(i, row.copy()))
        pre = self._prefixes[key] = _Prefix(len(toks), rows[last], eng.save_seq(_PREFIX))
        while len(self._prefixes) > self.max_prefixes:
            self._prefixes.popitem(last=False)
        self._active = key
        return pre

    # --- scoring ------------------------------------------------------------------------------
    def _decode(self, parent: int, seq: int, start: int, tokens: list[int],
                targets: dict[int, list[tuple[int, int]]], scores: np.ndarray) -> None:
        """Decode ``tokens`` in ``seq`` (branching from ``parent``) and add the targets' log-probs.

        ``targets`` maps a token index to ``[(request, next token), ...]`` scored from its logits.
        """
        eng = self._engine
        if parent != seq:
            eng.seq_cp(parent, seq)

        def on_logits(j: int, row: np.ndarray) -> None:
            tg = targets[j]
            for (req, _), lp in zip(tg, log_softmax_at(row, [t for _, t in tg]), strict=True):
                scores[req] += lp

        n = len(tokens)
        eng.run(tokens, range(start, start + n), [seq] * n, [j in targets for j in range(n)], on_logits)

    def loglik(self, requests: Sequence[LoglikRequest], *, prefix: str = "") -> list[LoglikResult]:
        if not requests:
            return []
        with self._lock:
            eng = self._engine
            ptoks = self._prefix_tokens(prefix)
            ctx_tokens: dict[str, tuple[int, ...]] = {}
            scores = np.zeros(len(requests), dtype=np.float64)
            counts = [0] * len(requests)
            groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
            for i, r in enumerate(requests):
                cont = eng.tokenize(r.continuation, special=self._special)
                counts[i] = len(cont)
                if not cont:
                    continue
                ctx = ctx_tokens.get(r.context)
                if ctx is None:
                    ctx = ctx_tokens[r.context] = tuple(eng.tokenize(r.context, special=self._special))
                total = len(ptoks) + len(ctx) + len(cont)
                if total > self.n_ctx:
                    raise BackendError(
                        f"loglik request {i} needs {total} tokens (prefix {len(ptoks)} + context {len(ctx)} + "
                        f"continuation {len(cont)}) > llm.n_ctx={self.n_ctx}; raise llm.n_ctx or cut passages "
                        "shorter (max_passage_words)")
                groups.setdefault(ctx, []).append((i, cont))
            if self.reuse_prefix:
                self._loglik_shared(ptoks, groups, scores)
            else:
                self._loglik_plain(ptoks, groups, scores)
        return [LoglikResult(float(s), n) for s, n in zip(scores, counts, strict=True)]

    def _loglik_plain(self, ptoks, groups, scores) -> None:
        """Reference path: each request from an empty cache, prefix + context + continuation in one go."""
        eng = self._engine
        self._active = None
        for ctx, items in groups.items():
            for req, cont in items:
                eng.clear()
                full = ptoks + list(ctx) + cont
                first = len(ptoks) + len(ctx) - 1  # the token whose logits predict the continuation's first
                self._decode(_PREFIX, _PREFIX, 0, full[:-1],
                             {j: [(req, full[j + 1])] for j in range(first, len(full) - 1)}, scores)
        eng.clear()

    def _loglik_shared(self, ptoks, groups, scores) -> None:
        eng = self._engine
        pre = self._ensure_prefix(ptoks)
        for ctx, items in groups.items():
            try:
                self._node(pre, _PREFIX, 0, pre.n_tokens, list(ctx), [], items, scores)
            finally:
                for depth in range(_MAX_DEPTH + 1):
                    eng.seq_rm(_ITEM + depth)

    def _node(self, pre: _Prefix, parent: int, depth: int, start: int, lead: list[int], members: list[int],
              rests: list[tuple[int, list[int]]], scores: np.ndarray) -> None:
        """Decode ``lead`` once in sequence ``_ITEM + depth`` (a branch of ``parent`` at ``start``), then the
        token trie of the continuations that follow it, one branch per point where they differ.

        At the root ``lead`` is the context and ``members`` is empty; below, ``lead`` is the common run of
        tokens of a group of continuations (``members``), whose first token the parent already scored.
        ``rests`` are the continuations' tokens after ``lead``; their first tokens are scored from the
        logits after ``lead`` (after the prefix when ``lead`` is empty). For the scorers' requests on one
        passage -- " q", " q Relevant: Yes", " q Relevant: No" -- this is a single pass with no branch.
        """
        targets: dict[int, list[tuple[int, int]]] = {}
        for k in range(1, len(lead) if members else 0):  # lead[k] is predicted by the logits after lead[k-1]
            targets[k - 1] = [(req, lead[k]) for req in members]
        lead = list(lead)
        while rests and len({t[0] for _, t in rests}) == 1:
            # one way on: the run all rests share joins this sequence (no branch); e.g. the query shared by
            # QL and RC, then "\nRelevant:" shared by the two labels once QL has ended
            m = _common_run([t for _, t in rests])
            for req, t in rests:
                for k in range(m):
                    targets.setdefault(len(lead) + k - 1, []).append((req, t[k]))
            lead += rests[0][1][:m]
            rests = [(req, t[m:]) for req, t in rests if len(t) > m]
        for req, t in rests:
            targets.setdefault(len(lead) - 1, []).append((req, t[0]))
        first = targets.pop(-1, None)  # only at a root with an empty context
        if first:
            for (req, _), lp in zip(first, log_softmax_at(pre.last_row, [t for _, t in first]), strict=True):
                scores[req] += lp
        n = len(lead) if rests else len(lead) - 1  # the last token's logits are needed only by rests
        here = parent
        if n > 0:
            self._decode(parent, _ITEM + depth, start, lead[:n], targets, scores)
            here = _ITEM + depth
        parts: dict[int, list[tuple[int, list[int]]]] = {}
        for req, t in rests:
            parts.setdefault(t[0], []).append((req, t))
        for part in parts.values():
            for group in ([part] if depth + 1 < _MAX_DEPTH else [[x] for x in part]):
                toks = [t for _, t in group]
                m = _common_run(toks)
                sub = [(req, t[m:]) for req, t in group if len(t) > m]
                if m > 1 or sub:
                    owners = [r for r, _ in group]
                    self._node(pre, here, depth + 1, start + len(lead), toks[0][:m], owners, sub, scores)
                    self._engine.seq_rm(_ITEM + depth + 1)

    # --- generate -----------------------------------------------------------------------------
    def generate(
        self, prompts: Sequence[str], *, prefix: str = "", params: GenerationParams = GenerationParams()
    ) -> list[str]:
        """Continue each prompt after ``prefix`` (greedy, or seeded temperature / top-p sampling).

        Every prompt is decoded on top of the cached prefix, and its output is exactly
        ``generate([prompt])``'s whatever else is in the call. Consecutive prompts that start with the
        same tokens (the ``queries_per_passage`` prompts of one passage differ only after the passage)
        decode that run once, at the KV cells one-at-a-time decoding would give it (right after the
        prefix), in a sequence each prompt branches from: a prompt then decodes only its remaining tokens
        and samples. Runs too short to pay for their extra decode call are not shared (see
        ``_share_groups``); ``share_prompt_prefix=False`` decodes every prompt whole (the reference).
        """
        if not prompts:
            return []
        with self._lock:
            eng = self._engine
            pre = self._ensure_prefix(self._prefix_tokens(prefix))
            toks = [eng.tokenize(p, special=self._special) for p in prompts]
            for t in toks:
                if pre.n_tokens + len(t) + params.max_tokens > self.n_ctx:
                    raise BackendError(f"prefix ({pre.n_tokens}) + prompt ({len(t)}) + max_tokens "
                                       f"({params.max_tokens}) tokens exceed llm.n_ctx={self.n_ctx}; raise "
                                       "llm.n_ctx or shorten the prompt")
            groups = (_share_groups(toks, self._engine.min_rows) if self.share_prompt_prefix
                      else [(i, i + 1, 0) for i in range(len(toks))])
            out: list[str] = [""] * len(prompts)
            for lo, hi, m in groups:
                if m == 0:
                    out[lo] = self._generate_one(pre, prompts[lo], toks[lo], params)
                    continue
                shared = toks[lo][:m]
                try:
                    eng.seq_cp(_PREFIX, _ITEM)
                    # padded like a whole prompt's decode: the run's cells, and the rows the prompts'
                    # tails attend to, are those of one-at-a-time decoding
                    eng.run(shared, range(pre.n_tokens, pre.n_tokens + m), [_ITEM] * m, [False] * m,
                            lambda _j, _r: None)
                    for i in range(lo, hi):
                        out[i] = self._generate_one(pre, prompts[i], toks[i], params, parent=_ITEM, done=m)
                finally:
                    eng.seq_rm(_ITEM)
            return out

    def _generate_one(self, pre: _Prefix, prompt: str, toks: list[int], params: GenerationParams, *,
                      parent: int = _PREFIX, done: int = 0) -> str:
        """Decode ``toks[done:]`` in a branch of ``parent`` (which holds the prefix and ``toks[:done]``),
        then sample; the branch's cells are removed afterwards."""
        eng = self._engine
        seq = parent + 1
        # Seeded per prompt, so an output does not depend on the other prompts of the call.
        rng = np.random.default_rng([params.seed, zlib.crc32(prompt.encode("utf-8"))])
        out: list[int] = []
        text = ""
        row: list[np.ndarray] = []
        keep = lambda _j, r: row.append(r.copy())  # noqa: E731 - the logits view dies with the next decode
        pos = pre.n_tokens + done
        rest = toks[done:]
        try:
            eng.seq_cp(parent, seq)
            if rest:
                eng.run(rest, range(pos, pos + len(rest)), [seq] * len(rest),
                        [j == len(rest) - 1 for j in range(len(rest))], keep)
                pos += len(rest)
                logits = row.pop()
            else:
                logits = pre.last_row
            while len(out) < params.max_tokens:
                tok = _sample(logits, params, rng)
                if eng.is_eog(tok):
                    break
                out.append(tok)
                text = b"".join(eng.piece(t) for t in out).decode("utf-8", "ignore")
                cut = min((text.find(s) for s in params.stop if s and s in text), default=-1)
                if cut >= 0:
                    return text[:cut]
                if len(out) == params.max_tokens:
                    break
                eng.run([tok], [pos], [seq], [True], keep, pad=False)
                pos += 1
                logits = row.pop()
        finally:
            eng.seq_rm(seq)
        return text


def _rows(n: int, min_rows: int = PAD) -> int:
    """Rows one padded decode call of ``n`` tokens costs (see ``LlamaEngine.run``): the cost model below."""
    return max(min_rows, -(-n // PAD) * PAD)


def _share_groups(toks: list[list[int]], min_rows: int = PAD) -> list[tuple[int, int, int]]:
    """Split prompts into runs ``(lo, hi, m)`` of consecutive prompts that decode their first ``m`` tokens
    once (``m == 0``: one prompt, decoded whole), with the fewest padded decode rows (``_rows``).

    ``m`` is the run's common leading tokens less one at most, so every member keeps a token of its own
    (its last token's logits start sampling). E.g. three 114-token prompts of one passage that differ in
    their last 4 tokens cost 112 + 3 x 64 rows shared instead of 3 x 120 with 64-row calls (flash attention); two of them would cost 240 rows
    either way and stay apart (ties go to fewer decode calls). A pure function of the tokens.
    """
    n = len(toks)
    lcp = [min(_common_run([toks[i], toks[i + 1]]) if toks[i] and toks[i + 1] else 0,
               len(toks[i]) - 1, len(toks[i + 1]) - 1) for i in range(n - 1)]
    best = [0] + [-1] * n  # best[i]: fewest rows for prompts [0, i)
    choice: list[tuple[int, int]] = [(0, 0)] * (n + 1)  # (lo, m) of the last run in best[i]
    for hi in range(1, n + 1):
        best[hi], choice[hi] = best[hi - 1] + _rows(len(toks[hi - 1]), min_rows), (hi - 1, 0)
        m = 1 << 30
        for lo in range(hi - 2, -1, -1):  # runs [lo, hi) of two or more prompts
            m = min(m, lcp[lo])
            if m <= 0:
                break
            c = best[lo] + _rows(m, min_rows) + sum(_rows(len(t) - m, min_rows) for t in toks[lo:hi])
            if c < best[hi]:
                best[hi], choice[hi] = c, (lo, m)
    groups: list[tuple[int, int, int]] = []
    hi = n
    while hi > 0:
        lo, m = choice[hi]
        groups.append((lo, hi, m))
        hi = lo
    return groups[::-1]


def _common_run(seqs: list[list[int]]) -> int:
    """Length of the longest common leading run of non-empty token lists."""
    m = 0
    while all(len(t) > m for t in seqs) and len({t[m] for t in seqs}) == 1:
        m += 1
    return m


def _sample(row: np.ndarray, params: GenerationParams, rng: np.random.Generator) -> int:
    """Greedy at temperature 0; else temperature sampling, with top-p over the 1024 most likely tokens."""
    if params.temperature <= 0:
        return int(row.argmax())
    z = row.astype(np.float64) / params.temperature
    if params.top_p >= 1.0:
        p = np.exp(z - z.max())
        return int(rng.choice(z.size, p=p / p.sum()))
    k = min(1024, z.size)
    top = np.argpartition(-z, k - 1)[:k]
    top = top[np.argsort(-z[top])]
    p = np.exp(z[top] - z[top[0]])
    p /= p.sum()
    keep = int(np.searchsorted(np.cumsum(p), params.top_p)) + 1
    top, p = top[:keep], p[:keep] / p[:keep].sum()
    return int(top[rng.choice(len(top), p=p)])
