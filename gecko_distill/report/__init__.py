"""The run report: data quality (task mix, query lengths, rejects, relabelling, LLM score histograms),
training loss and evaluation (base vs trained, score vs Matryoshka dim), as self-contained HTML and a
Markdown twin.

>>> from gecko_distill.report import build_report
>>> rep = build_report("runs/demo")  # doctest: +SKIP
>>> rep.html_path  # runs/demo/report.html  # doctest: +SKIP

Modules: :mod:`.build` (``build_report``), :mod:`.collect` (read a run directory), :mod:`.plots` (matplotlib
figures as PNG bytes), :mod:`.render` (sections → Markdown / HTML).
"""

from __future__ import annotations

from gecko_distill.report.build import Report, build_report

__all__ = ["Report", "build_report"]
