"""Demo corpora that pip brings: the English and Bulgarian Wikipedia excerpts and the Lee news corpus
shipped in the gensim wheel's test data (CC BY-SA / LGPL test fixtures). No network needed.

``demo:gensim-wiki`` → paragraphs (>= 200 chars) of 106 English Wikipedia articles, titled by article.
``demo:gensim-bgwiki`` → the same from a Bulgarian excerpt (used by the non-English test).
``demo:gensim-lee`` → 300 short news articles (untitled).
"""

from __future__ import annotations

import bz2
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from gecko_distill.errors import InputError
from gecko_distill.records import Passage

__all__ = ["DEMO_CORPORA", "iter_demo_corpus"]

logger = logging.getLogger(__name__)

DEMO_CORPORA = {
    "demo:gensim-wiki": "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    "demo:gensim-bgwiki": "bgwiki-latest-pages-articles-shortened.xml.bz2",
    "demo:gensim-lee": "lee_background.cor",
}


def _test_data_dir() -> Path:
    try:
        import gensim
    except ImportError as e:
        raise InputError("the demo corpora come from the gensim wheel: pip install gensim==4.4.0") from e
    return Path(gensim.__file__).parent / "test" / "test_data"


def _iter_wiki(path: Path, min_chars: int = 200) -> Iterator[Passage]:
    from gensim.corpora.wikicorpus import filter_wiki

    with bz2.open(path, "rb") as f:
        for _, elem in ET.iterparse(f):
            if not elem.tag.endswith("}page"):
                continue
            ns = elem.find("{*}ns")
            title = elem.findtext("{*}title") or ""
            text = elem.findtext("{*}revision/{*}text") or ""
            elem.clear()
            if ns is None or ns.text != "0" or text.lower().startswith("#redirect"):
                continue
            clean = filter_wiki(text)
            for j, para in enumerate(p.strip() for p in re.split(r"\n\s*\n", clean)):
                para = re.sub(r"\s+", " ", para.replace("'''", "").replace("''", ""))
                # Skip headings, lists and infobox leftovers: keep prose paragraphs only.
                if len(para) >= min_chars and not para.startswith(("=", "*", "|", "{", "!")):
                    yield Passage(id=f"{title}#{j}", title=title, text=para)


def _iter_lee(path: Path) -> Iterator[Passage]:
    with path.open(encoding="latin-1") as f:
        for i, line in enumerate(f):
            if line.strip():
                yield Passage(id=f"lee-{i}", title="", text=line.strip())


def iter_demo_corpus(name: str) -> Iterator[Passage]:
    if name not in DEMO_CORPORA:
        raise InputError(f"unknown demo corpus {name!r}; valid: {', '.join(DEMO_CORPORA)}")
    path = _test_data_dir() / DEMO_CORPORA[name]
    if not path.exists():
        raise InputError(f"demo corpus file missing: {path} (reinstall gensim==4.4.0)")
    return _iter_lee(path) if name == "demo:gensim-lee" else _iter_wiki(path)
