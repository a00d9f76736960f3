"""The `transformers` backend: any causal LM that transformers loads (local folder, hub name, or a GGUF
file, which transformers dequantises to float32; needs ``pip install gguf==0.19.0``). The reference
implementation, and the CPU/GPU path when llama.cpp is not wanted.

Prefix reuse: the shared prefix is run once and its KV cache kept; every batch of items copies that cache
(``batch_repeat_interleave``) and runs only the items' tokens, right-padded, with positions continuing after
the prefix. Right padding never changes real tokens' results under causal attention, so batched scores equal
per-item scores (tested to 1e-3). Only the positions that predict a continuation token reach the vocabulary
projection (a boolean ``logits_to_keep``): full logits of a batch would be B x L x 262k floats with Gemma.
Requests that share a context and have one-token continuations (" Yes" / " No") share one row.

Safety: weights load from safetensors (a folder without them falls back to transformers' weights-only
loader, with a warning); ``trust_remote_code`` is passed only when the config turns it on.
"""

from __future__ import annotations

import copy
import logging
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gecko_distill.errors import BackendError, BackendUnavailable
from gecko_distill.llm.base import GenerationParams, LoglikRequest, LoglikResult

if TYPE_CHECKING:
    from gecko_distill.config import LLMConfig

__all__ = ["TransformersBackend"]

logger = logging.getLogger(__name__)


