"""OpenAI-compatible HTTP backend (vLLM server, llama.cpp server, Ollama, hosted APIs).

- ``generate`` → ``POST {base_url}/completions`` (prefix + prompt as one prompt), or, with
  ``chat=True``, ``POST {base_url}/chat/completions`` (prefix as the system message, prompt as the user's).
- ``loglik`` → ``POST {base_url}/completions`` with ``echo=true, logprobs=1, max_tokens=1``: the server
  returns the prompt's tokens with their log-probs and text offsets; we sum those that fall inside the
  continuation. vLLM servers also get ``prompt_logprobs=1`` and answer with per-token dicts, which are used
  when the echo fields are missing. Servers that return neither raise :class:`LoglikUnsupported`. Chat
  endpoints cannot score a given continuation, so loglik always uses ``/completions``.

Failure handling: 429, 5xx, timeouts, dropped connections and malformed JSON are retried with exponential
backoff and jitter, capped at ``max_retries`` attempts and 30 s per wait; ``Retry-After`` is honoured.
Requests run with at most ``max_concurrency`` in flight. The API key is read from the environment variable
named by ``api_key_env`` and never appears in logs, errors, fingerprints or files.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from gecko_distill.errors import BackendError, LoglikUnsupported
from gecko_distill.llm.base import GenerationParams, LoglikRequest, LoglikResult

if TYPE_CHECKING:
    from gecko_distill.stage_configs import LLMConfig

__all__ = ["OpenAIBackend"]

logger = logging.getLogger(__name__)

#: What to do when a server cannot score (QL/RC need the log-probs of given text, not of generated text).
_LOGLIK_HINT = ("Scoring needs a completions endpoint that returns prompt log-probs: vLLM's `vllm serve MODEL` "
                "(prompt_logprobs) or llama-cpp-python's `python -m llama_cpp.server` (echo + logprobs); "
                "chat-only and most hosted APIs cannot. Or score with the llamacpp, transformers or vllm "
                "backends (docs/openai-server.md).")

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_MAX_WAIT_S = 30.0


class OpenAIBackend:
    """An OpenAI-compatible completions endpoint. ``transport`` lets tests inject an httpx transport."""

    def __init__(self, *, base_url: str, model: str, api_key: str | None = None, max_concurrency: int = 4,
                 timeout_s: float = 60.0, max_retries: int = 5, backoff_s: float = 0.5, chat: bool = False,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.chat = chat
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._secret = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s,
                                    transport=transport,
                                    limits=httpx.Limits(max_connections=max_concurrency))

    @classmethod
    def from_config(cls, cfg: LLMConfig) -> OpenAIBackend:
        if not cfg.base_url:
            from gecko_distill.errors import ConfigError

            raise ConfigError("llm.backend = 'openai' needs llm.base_url (e.g. http://127.0.0.1:8000/v1)")
        if cfg.prompt_style == "chat":
            from gecko_distill.errors import ConfigError

            raise ConfigError("llm.prompt_style = 'chat' is not supported by the openai backend (it sends completion "
                              "prompts and cannot see the server's chat template); use 'completion', or serve the "
                              "model's GGUF through llm.backend = 'llamacpp'")
        key = os.environ.get(cfg.api_key_env)
        if not key:
            logger.info("no API key in $%s: sending requests without Authorization", cfg.api_key_env)
        return cls(base_url=cfg.base_url, model=cfg.model, api_key=key, max_concurrency=cfg.max_concurrency,
                   timeout_s=cfg.timeout_s, max_retries=cfg.max_retries)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, chat={self.chat})"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("OpenAIBackend is not picklable (it holds a connection pool and an API key); "
                        "build one per worker with OpenAIBackend.from_config")

    @property
    def fingerprint(self) -> str:
        return f"openai:{self.base_url}:{self.model}"

    # -- transport with retries ---------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = min(_MAX_WAIT_S, self.backoff_s * 2**attempt) * (0.5 + random.random() / 2)
            try:
                r = self._client.post(path, json=body)
                if r.status_code in _RETRY_STATUS:
                    last = f"HTTP {r.status_code}"
                    ra = r.headers.get("Retry-After")
                    if ra is not None:
                        try:
                            wait = min(_MAX_WAIT_S, max(0.0, float(ra)))
                        except ValueError:
                            pass
                elif r.status_code >= 400:
                    raise BackendError(
                        f"{self.base_url}{path}: HTTP {r.status_code}: {self._redact(r.text[:300])}. Check "
                        "llm.model, llm.base_url and the API key variable; this error is not retried.")
                else:
                    try:
                        return r.json()
                    except json.JSONDecodeError:
                        last = "malformed JSON in the response"
            except httpx.TimeoutException:
                last = "timeout"
            except httpx.TransportError as e:
                last = f"connection error ({type(e).__name__})"
            if attempt < self.max_retries:
                logger.warning("%s%s: %s; retry %d/%d in %.1f s", self.base_url, path, last, attempt + 1,
                               self.max_retries, wait)
                time.sleep(wait)
        raise BackendError(f"{self.base_url}{path}: gave up after {self.max_retries + 1} attempts (last: "
                           f"{last}). Finished rows are kept; rerun the same command to resume once the server "
                           "is healthy, or lower llm.max_concurrency / raise llm.max_retries and llm.timeout_s.")

    def _map(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1 or self.max_concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(fn, items))

    # -- the two primitives --------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], *, prefix: str = "",
                 params: GenerationParams = GenerationParams()) -> list[str]:
        def one(p: str) -> str:
            body: dict[str, Any] = {"model": self.model, "max_tokens": params.max_tokens, "seed": params.seed,
                                    "temperature": params.temperature, "top_p": params.top_p}
            if params.stop:
                body["stop"] = list(params.stop)[:4]  # the OpenAI API accepts at most 4 stop strings
            if self.chat:
                system = [{"role": "system", "content": prefix}] if prefix else []
                path, body["messages"] = "/chat/completions", [*system, {"role": "user", "content": p}]
            else:
                path, body["prompt"] = "/completions", prefix + p
            data = self._post(path, body)
            try:
                choice = data["choices"][0]
                text = str(choice["message"]["content"] if self.chat else choice["text"])
            except (KeyError, IndexError, TypeError):
                shape = sorted(data) if isinstance(data, dict) else type(data).__name__
                raise BackendError(f"{self.base_url}{path}: unexpected response shape (keys: {shape})") from None
            cut = min((text.find(x) for x in params.stop if x and x in text), default=-1)  # also stops 5+
            return text[:cut] if cut >= 0 else text

        return self._map(one, list(prompts))

    def loglik(self, requests: Sequence[LoglikRequest], *, prefix: str = "") -> list[LoglikResult]:
        def one(req: LoglikRequest) -> LoglikResult:
            head = prefix + req.context
            full = head + req.continuation
            try:
                data = self._post("/completions", {"model": self.model, "prompt": full, "max_tokens": 1,
                                                   "temperature": 0.0, "echo": True, "logprobs": 1,
                                                   "prompt_logprobs": 1})
            except BackendError as e:  # hosted APIs reject echo/logprobs on completions with a 400 or 422
                if "HTTP 400" in str(e) or "HTTP 422" in str(e):
                    raise LoglikUnsupported(f"{self.base_url} refused a prompt log-prob request: {e}. "
                                            f"{_LOGLIK_HINT}") from None
                raise
            tokens = _prompt_token_logprobs(data, len(full))
            if tokens is None:
                raise LoglikUnsupported(
                    f"{self.base_url} did not return prompt log-probs (neither echo + logprobs nor "
                    f"prompt_logprobs in its /completions answer). {_LOGLIK_HINT}")
            total, n = 0.0, 0
            for off, lpv in tokens:
                # Tokens that start inside the continuation (and inside the prompt: echo also returns
                # the generated token after it, which we ignore).
                if len(head) <= off < len(full) and lpv is not None:
                    total += float(lpv)
                    n += 1
            if n == 0:
                raise LoglikUnsupported(f"{self.base_url}: no prompt log-probs inside the continuation")
            return LoglikResult(total, n)

        return self._map(one, list(requests))

    def close(self) -> None:
        self._client.close()


def _prompt_token_logprobs(data: Any, prompt_len: int) -> list[tuple[int, float | None]] | None:
    """``[(text offset, log-prob)]`` of the echoed prompt tokens, from either response shape, or None.

    OpenAI-style echo: ``choices[0].logprobs.{token_logprobs, text_offset}``. vLLM's ``prompt_logprobs``:
    one ``{token_id: {logprob, rank, decoded_token}}`` per prompt token (``None`` for the first). With
    ``prompt_logprobs=1`` a dict holds the prompt token and, when that was not the argmax, the top-1 (rank
    1) too. Offsets are rebuilt backwards from the end of the prompt with the decoded tokens' lengths, so
    an unknown first token (or a BOS) does not shift the continuation.
    """
    try:
        choice = data["choices"][0]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(choice, dict):
        return None
    lp = choice.get("logprobs")
    if isinstance(lp, dict) and all(isinstance(lp.get(k), list) for k in ("token_logprobs", "text_offset")):
        return list(zip(lp["text_offset"], lp["token_logprobs"], strict=False))
    plp = choice.get("prompt_logprobs")
    if not isinstance(plp, list) or not plp:
        return None
    out: list[tuple[int, float | None]] = []
    end = prompt_len
    try:
        for entry in reversed(plp):
            if not entry:
                out.append((max(end - 1, 0), None))
                continue
            cands = list(entry.values())
            actual = cands[0] if len(cands) == 1 else next(c for c in cands if c.get("rank") != 1)
            end -= len(actual.get("decoded_token") or "")
            out.append((end, float(actual["logprob"])))
    except (AttributeError, KeyError, TypeError, ValueError, StopIteration):
        return None
    return out[::-1]
