"""A thin layer over llama.cpp's C API (through llama-cpp-python's ctypes bindings) for multi-sequence work.

Why not ``llama_cpp.Llama``: it creates a one-sequence context (``n_seq_max`` is only raised for
embedding models) and its ``logits_all`` mode copies n_ctx x vocab floats -- with Gemma's 262k vocabulary
that alone drops decoding to ~1 token/s. Here we open our own context with

- ``kv_unified`` on, so one KV cell can belong to several sequences: a prefix decoded once in sequence
  ``s`` is shared by every item sequence through ``llama_memory_seq_cp`` (no copy of the tensors), and
  ``llama_memory_seq_rm`` drops an item's cells while the prefix stays;
- ``swa_full`` on, so sliding-window layers (Gemma 3) keep every cell and a reused prefix attends
  exactly as a freshly decoded one (scores with reuse == scores without);
- per-token ``logits`` flags in ``llama_batch``, so only the positions that predict a scored or
  sampled token produce a vocabulary row.

Batch-invariant numerics. ggml's CPU kernels pick their code path from the micro-batch shape: rows in a
complete group of 4 go through the repacked GEMM and the rest through GEMV, the last layer and the
vocabulary projection only see the output rows, and flash attention switches from a one-row-at-a-time
kernel with fp16 accumulation to a tiled fp32 kernel at 64 query rows. With Gemma's large activations
these paths disagree by up to ~0.5 in a logit (both are ~0.03 nats/token from a float32 reference), so
a score would depend on which other items shared its batch. ``run`` therefore pads each decode call with
throw-away rows in a scratch sequence (removed right after) so that rows and output rows are multiples of
``PAD``: every real row then takes the same path, and a score is the same with or without prefix reuse,
whatever it was batched with (bit-identical, checked by tests/integration/test_llamacpp.py).

Flash attention is off by default (issue 13). With it on, a call needs at least ``TILE_ROWS`` rows to stay
on one attention kernel, so a 20-token continuation scored after a shared passage paid for 64 rows; with
it off, attention is two matrix products and a softmax whose per-row results do not depend on the call's
row count, so ``PAD`` rows suffice (measured: passage-major scores bit-identical to query-major ones,
docs/performance.md). ``flash_attn=True`` restores the old engine (and its ``TILE_ROWS`` padding).
"""

from __future__ import annotations

import ctypes
import logging
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gecko_distill.errors import BackendError, BackendUnavailable

__all__ = ["PAD", "TILE_ROWS", "LlamaEngine", "log_softmax_at"]

logger = logging.getLogger(__name__)

