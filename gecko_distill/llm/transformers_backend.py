"""The `transformers` backend: any causal LM that transformers loads (local folder, hub name, or a GGUF
file, which transformers dequantises to float32; needs ``pip install gguf==0.19.0``). The reference
implementation, and the CPU/GPU path when llama.cpp is not wanted.

Prefix reuse: the shared prefix is run once and its KV cache kept; every batch of items copies that cache
(``batch_repeat_interleave``) and runs only the items' tokens, right-padded, with positions continuing after
the prefix. Right padding never changes real tokens' results under causal attention, so batched scores equal
per-item scores (tested to 1e-3). Only the positions that predict a continuation token reach the vocabulary
projection (a boolean ``logits_to_keep``): full logits of a batch would be B x L x 262k floats with Gemma.
Requests that share a context and have one-token continuations (" Yes" / " No") share one row.

Context sharing (passage-major scoring, issue 13): when several requests continue the same context (every query
that retrieved a passage, for QL and RC), the context is run once on the prefix's cache and each continuation
runs on a copy of *that* cache, so a passage costs its tokens once instead of once per request
(``share_context=False``: every request runs its context again, the previous path).

Safety: weights load from safetensors (a folder without them falls back to transformers' weights-only
loader, with a warning); ``trust_remote_code`` is passed only when the config turns it on.
"""

from __future__ import annotations

import copy
import logging
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gecko_distill._batching import token_budget_batches
from gecko_distill.errors import BackendError, BackendUnavailable
from gecko_distill.llm.base import ChatTemplate, GenerationParams, LoglikRequest, LoglikResult, hf_chat_template

if TYPE_CHECKING:
    from gecko_distill.stage_configs import LLMConfig

__all__ = ["TransformersBackend"]

logger = logging.getLogger(__name__)


