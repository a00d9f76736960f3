"""Stages 2-4 (Gecko §3.2): neighbours → LLM relabelling → FRet rows.

The stage driver lives in :mod:`.stage` (``mine``); it calls :mod:`gecko_distill.retrieval` for the
neighbours and :mod:`gecko_distill.labelling` for the LLM scores and their fusion, and :mod:`.selection`
picks the positive and the hard negative.
"""

from __future__ import annotations

from gecko_distill.mining.stage import MiningResult, fret_row, load_fret, mine

__all__ = ["MiningResult", "fret_row", "load_fret", "mine"]
