"""Start ``llama_cpp.server`` (argv as for ``python -m llama_cpp.server``) with one speed fix for echoed log-probs.

llama-cpp-python 0.3.36 builds ``top_logprobs`` for every echoed prompt token by sorting the whole vocabulary as
Python tuples (``sorted(zip(logprobs_token, range(n_vocab)), reverse=True)`` in ``Llama._create_completion``):
with Gemma 3's 262,144-entry vocabulary that is ~0.8 s per prompt token on our 2-core CPU, so one QL request of
a few-shot prompt takes minutes. This launcher shadows ``sorted`` inside ``llama_cpp.llama`` only, for exactly
that call shape, with a numpy top-k that returns the same leading entries (the caller keeps only the first
``logprobs`` of them). Token ids, log-prob values, tokenisation and text offsets are llama-cpp-python's own:
what the test checks (our backend's alignment of log-probs to query tokens) is untouched.
"""

from __future__ import annotations

import builtins
import runpy
import sys
from typing import Any

import numpy as np

TOP = 20  # more than any `logprobs` our backend asks for (1)


def _sorted(iterable: Any, *, key: Any = None, reverse: bool = False) -> list[Any]:
    if key is None and reverse and type(iterable) is zip:
        try:
            values_it, range_it = iterable.__reduce__()[1]
            values = values_it.__reduce__()[1][0]
        except (TypeError, ValueError, IndexError, AttributeError):
            values = None
        if isinstance(values, np.ndarray) and values.ndim == 1 and type(range_it).__name__ == "range_iterator":
            k = min(TOP, values.shape[0])
            top = np.argpartition(-values, k - 1)[:k]
            top = top[np.argsort(-values[top], kind="stable")]
            return [(values[i], int(i)) for i in top]
    return builtins.sorted(iterable, key=key, reverse=reverse)


if __name__ == "__main__":
    import llama_cpp.llama

    llama_cpp.llama.sorted = _sorted  # type: ignore[attr-defined]
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