class TransformersBackend:
    """Wraps a ``(model, tokenizer)`` pair; build it with :meth:`from_config` or pass your own."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, batch_size: int = 8,
                 batch_tokens: int = 4096, reuse_prefix: bool = True, generate_batch_size: int = 1,
                 prompt_style: str = "completion", share_context: bool = True) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        # Hugging Face tokenizers parse control tokens written as text ("<|im_end|>") in every part already;
        # chat prompts only change the fingerprint
        self.prompt_style = prompt_style
        self.name = name + (":chat" if prompt_style == "chat" else "")
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.reuse_prefix = reuse_prefix
        self.share_context = share_context
        self.generate_batch_size = generate_batch_size
        self._bool_keep = True  # does this model take a boolean logits_to_keep? (see _kept_logits)
        # padding id for batches: padded positions are masked (and, right-padded, come after every real token)
        ids = (tokenizer.pad_token_id, tokenizer.eos_token_id)
        self._pad = next((i for i in ids if i is not None), 0)
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
        if src.kind == "gguf":
            _check_gguf_tokenizer_support()
        # bf16 on a GPU, except for GGUF files: transformers dequantises them to float32 and we keep that
        # (the GGUF route is for small packaged models, where float32 costs little and matches llama.cpp).
        gpu = device.startswith("cuda")
        bf16 = gpu and torch.cuda.is_bf16_supported() and src.kind != "gguf"
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
        # On a GPU one item at a time leaves the device idle (a small model is launch-bound): batch both
        # primitives. On CPU, generation stays one prompt at a time (bit-stable, and no faster batched).
        return cls(model.to(device), tok, name=f"{name}:{str(dtype).removeprefix('torch.')}",
                   batch_size=64 if gpu else 8, batch_tokens=65536 if gpu else 4096,
                   generate_batch_size=64 if gpu else 1, prompt_style=cfg.prompt_style)

    @property
    def fingerprint(self) -> str:
        return self.name

    @property
    def chat_template(self) -> ChatTemplate | None:
        """The tokenizer's chat template (for ``llm.prompt_style = "chat"``), or None."""
        return hf_chat_template(self.tokenizer)

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
        longest = len(pids) + max((len(ctx_ids[r.context]) + len(c) for r, c in zip(requests, cont_ids,
                                                                                     strict=True)), default=0)
        # reuse the prefix's KV cache unless a row would pass a sliding window (then run rows whole)
        reuse = self.reuse_prefix and not (self._window and longest > self._window)
        # A context that several requests continue (passage-major scoring: every query that retrieved the
        # passage, QL and RC) is run once and its KV cache shared by their continuations.
        by_ctx: dict[str, list[int]] = {}
        for i, (r, cont) in enumerate(zip(requests, cont_ids, strict=True)):
            if cont and ctx_ids[r.context]:
                by_ctx.setdefault(r.context, []).append(i)
        shared_ctx = {c: idx for c, idx in by_ctx.items() if len(idx) > 1} if reuse and self.share_context else {}
        # Rows to run: (tokens, {row position: [(request, target token)]}) -- a row holds one request, or
        # every one-token continuation of one context.
        rows: list[tuple[list[int], dict[int, list[tuple[int, int]]]]] = []
        shared: dict[str, int] = {}
        for i, (r, cont) in enumerate(zip(requests, cont_ids, strict=True)):
            if not cont or r.context in shared_ctx:
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
            self._run_rows(pids, rows, scores, reuse=reuse)
            for c, idx in shared_ctx.items():
                self._run_context(pids, ctx_ids[c], [(i, cont_ids[i]) for i in idx], scores)
        return [LoglikResult(s, len(c)) for s, c in zip(scores, cont_ids, strict=True)]

    def _run_context(self, pids: list[int], ctx: list[int], conts: list[tuple[int, list[int]]],
                     scores: list[float]) -> None:
        """Run ``ctx`` once on a copy of the prefix's KV cache, then every continuation on copies of that
        cache (right-padded rows, positions after the context). The context's last logits score each
        continuation's first token; a continuation's own positions score the rest."""
        import torch

        dev, p = self.model.device, len(pids)
        kv = copy.deepcopy(self._prefix(pids)[0])
        out = self.model(input_ids=torch.tensor([ctx], device=dev), past_key_values=kv, use_cache=True,
                         position_ids=torch.arange(p, p + len(ctx), device=dev)[None], logits_to_keep=1)
        first = torch.log_softmax(out.logits[0, -1].float(), -1)
        kv = out.past_key_values
        rows: list[tuple[list[int], dict[int, list[tuple[int, int]]]]] = []
        for i, cont in conts:
            scores[i] += float(first[cont[0]])
            if len(cont) > 1:
                rows.append((cont[:-1], {j: [(i, cont[j + 1])] for j in range(len(cont) - 1)}))
        self._score_rows(rows, scores, cache=kv, past=p + len(ctx), head=[])

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

    def _batches(self, rows: list[tuple[list[int], dict[int, list[tuple[int, int]]]]]):
        """Row batches of similar length, bounded in rows and in padded tokens (the embedder's planner)."""
        kept = [r for r in rows if r[0]]
        for idx in token_budget_batches([len(t) for t, _ in kept], batch_size=self.batch_size,
                                        max_tokens=self.batch_tokens):
            yield [kept[i] for i in idx]

    def _kept_logits(self, keep: Any, inputs: Callable[[], dict[str, Any]]) -> Any:
        """Logits at the ``keep`` positions only, row-major. A boolean ``logits_to_keep`` projects just
        those positions; transformers versions whose model does not take it get the last K positions
        (K = from the first kept column) and the mask is applied after."""
        import torch

        if self._bool_keep:
            try:
                logits = self.model(**inputs(), logits_to_keep=keep).logits
                return logits.reshape(-1, logits.shape[-1])
            except torch.OutOfMemoryError:
                raise
            except (IndexError, TypeError, RuntimeError):
                self._bool_keep = False
                logger.info("this transformers model takes no boolean logits_to_keep; keeping the last positions")
        cols = keep.any(dim=0).nonzero()
        k = keep.shape[1] - int(cols[0]) if len(cols) else 1
        logits = self.model(**inputs(), logits_to_keep=k).logits  # fresh inputs: a failed call may have
        return logits[keep[:, -k:]]                                  # filled the KV cache it was given

    def _targets(self, batch, width: int, offset: int) -> tuple[Any, list[list[tuple[int, int]]]]:
        import torch

        keep = torch.zeros((len(batch), width), dtype=torch.bool, device=self.model.device)
        wanted = []
        for b, (_, targets) in enumerate(batch):  # row-major order = the order of the kept logits
            for j in sorted(targets):
                keep[b, offset + j] = True
                wanted.append(targets[j])
        return keep, wanted

    def _run_rows(self, pids, rows, scores, *, reuse: bool) -> None:
        """Score rows in right-padded batches after the prefix: on a copy of the prefix's KV cache (positions
        continuing after it), or with the prefix run again in every row (exact under any attention pattern)."""
        if reuse:
            self._score_rows(rows, scores, cache=self._prefix(pids)[0], past=len(pids), head=[])
        else:
            self._score_rows(rows, scores, cache=None, past=0, head=pids)

    def _score_rows(self, rows, scores, *, cache: Any, past: int, head: list[int]) -> None:
        """Score rows in right-padded batches: ``head`` tokens run before each row, on a copy of ``cache``
        (``past`` positions, repeated per row) when there is one."""
        import torch

        dev, p = self.model.device, past + len(head)
        for batch in self._batches(rows):
            longest = max(len(t) for t, _ in batch)
            ids = torch.tensor([head + t + [self._pad] * (longest - len(t)) for t, _ in batch], device=dev)
            mask = torch.tensor([[1] * (p + len(t)) + [0] * (longest - len(t)) for t, _ in batch], device=dev)
            keep, wanted = self._targets(batch, len(head) + longest, len(head))

            def inputs(ids=ids, mask=mask, n=len(batch)) -> dict[str, Any]:
                if cache is None:
                    return {"input_ids": ids, "attention_mask": mask}
                kv = copy.deepcopy(cache)
                kv.batch_repeat_interleave(n)
                return {"input_ids": ids, "attention_mask": mask, "past_key_values": kv, "use_cache": True,
                        "position_ids": torch.arange(past, past + ids.shape[1], device=dev).expand(n, -1)}

            self._add(self._kept_logits(keep, inputs), wanted, scores)

    # --- generate -----------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], *, prefix: str = "",
                 params: GenerationParams = GenerationParams()) -> list[str]:
        import torch

        pids = self._prefix_ids(prefix)
        if self.generate_batch_size > 1:
            return self._generate_batched(prompts, pids, params)
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
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(params.seed ^ zlib.crc32(prompt.encode("utf-8")))  # per prompt: batch-free
                try:
                    gen = self.model.generate(input_ids=torch.tensor([ids], device=self.model.device),
                                              attention_mask=torch.ones((1, len(ids)), dtype=torch.long,
                                                                        device=self.model.device),
                                              pad_token_id=self._pad,
                                              **kw)
                except (RuntimeError, ValueError) as e:
                    raise BackendError(f"transformers generate failed: {e}") from e
            outs.append(_cut_at_stop(self.tokenizer.decode(gen[0, len(ids):], skip_special_tokens=True), params))
        return outs

    def _generate_batched(self, prompts: Sequence[str], pids: list[int], params: GenerationParams) -> list[str]:
        """Left-padded batches through ``model.generate`` (the GPU path). Sampling stays seeded per prompt:
        :class:`_RowSampler` draws each row's token from that prompt's own generator, so a prompt's draws do
        not depend on its batch-mates (its logits can, by float rounding under padding)."""
        import torch
        from transformers import LogitsProcessorList

        tok, dev = self.tokenizer, self.model.device
        seqs = [pids + self._ids(p, special=False) for p in prompts]
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))  # similar lengths share a batch
        outs: list[str] = [""] * len(seqs)
        for b0 in range(0, len(order), self.generate_batch_size):
            idx = order[b0:b0 + self.generate_batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = torch.tensor([[self._pad] * (width - len(seqs[i])) + seqs[i] for i in idx], device=dev)
            mask = torch.tensor([[0] * (width - len(seqs[i])) + [1] * len(seqs[i]) for i in idx], device=dev)
            kw: dict[str, Any] = {"max_new_tokens": params.max_tokens, "do_sample": False,
                                  "pad_token_id": self._pad}
            if params.temperature > 0:  # greedy over the sampler's one-hot scores = the sampler's draw
                seeds = [params.seed ^ zlib.crc32(prompts[i].encode("utf-8")) for i in idx]
                kw["logits_processor"] = LogitsProcessorList([_RowSampler(params, seeds, dev)])
            # no stop_strings here: a batch runs until its longest row anyway, and matching strings every
            # step costs more than the tokens; the text is cut at the first stop string below
            with torch.no_grad():
                try:
                    gen = self.model.generate(input_ids=ids, attention_mask=mask, **kw)
                except (RuntimeError, ValueError) as e:
                    raise BackendError(f"transformers generate failed: {e}") from e
            for row, i in enumerate(idx):
                outs[i] = _cut_at_stop(tok.decode(gen[row, width:], skip_special_tokens=True), params)
        return outs


def _check_gguf_tokenizer_support() -> None:
    """Measured on a GPU machine with transformers 5.17: Gemma-3's GGUF tokenizer was converted wrongly (the
    generation prompt became 1,192 tokens instead of 587, nearly character by character), and 73-94% of the
    generated (task, query) pairs were garbled. 5.23 (our pin) tokenizes as llama.cpp does."""
    from importlib.metadata import version

    v = tuple(int(x) for x in version("transformers").split(".")[:2] if x.isdigit())
    if v < (5, 23):
        logger.warning("transformers %s may convert GGUF tokenizers wrongly (seen with Gemma-3 on 5.17: garbled "
                       "generations); gecko-distill is tested with transformers==5.23.0", version("transformers"))


def _cut_at_stop(text: str, params: GenerationParams) -> str:
    cut = min((text.find(s) for s in params.stop if s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text


class _RowSampler:
    """A logits processor that samples (temperature, top-p) each row with its own seeded generator and
    returns one-hot scores, so that greedy decoding emits exactly the sampled token."""

    def __init__(self, params: GenerationParams, seeds: Sequence[int], device: Any) -> None:
        import torch

        self.params = params
        self.gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probs = torch.softmax(scores.float() / self.params.temperature, dim=-1)
        if self.params.top_p < 1.0:  # nucleus: keep the smallest set whose mass reaches top_p
            sp, si = probs.sort(dim=-1, descending=True)
            drop = sp.cumsum(-1) - sp > self.params.top_p
            probs = probs.scatter(-1, si, sp.masked_fill(drop, 0.0))
        out = torch.full_like(scores, float("-inf"))
        for r, g in enumerate(self.gens):
            out[r, torch.multinomial(probs[r], 1, generator=g)] = 0.0
        return out
