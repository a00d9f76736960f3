"""Unicode-safe text normalisation and length handling (no English assumptions).

- NFC normalisation so that the same text typed two ways dedups and hashes the same.
- Control characters removed (they break tokenizers and JSON consumers), whitespace collapsed.
- Lengths are counted in Unicode code points (``len(str)``), never bytes; word cuts use whitespace and
  fall back to characters for scripts written without spaces (Chinese, Japanese, Thai).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["dedup_key", "normalize_text", "truncate_words"]

_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    # Drop C0/C1 controls and other "Cc"/"Cs" code points except whitespace, which is collapsed below.
    text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cs", "Co"))
    return _WS.sub(" ", text).strip()


def dedup_key(text: str) -> str:
    """Key for exact-duplicate removal: normalised and case-folded."""
    return normalize_text(text).casefold()


def truncate_words(text: str, max_words: int) -> str:
    """Cut ``text`` to ``max_words`` whitespace words; unspaced scripts are cut at ~3 chars per word."""
    words = text.split()
    if len(words) > max_words:
        return " ".join(words[:max_words])
    if len(words) <= 2 and len(text) > max_words * 3:  # e.g. CJK without spaces
        return text[: max_words * 3]
    return text
