"""``build_report``: collect a run directory, render its sections, write ``report.html`` and ``report.md``.

The collectors (:mod:`.collect`) and the renderer (:mod:`.render`, which imports matplotlib) load on first
use, so that the CLI starts fast.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from gecko_distill.artifacts import atomic_write_bytes, atomic_write_text

__all__ = ["Report", "build_report"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """Where the report went, which sections it has and which inputs were missing."""

    html_path: Path
    md_path: Path
    sections: list[str]
    missing: list[str] = field(default_factory=list)


def build_report(run_dir: str | Path, *, title: str | None = None) -> Report:
    """Write ``run_dir/report.html`` (self-contained) and ``run_dir/report.md`` (+ ``report_files/*.png``).

    Every input is optional; absent ones are listed in the report and in :attr:`Report.missing`.
    """
    from gecko_distill.report.collect import collect_run
    from gecko_distill.report.render import Figure, build_sections, to_html, to_markdown

    root = Path(run_dir)
    run = collect_run(root)
    sections = build_sections(run)
    title = title or f"gecko-distill run report: {root.resolve().name}"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    sections[0].blocks.insert(0, f"Generated {stamp}.")
    files = root / "report_files"
    for sec in sections:
        for b in sec.blocks:
            if isinstance(b, Figure):
                atomic_write_bytes(files / f"{b.name}.png", b.png)
    html_path, md_path = root / "report.html", root / "report.md"
    atomic_write_text(html_path, to_html(sections, title=title))
    atomic_write_text(md_path, to_markdown(sections, title=title))
    logger.info(
        "report written: %s (%d sections; missing: %s)", html_path, len(sections), run.missing or "nothing"
    )
    return Report(
        html_path=html_path, md_path=md_path, sections=[s.title for s in sections], missing=run.missing
    )