class TransformersBackend:
    """Wraps a ``(model, tokenizer)`` pair; build it with :meth:`from_config` or pass your own."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, batch_size: int = 8,
                 batch_tokens: int = 4096, reuse_prefix: bool = True) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.reuse_prefix = reuse_prefix
        self._prefix_key: tuple[int, ...] | None = None
        self._prefix_cache: Any = None
        self._prefix_last_logits: Any = None
        window = getattr(getattr(model, "config", None), "sliding_window", None)
        self._window = int(window) if isinstance(window, int) and window > 0 else None

    @classmethod
    def from_config(cls, cfg: LLMConfig) -> TransformersBackend:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:  # pragma: no cover - torch is a core dependency
            raise BackendUnavailable("the transformers backend needs torch and transformers") from e
        from gecko_distill.llm.model_files import file_identity, resolve_model_source

        src = resolve_model_source(cfg.model, cfg.model_file)
        kw: dict[str, Any] = {}
        if cfg.trust_remote_code:  # only when asked: it runs code from the model repo
            kw["trust_remote_code"] = True
        if src.kind == "gguf":
            assert src.path is not None
            where, kw["gguf_file"] = str(src.path.parent), src.path.name
            name = f"transformers:{file_identity(src.path)}"
        elif src.kind == "folder":
            assert src.path is not None
            where = str(src.path)
            safe = any(src.path.glob("*.safetensors"))
            if not safe:
                logger.warning("%s has no .safetensors weights; loading pickled weights with torch's "
                               "weights-only loader", src.path)
            kw["use_safetensors"] = safe
            weights = sorted(src.path.glob("*.safetensors")) or sorted(src.path.glob("*.bin"))
            name = "transformers:" + ",".join(file_identity(w) for w in weights[:4])
        else:
            where = str(src.repo)
            kw["use_safetensors"] = True  # never unpickle weights fetched from a hub
            name = f"transformers:{where}"
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if bf16 else torch.float32
        try:
            tok = AutoTokenizer.from_pretrained(where, **kw)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kw)
        except ImportError as e:
            raise BackendUnavailable(f"{e}. For GGUF files: pip install gguf==0.19.0") from e
        except (OSError, ValueError) as e:
            hint = (" It contains its own code: set llm.trust_remote_code = true only if you trust it."
                    if "trust_remote_code" in str(e) else "")
            raise BackendUnavailable(f"transformers could not load {where!r}: {str(e)[:400]}{hint}") from e
        return cls(model.to(device), tok, name=f"{name}:{str(dtype).removeprefix('torch.')}")

    @property
    def fingerprint(self) -> str:
        return self.name

    # --- tokens and the prefix cache ---------------------------------------------------------------
    def _ids(self, text: str, *, special: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"]) if text else []

    def _prefix_ids(self, prefix: str) -> list[int]:
        ids = self._ids(prefix, special=True)
        if not ids:  # something must condition the first scored token
            bos = self.tokenizer.bos_token_id
            ids = [bos if bos is not None else (self.tokenizer.eos_token_id or 0)]
        return ids

    def _prefix(self, ids: list[int]) -> tuple[Any, Any]:
        """Run the prefix once and keep its KV cache and its last logits (re-run when the prefix changes)."""
        import torch

        if self._prefix_key != tuple(ids):
            with torch.no_grad():
                out = self.model(input_ids=torch.tensor([ids], device=self.model.device), use_cache=True,
                                 logits_to_keep=1)
            self._prefix_key = tuple(ids)
            self._prefix_cache = out.past_key_values
            self._prefix_last_logits = out.logits[0, -1].float()
        return self._prefix_cache, self._prefix_last_logits

    # --- loglik -------------------------------------------------------------------------------------
    def loglik(self, requests: Sequence[LoglikRequest], *, prefix: str = "") -> list[LoglikResult]:
        import torch

        pids = self._prefix_ids(prefix)
        cont_ids = [self._ids(r.continuation, special=False) for r in requests]
        ctx_ids: dict[str, list[int]] = {}
        for r in requests:
            if r.context not in ctx_ids:
                ctx_ids[r.context] = self._ids(r.context, special=False)
        scores = [0.0] * len(requests)
        # Rows to run: (tokens, {row position: [(request, target token)]}) -- a row holds one request, or
        # every one-token continuation of one context.
        rows: list[tuple[list[int], dict[int, list[tuple[int, int]]]]] = []
        shared: dict[str, int] = {}
        for i, (r, cont) in enumerate(zip(requests, cont_ids, strict=True)):
            if not cont:
                continue
            ctx = ctx_ids[r.context]
            if len(cont) == 1 and ctx and r.context in shared:
                rows[shared[r.context]][1][len(ctx) - 1].append((i, cont[0]))
                continue
            full = ctx + cont
            rows.append((full[:-1], {j: [(i, full[j + 1])] for j in range(max(len(ctx) - 1, 0), len(full) - 1)}))
            if len(cont) == 1 and ctx:
                shared[r.context] = len(rows) - 1
            if not ctx:  # the first continuation token is predicted by the prefix's last logits
                _, last = self._prefix(pids) if self.reuse_prefix else (None, self._last_logits(pids))
                scores[i] += float(torch.log_softmax(last, -1)[cont[0]])
        with torch.no_grad():
            longest = len(pids) + max((len(t) for t, _ in rows), default=0)
            if self.reuse_prefix and not (self._window and longest > self._window):
                self._rows_reused(pids, rows, scores)
            else:  # naive reference: the whole sequence per row (also when a row would pass a sliding window)
                for toks, targets in rows:
                    self._rows_full(pids, toks, targets, scores)
        return [LoglikResult(s, len(c)) for s, c in zip(scores, cont_ids, strict=True)]

    def _last_logits(self, pids: list[int]) -> Any:
        import torch

        with torch.no_grad():
            return self.model(input_ids=torch.tensor([pids], device=self.model.device),
                              logits_to_keep=1).logits[0, -1].float()

    def _add(self, logits: Any, wanted: list[list[tuple[int, int]]], scores: list[float]) -> None:
        import torch

        lp = torch.log_softmax(logits.float(), dim=-1)
        for row, targets in zip(lp, wanted, strict=True):
            for req, tok in targets:
                scores[req] += float(row[tok])

    def _rows_full(self, pids, toks, targets, scores) -> None:
        import torch

        if not toks:
            return
        ids = torch.tensor([pids + toks], device=self.model.device)
        keep = torch.zeros_like(ids, dtype=torch.bool)
        order = sorted(targets)
        keep[0, [len(pids) + j for j in order]] = True
        logits = self.model(input_ids=ids, logits_to_keep=keep).logits
        self._add(logits.reshape(-1, logits.shape[-1]), [targets[j] for j in order], scores)

    def _rows_reused(self, pids, rows, scores) -> None:
        import torch

        cache, _ = self._prefix(pids)
        dev, p = self.model.device, len(pids)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        order = sorted((i for i, (t, _) in enumerate(rows) if t), key=lambda i: len(rows[i][0]))
        start = 0
        while start < len(order):  # batches of similar length, bounded in rows and padded tokens
            end = start + 1
            while (end < len(order) and end - start < self.batch_size
                   and (end - start + 1) * len(rows[order[end]][0]) <= self.batch_tokens):
                end += 1
            batch = [rows[i] for i in order[start:end]]
            start = end
            width = max(len(t) for t, _ in batch)
            ids = torch.tensor([t + [pad] * (width - len(t)) for t, _ in batch], device=dev)
            mask = torch.tensor([[1] * (p + len(t)) + [0] * (width - len(t)) for t, _ in batch], device=dev)
            keep = torch.zeros((len(batch), width), dtype=torch.bool, device=dev)
            wanted = []
            for b, (_, targets) in enumerate(batch):  # row-major order = the order of the kept logits
                for j in sorted(targets):
                    keep[b, j] = True
                    wanted.append(targets[j])
            kv = copy.deepcopy(cache)
            kv.batch_repeat_interleave(len(batch))
            pos = torch.arange(p, p + width, device=dev).expand(len(batch), -1)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=kv,
                                use_cache=True, logits_to_keep=keep).logits
            self._add(logits.reshape(-1, logits.shape[-1]), wanted, scores)

    # --- generate -----------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], *, prefix: str = "",
                 params: GenerationParams = GenerationParams()) -> list[str]:
        import torch

        pids = self._prefix_ids(prefix)
        outs = []
        for prompt in prompts:
            ids = pids + self._ids(prompt, special=False)
            kw: dict[str, Any] = {"max_new_tokens": params.max_tokens, "do_sample": params.temperature > 0}
            if params.temperature > 0:
                kw.update(temperature=params.temperature, top_p=params.top_p, top_k=None)
            if self.reuse_prefix and len(ids) > len(pids):
                cache, _ = self._prefix(pids)
                kw["past_key_values"] = copy.deepcopy(cache)  # generate() runs only the prompt's tokens
            if params.stop:
                kw.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
            pad = self.tokenizer.pad_token_id
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(params.seed ^ zlib.crc32(prompt.encode("utf-8")))  # per prompt: batch-free
                try:
                    gen = self.model.generate(input_ids=torch.tensor([ids], device=self.model.device),
                                              attention_mask=torch.ones((1, len(ids)), dtype=torch.long,
                                                                        device=self.model.device),
                                              pad_token_id=self.tokenizer.eos_token_id if pad is None else pad,
                                              **kw)
                except (RuntimeError, ValueError) as e:
                    raise BackendError(f"transformers generate failed: {e}") from e
            text = self.tokenizer.decode(gen[0, len(ids):], skip_special_tokens=True)
            cut = min((text.find(s) for s in params.stop if s and s in text), default=-1)
            outs.append(text[:cut] if cut >= 0 else text)
        return outs
