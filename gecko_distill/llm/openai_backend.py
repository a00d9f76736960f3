"""OpenAI-compatible HTTP backend (vLLM server, llama.cpp server, Ollama, hosted APIs).

- ``generate`` → ``POST {base_url}/completions`` (prefix + prompt as one prompt).
- ``loglik`` → ``POST {base_url}/completions`` with ``echo=true, logprobs=1, max_tokens=1``: the server
  returns the prompt's tokens with their log-probs and text offsets; we sum those that fall inside the
  continuation. Servers that do not return prompt log-probs raise :class:`LoglikUnsupported`.

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
    from gecko_distill.config import LLMConfig

__all__ = ["OpenAIBackend"]

logger = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_MAX_WAIT_S = 30.0


class OpenAIBackend:
    """An OpenAI-compatible completions endpoint. ``transport`` lets tests inject an httpx transport."""

    def __init__(self, *, base_url: str, model: str, api_key: str | None = None, max_concurrency: int = 4,
                 timeout_s: float = 60.0, max_retries: int = 5, backoff_s: float = 0.5,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
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
        key = os.environ.get(cfg.api_key_env)
        if not key:
            logger.info("no API key in $%s: sending requests without Authorization", cfg.api_key_env)
        return cls(base_url=cfg.base_url, model=cfg.model, api_key=key, max_concurrency=cfg.max_concurrency,
                   timeout_s=cfg.timeout_s, max_retries=cfg.max_retries)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r})"

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
        raise BackendError(f"{self.base_url}{path}: gave up after {self.max_retries + 1} attempts (last: {last}). "
                           "Finished rows are kept; rerun the same command to resume once the server is healthy, "
                           "or lower llm.max_concurrency / raise llm.max_retries and llm.timeout_s.")

    def _map(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1 or self.max_concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(fn, items))

    # -- the two primitives --------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], *, prefix: str = "",
                 params: GenerationParams = GenerationParams()) -> list[str]:
        def one(p: str) -> str:
            body = {"model": self.model, "prompt": prefix + p, "max_tokens": params.max_tokens,
                    "temperature": params.temperature, "top_p": params.top_p, "seed": params.seed}
            if params.stop:
                body["stop"] = list(params.stop)[:4]  # the OpenAI API accepts at most 4 stop strings
            data = self._post("/completions", body)
            try:
                return str(data["choices"][0]["text"])
            except (KeyError, IndexError, TypeError):
                raise BackendError(f"{self.base_url}/completions: unexpected response shape "
                                   f"(keys: {sorted(data) if isinstance(data, dict) else type(data).__name__})") from None

        return self._map(one, list(prompts))

    def loglik(self, requests: Sequence[LoglikRequest], *, prefix: str = "") -> list[LoglikResult]:
        def one(req: LoglikRequest) -> LoglikResult:
            head = prefix + req.context
            full = head + req.continuation
            data = self._post("/completions", {"model": self.model, "prompt": full, "max_tokens": 1,
                                               "temperature": 0.0, "echo": True, "logprobs": 1})
            try:
                lp = data["choices"][0]["logprobs"]
                tokens, token_lps, offsets = lp["tokens"], lp["token_logprobs"], lp["text_offset"]
            except (KeyError, IndexError, TypeError):
                raise LoglikUnsupported(
                    f"{self.base_url} did not return prompt log-probs (echo + logprobs). Use a server that "
                    "supports them (vLLM, llama.cpp server) or the llamacpp/transformers/vllm backends.") from None
            total, n = 0.0, 0
            for tok, lpv, off in zip(tokens, token_lps, offsets, strict=False):
                # Tokens that start inside the continuation (and inside the prompt: echo also returns
                # the generated token after it, which we ignore).
                if len(head) <= off < len(full) and lpv is not None:
                    total += float(lpv)
                    n += 1
                del tok
            if n == 0:
                raise LoglikUnsupported(f"{self.base_url}: no prompt log-probs inside the continuation")
            return LoglikResult(total, n)

        return self._map(one, list(requests))

    def close(self) -> None:
        self._client.close()