PAD = 8  # decode calls are padded to a multiple of this many rows (see the module docstring)
TILE_ROWS = 64  # ggml-cpu's flash-attention query tile (GGML_FA_TILE_Q): from here on the fp32 tiled kernel
_LOG_CALLBACK = None  # keep a reference: llama.cpp holds a raw pointer to it


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise BackendUnavailable("the llamacpp backend needs: pip install llama-cpp-python==0.3.36") from e
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        # llama.cpp prints every load message to stderr by default; route them to logging instead.
        levels = {3: logging.WARNING, 4: logging.ERROR}  # ggml_log_level: 1 debug, 2 info

        @llama_cpp.llama_log_callback
        def _cb(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
            lvl = levels.get(level, logging.DEBUG)
            if logger.isEnabledFor(lvl):
                logger.log(lvl, "llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

        _LOG_CALLBACK = _cb
        llama_cpp.llama_log_set(_cb, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
    return llama_cpp


def log_softmax_at(row: np.ndarray, targets: Sequence[int]) -> list[float]:
    """log softmax(row)[t] for each target, in float32 (one pass over the vocabulary, no float64 copy)."""
    m = float(row.max())
    lse = m + float(np.log(np.exp(row - m, dtype=np.float32).sum(dtype=np.float32)))
    return [float(row[t]) - lse for t in targets]


def _free(llama_cpp, ctx, model, batch) -> None:  # pragma: no cover - runs at garbage collection
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)


class LlamaEngine:
    """One model + one multi-sequence context. Not thread-safe: the backend serialises calls."""

    def __init__(
        self,
        path: Path,
        *,
        kv_size: int,
        n_batch: int,
        n_seq: int,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        flash_attn: bool = False,
    ) -> None:
        lc = self._lc = _import_llama_cpp()
        mparams = lc.llama_model_default_params()
        mparams.n_gpu_layers = n_gpu_layers
        model = lc.llama_model_load_from_file(str(path).encode("utf-8"), mparams)
        if not model:
            raise BackendUnavailable(f"llama.cpp could not load {path}: is it a valid GGUF file for this "
                                     "llama-cpp-python version? (logging at DEBUG shows llama.cpp's reason)")
        n_seq = min(n_seq, lc.llama_max_parallel_sequences())
        threads = n_threads or os.cpu_count() or 1
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = kv_size
        cap = n_batch + 2 * PAD + TILE_ROWS  # room for the padding rows; one ubatch per decode call
        cparams.n_batch = cap
        cparams.n_ubatch = cap
        cparams.n_seq_max = n_seq
        cparams.kv_unified = True
        cparams.swa_full = True
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.no_perf = True
        cparams.flash_attn_type = 1 if flash_attn else 0  # llama_flash_attn_type: 0 disabled, 1 enabled
        # the fewest rows a padded call has, so that every row takes one kernel path (module docstring)
        self.min_rows = TILE_ROWS if flash_attn else PAD
        self.numerics = f"fa{int(flash_attn)}-rows{self.min_rows}"  # part of the backend fingerprint
        ctx = lc.llama_init_from_model(model, cparams)
        if not ctx:
            lc.llama_model_free(model)
            raise BackendUnavailable(f"llama.cpp could not create a context (kv_size={kv_size}, "
                                     f"n_seq={n_seq}); lower llm.n_ctx or llm.n_batch")
        self.model, self.ctx = model, ctx
        self.vocab = lc.llama_model_get_vocab(model)
        self.mem = lc.llama_get_memory(ctx)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self.kv_size = lc.llama_n_ctx(ctx)
        self.n_batch = n_batch - n_batch % PAD
        self.n_seq = n_seq - 1  # sequence ids callers may use; the last one is the padding scratch
        self._scratch = n_seq - 1
        self.n_threads = threads
        self.version = f"llama-cpp-python={getattr(lc, '__version__', '?')}"
        self.bos = lc.llama_vocab_bos(self.vocab)
        self.eos = lc.llama_vocab_eos(self.vocab)
        self.add_bos = bool(lc.llama_vocab_get_add_bos(self.vocab))
        self._batch = lc.llama_batch_init(cap, 0, 1)
        self._pieces: dict[int, bytes] = {}
        self._finalizer = weakref.finalize(self, _free, lc, ctx, model, self._batch)

    def close(self) -> None:
        """Free the context and the model now (also done at garbage collection)."""
        self._finalizer()

    # --- tokens -------------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        """Token ids of ``text``; ``special`` parses control tokens written as text (trusted prompts only)."""
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        buf = (self._lc.llama_token * cap)()
        n = self._lc.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_bos, special)
        if n < 0:  # buffer too small: -n is the size needed
            cap = -n
            buf = (self._lc.llama_token * cap)()
            n = self._lc.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_bos, special)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of one token (control tokens render as nothing)."""
        out = self._pieces.get(token)
        if out is None:
            buf = ctypes.create_string_buffer(64)
            n = self._lc.llama_token_to_piece(self.vocab, token, buf, 64, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._lc.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
            out = self._pieces[token] = buf.raw[:n]
        return out

    def special_text(self, token: int) -> str:
        """The text of a control token as a chat template writes it ("<|im_start|>"); "" for none (-1)."""
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(256)
        n = self._lc.llama_token_to_piece(self.vocab, token, buf, 256, 0, True)
        return buf.raw[:max(n, 0)].decode("utf-8", "replace")

    def chat_template(self) -> str | None:
        """The GGUF's default chat template (``tokenizer.chat_template``), or None when it has none."""
        raw = self._lc.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8") if raw else None

    def is_eog(self, token: int) -> bool:
        return bool(self._lc.llama_vocab_is_eog(self.vocab, token))

    # --- KV memory ----------------------------------------------------------------------------
    def seq_cp(self, src: int, dst: int) -> None:
        """Let ``dst`` share every cell of ``src`` (no tensor copy in a unified KV cache)."""
        self._lc.llama_memory_seq_cp(self.mem, src, dst, -1, -1)

    def seq_rm(self, seq: int) -> None:
        """Drop sequence ``seq`` (cells shared with other sequences stay for them)."""
        self._lc.llama_memory_seq_rm(self.mem, seq, -1, -1)

    def clear(self) -> None:
        self._lc.llama_memory_clear(self.mem, True)

    def save_seq(self, seq: int) -> bytes:
        """Snapshot one sequence's KV state (a few MB for a few hundred tokens of a small model)."""
        size = self._lc.llama_state_seq_get_size(self.ctx, seq)
        buf = (ctypes.c_uint8 * size)()
        n = self._lc.llama_state_seq_get_data(self.ctx, buf, size, seq)
        return bytes(buf[:n])

    def load_seq(self, state: bytes, seq: int) -> None:
        """Restore a snapshot into ``seq`` (into the first free cells: call on a cleared cache for cell 0)."""
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if self._lc.llama_state_seq_set_data(self.ctx, buf, len(state), seq) == 0:
            raise BackendError("llama.cpp could not restore a cached prefix state (KV cache too small?)")

    # --- decoding -----------------------------------------------------------------------------
    def run(
        self,
        tokens: Sequence[int],
        positions: Sequence[int],
        seqs: Sequence[int],
        wants: Sequence[bool],
        on_logits: Callable[[int, np.ndarray], None],
        *,
        min_rows: int | None = None,
        pad: bool = True,
    ) -> None:
        """Decode the entries (in chunks of ``n_batch``); call ``on_logits(entry, row)`` for wanted ones.

        ``row`` is a float32 view of llama.cpp's buffer, valid only inside the callback. A sequence's
        entries must appear in position order; they may span chunks (later chunks see earlier cells).
        Each call is padded to at least ``min_rows`` rows (default: the engine's), a multiple of ``PAD``. ``pad=False`` skips the
        padding (sampling steps: the same prompt always meets the same shapes, so it stays deterministic).
        """
        lc, batch, ctx = self._lc, self._batch, self.ctx
        min_rows = self.min_rows if min_rows is None else min_rows
        n = len(tokens)
        for start in range(0, n, self.n_batch):
            stop = min(start + self.n_batch, n)
            m = stop - start
            for j, i in enumerate(range(start, stop)):
                batch.token[j] = tokens[i]
                batch.pos[j] = positions[i]
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = seqs[i]
                batch.logits[j] = wants[i]
            # throw-away rows in a fresh scratch sequence, so that both the rows and the output rows
            # (the last layer and the vocabulary projection only see output rows) are multiples of PAD
            n_pad = n_out = 0
            if pad:
                n_out = -sum(wants[start:stop]) % PAD
                n_pad = n_out + (-(m + n_out) % PAD)
                n_pad += max(0, min_rows - (m + n_pad))
            for j in range(n_pad):
                batch.token[m + j] = self.bos if self.bos >= 0 else 0
                batch.pos[m + j] = j
                batch.n_seq_id[m + j] = 1
                batch.seq_id[m + j][0] = self._scratch
                batch.logits[m + j] = j < n_out
            batch.n_tokens = m + n_pad
            rc = lc.llama_decode(ctx, batch)
            if n_pad:
                lc.llama_memory_seq_rm(self.mem, self._scratch, -1, -1)
            if rc != 0:
                hint = ("the KV cache is full: raise llm.n_ctx" if rc == 1
                        else "llama.cpp failed; set logging to DEBUG for its messages")
                raise BackendError(f"llama_decode returned {rc} on a batch of {m} tokens ({hint})")
            for j, i in enumerate(range(start, stop)):
                if wants[i]:
                    ptr = lc.llama_get_logits_ith(ctx, j)
                    on_logits(i, np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)))
