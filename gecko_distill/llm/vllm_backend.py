"""The `vllm` backend (offline engine, GPU): generation, and loglik through ``prompt_logprobs``.

``loglik`` sends each full prompt as token ids (prefix, context and continuation tokenized separately, as
the other backends do) with ``SamplingParams(max_tokens=1, prompt_logprobs=1)``; vLLM returns, for every
prompt token, a dict keyed by token id that always contains the actual token's log-prob. Note: vLLM's
automatic prefix caching does not apply to prompt-logprob requests (the logprobs of cached tokens are not
recomputed), so the shared prefix is recomputed per item; on a GPU this is cheap next to the CPU path.
Tested only where a GPU and vllm exist (``tests/integration/test_vllm.py`` skips otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gecko_distill.errors import BackendUnavailable
from gecko_distill.llm.base import ChatTemplate, GenerationParams, LoglikRequest, LoglikResult, hf_chat_template

if TYPE_CHECKING:
    from gecko_distill.stage_configs import LLMConfig

__all__ = ["VLLMBackend"]


class VLLMBackend:
    """vLLM's offline engine (``vllm.LLM``); build it with :meth:`from_config` or pass your own ``LLM``."""

    def __init__(self, llm: Any, *, name: str, prompt_style: str = "completion") -> None:
        self.llm = llm
        self.prompt_style = prompt_style  # the tokenizer parses control tokens written as text
        self.name = name + (":chat" if prompt_style == "chat" else "")
        self.tokenizer = llm.get_tokenizer()

    @classmethod
    def from_config(cls, cfg: LLMConfig) -> VLLMBackend:
        try:
            from vllm import LLM
        except ImportError as e:
            raise BackendUnavailable('the vllm backend needs a CUDA machine and: pip install vllm') from e
        from gecko_distill.llm.model_files import resolve_model_source

        src = resolve_model_source(cfg.model, cfg.model_file)
        model = str(src.path) if src.path is not None else str(src.repo)
        kw: dict[str, Any] = {"seed": cfg.seed, "max_model_len": cfg.n_ctx}
        if cfg.trust_remote_code:  # only when asked: it runs code from the model repo
            kw["trust_remote_code"] = True
        name = f"vllm:{model}"
        if src.kind == "gguf" and src.path is not None:
            # vLLM reads a single-file GGUF (newer releases through the vllm-gguf-plugin) and converts its
            # tokenizer; a folder with model_file set is passed as the file itself.
            from gecko_distill.llm.model_files import file_identity

            name = f"vllm:{file_identity(src.path)}"
        if src.kind == "hub" and src.filename and src.filename.endswith(".gguf"):
            from gecko_distill.llm.model_files import download_gguf, file_identity

            path = download_gguf(str(src.repo), src.filename)
            model, name = str(path), f"vllm:{file_identity(path)}"
        try:
            llm = LLM(model=model, **kw)
        except Exception as e:  # noqa: BLE001 - vLLM raises many types; all mean "cannot load here"
            raise BackendUnavailable(f"vLLM could not load {model!r} ({type(e).__name__}: {e}); it needs a "
                                     "CUDA GPU; GGUF files need a recent vLLM with the vllm-gguf-plugin") from e
        return cls(llm, name=name, prompt_style=cfg.prompt_style)

    @property
    def fingerprint(self) -> str:
        return self.name

    @property
    def chat_template(self) -> ChatTemplate | None:
        """The tokenizer's chat template (for ``llm.prompt_style = "chat"``), or None."""
        return hf_chat_template(self.tokenizer)

    def generate(self, prompts: Sequence[str], *, prefix: str = "",
                 params: GenerationParams = GenerationParams()) -> list[str]:
        from vllm import SamplingParams

        sp = SamplingParams(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                            stop=list(params.stop) or None, seed=params.seed)
        outs = self.llm.generate([prefix + p for p in prompts], sp, use_tqdm=False)
        return [o.outputs[0].text for o in outs]

    def loglik(self, requests: Sequence[LoglikRequest], *, prefix: str = "") -> list[LoglikResult]:
        from vllm import SamplingParams, TokensPrompt

        tok = self.tokenizer
        prompts, spans = [], []
        for r in requests:
            # Tokenize the parts separately (as the other backends do): the continuation's tokens are exact.
            head = tok.encode(prefix, add_special_tokens=True) + (
                tok.encode(r.context, add_special_tokens=False) if r.context else [])
            if not head:  # something must condition the first scored token
                head = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
            cont = tok.encode(r.continuation, add_special_tokens=False) if r.continuation else []
            prompts.append(TokensPrompt(prompt_token_ids=head + cont))
            spans.append((len(head), cont))
        # Prompt-logprob requests bypass vLLM's prefix cache, so the prefix is recomputed for each item.
        outs = self.llm.generate(prompts, SamplingParams(max_tokens=1, prompt_logprobs=1), use_tqdm=False)
        results = []
        for o, (start, cont) in zip(outs, spans, strict=True):
            lps = o.prompt_logprobs  # one entry per prompt token; None for the first
            total = sum(lps[start + k][tid].logprob for k, tid in enumerate(cont))
            results.append(LoglikResult(float(total), len(cont)))
        return results
