"""Turn a :class:`~.collect.RunData` into report sections, then into Markdown and self-contained HTML.

Sections are built once as plain blocks (text, table, figure) so the two formats always say the same thing.
HTML embeds figures as base64 PNG data URIs (one file, no network); Markdown links the same PNGs written to
``report_files/`` beside it.
"""

from __future__ import annotations

import base64
import html
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gecko_distill.report import plots

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gecko_distill.report.collect import RunData

__all__ = ["Figure", "Section", "Table", "build_sections", "to_html", "to_markdown"]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    name: str  # file stem in report_files/
    png: bytes
    caption: str


@dataclass
class Section:
    title: str
    blocks: list[str | Table | Figure] = field(default_factory=list)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _stats_line(xs: Sequence[float], unit: str) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
    return (
        f"n = {len(xs)}; mean {statistics.fmean(xs):.1f} {unit}, median {statistics.median(xs):.0f}, "
        f"90th percentile {p90:.0f}, min {xs[0]:.0f}, max {xs[-1]:.0f}"
    )


def _short(text: Any, n: int = 90) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


# ------------------------------------------------------------------------------------------------ sections
def _overview(run: RunData) -> Section:
    sec = Section("Overview")
    rows = [["run directory", str(run.run_dir)]]
    gs, fs = run.generation_summary or {}, run.fret_summary or {}
    if run.generation is not None:
        rows.append(
            [
                "generation rows in / out",
                f"{gs.get('rows_in', '?')} / {gs.get('rows_out', len(run.generation))}",
            ]
        )
    if run.fret is not None:
        rows.append(["FRet rows", str(fs.get("rows_out", len(run.fret)))])
        rows.append(["positive moved off the seed", _pct(_moved_rate(run))])
    if run.train_log:
        rows.append(
            ["training steps logged / last loss", f"{len(run.train_log)} / {run.train_log[-1]['loss']:.4f}"]
        )
    if run.eval_summary:
        rows.append(["evaluated tasks", ", ".join(run.eval_summary)])
    sec.blocks.append(Table(["what", "value"], rows))
    if run.missing:
        sec.blocks.append("Not in this run (sections skipped): " + "; ".join(run.missing) + ".")
    for note in run.notes:
        sec.blocks.append(f"Note: {note}.")
    return sec


def _generation(run: RunData) -> Section | None:
    if run.generation is None:
        return None
    rows = run.generation
    sec = Section("Generation: tasks and queries")
    types = Counter(str(r.get("task_type")) for r in rows)
    if types:
        sec.blocks.append(
            Figure(
                "task_mix",
                plots.bar_chart(types, title="Task mix (accepted rows)", xlabel="rows"),
                "Task types of the accepted rows.",
            )
        )
    tasks = Counter(_short(r.get("task"), 70) for r in rows if r.get("task"))
    if tasks:
        top = tasks.most_common(10)
        sec.blocks.append(f"{len(tasks)} distinct task strings; the most frequent:")
        sec.blocks.append(Table(["task string", "rows"], [[t, str(c)] for t, c in top]))
    lengths = [len(str(r.get("query") or "").split()) for r in rows if r.get("query")]
    if lengths:
        sec.blocks.append("Query length (words): " + _stats_line(lengths, "words") + ".")
        bins = list(range(min(lengths), max(lengths) + 2))  # one bar per word count
        sec.blocks.append(
            Figure(
                "query_lengths",
                plots.histograms({"queries": lengths}, title="Query length", xlabel="words", bins=bins),
                "Words per generated query.",
            )
        )
    rejects = {k: v for k, v in (run.generation_summary or {}).get("rejects", {}).items() if v}
    if run.generation_summary is None:
        sec.blocks.append("Reject reasons: unknown (no generation manifest).")
    elif rejects:
        n_in = run.generation_summary.get("rows_in") or sum(rejects.values()) + len(rows)
        sec.blocks.append(
            Table(
                ["reject reason", "rows", "share of generated"],
                [
                    [k, str(v), _pct(v / max(n_in, 1))]
                    for k, v in sorted(rejects.items(), key=lambda kv: -kv[1])
                ],
            )
        )
        sec.blocks.append(
            Figure(
                "rejects",
                plots.bar_chart(rejects, title="Reject reasons", xlabel="rows"),
                "Why generated (task, query) pairs were rejected.",
            )
        )
    else:
        sec.blocks.append("Reject reasons: none (every generated row was accepted).")
    sample = rows[:: max(1, len(rows) // 5)][:5]
    sec.blocks.append(
        Table(
            ["task type", "task", "query"],
            [[str(r.get("task_type")), _short(r.get("task"), 50), _short(r.get("query"))] for r in sample],
        )
    )
    return sec


def _moved_rate(run: RunData) -> float:
    if run.fret_summary and "positive_moved_rate" in run.fret_summary:
        return float(run.fret_summary["positive_moved_rate"])
    rows = run.fret or []
    return sum(bool(r.get("positive_moved")) for r in rows) / max(len(rows), 1)


def _fret(run: RunData) -> Section | None:
    if run.fret is None:
        return None
    rows = run.fret
    sec = Section("Mining: LLM relabelling")
    moved = sum(bool(r.get("positive_moved")) for r in rows)
    sec.blocks.append(
        f"Positive moved off the seed passage: {moved} of {len(rows)} rows ({_pct(_moved_rate(run))}); "
        "the paper reports about 15% for FRet."
    )
    seed_ranks = Counter(
        int(r["ranks"]["seed_fused"])
        for r in rows
        if isinstance(r.get("ranks"), dict) and "seed_fused" in r["ranks"]
    )
    if seed_ranks:
        ranks = {str(k): seed_ranks.get(k, 0) for k in range(1, max(seed_ranks) + 1)}
        sec.blocks.append(
            Figure(
                "seed_rank",
                plots.bar_chart(
                    ranks,
                    title="Fused rank of the seed passage",
                    xlabel="rank (1 = chosen as positive)",
                    horizontal=False,
                    keep_order=True,
                ),
                "Where the passage that generated the query ends up after fusion.",
            )
        )
    for name, label in (("ql", "Query likelihood (QL)"), ("rc", "Relevance classification (RC)")):
        groups: dict[str, list[float]] = {}
        pos = [r["scores"][name] for r in rows if isinstance(r.get("scores"), dict) and name in r["scores"]]
        neg = [
            r["negative_scores"][name]
            for r in rows
            if isinstance(r.get("negative_scores"), dict) and name in r["negative_scores"]
        ]
        cand = [
            c[name] for r in rows for c in (r.get("candidates") or []) if isinstance(c, dict) and name in c
        ]
        if cand:
            groups["all candidates"] = cand
        if pos:
            groups["positive"] = pos
        if neg:
            groups["hard negative"] = neg
        if groups:
            sec.blocks.append(
                Figure(
                    f"{name}_scores",
                    plots.histograms(groups, title=f"{label} scores", xlabel="score (as mined)"),
                    f"{label}: the chosen positives, hard negatives and every candidate.",
                )
            )
    sample = rows[:: max(1, len(rows) // 5)][:5]
    sec.blocks.append(
        Table(
            ["query", "positive", "moved", "hard negative"],
            [
                [
                    _short(r.get("query"), 70),
                    _short(r.get("positive_title") or r.get("positive_id"), 40),
                    "yes" if r.get("positive_moved") else "no",
                    _short(r.get("negative_title") or r.get("negative_id"), 40),
                ]
                for r in sample
            ],
        )
    )
    return sec


def _training(run: RunData) -> Section | None:
    if not run.train_log:
        return None
    log = run.train_log
    sec = Section("Training")
    steps = [float(r.get("step", i)) for i, r in enumerate(log)]
    losses = [float(r["loss"]) for r in log]
    sec.blocks.append(
        f"{len(log)} logged steps; loss {losses[0]:.4f} at step {steps[0]:.0f} → {losses[-1]:.4f} "
        f"at step {steps[-1]:.0f} (min {min(losses):.4f})."
    )
    sec.blocks.append(
        Figure(
            "loss",
            plots.line_chart(
                steps,
                losses,
                title="Training loss",
                xlabel="step",
                ylabel="loss",
                smooth=max(1, len(log) // 20),
            ),
            "Training loss per logged step.",
        )
    )
    return sec


def _evaluation(run: RunData) -> Section | None:
    if not run.eval_summary:
        return None
    summ = run.eval_summary
    sec = Section("Evaluation: base vs trained")
    names: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for r in run.eval_records or []:
        names[r["task"]] = r["main_score_name"]
        kinds[r["task"]] = r["kind"]
    sec.blocks.append("Main scores ×100 (MTEB's main score per task kind), at every Matryoshka dim.")
    labels = sorted({m for by_model in summ.values() for m in by_model}, key=lambda m: (m != "base", m))
    both = {"base", "trained"} <= set(labels)
    rows = []
    for task, by_model in summ.items():
        dims = sorted({int(d) for m in by_model.values() for d in m}, reverse=True)
        for d in dims:
            vals = [by_model.get(m, {}).get(str(d)) for m in labels]
            row = [task, names.get(task, ""), str(d), *("" if v is None else f"{100 * v:.2f}" for v in vals)]
            if both:
                b, t = by_model.get("base", {}).get(str(d)), by_model.get("trained", {}).get(str(d))
                row.append(f"{100 * (t - b):+.2f}" if b is not None and t is not None else "")
            rows.append(row)
    sec.blocks.append(Table(["task", "metric", "dim", *labels, *(["Δ"] if both else [])], rows))
    sec.blocks.append(
        Figure(
            "dims",
            plots.dims_chart(summ, score_names=names),
            "Main score vs Matryoshka dim (nDCG@10 for retrieval): base dashed, trained solid.",
        )
    )
    retr = [r for r in run.eval_records or [] if r["kind"] == "retrieval"]
    if retr:
        full = {}
        for r in retr:
            key = (r["task"], r["model"])
            if key not in full or r["dim"] > full[key]["dim"]:
                full[key] = r
        keys = ["ndcg_at_10", "recall_at_10", "recall_at_100", "mrr_at_10"]
        sec.blocks.append("Retrieval details at each model's full dim:")
        sec.blocks.append(
            Table(
                ["task", "model", "dim", *keys],
                [
                    [
                        r["task"],
                        r["model"],
                        str(r["dim"]),
                        *(f"{100 * r['metrics'][k]:.2f}" if k in r["metrics"] else "" for k in keys),
                    ]
                    for r in full.values()
                ],
            )
        )
    notes = sorted({n for s in (run.eval_manifest or {}).get("sets", []) for n in s.get("notes", [])})
    if notes:
        sec.blocks.append(
            "Subsets were used, so these numbers are not comparable with published MTEB results: "
            + "; ".join(notes)
            + "."
        )
    return sec


def build_sections(run: RunData) -> list[Section]:
    """All sections that the run's data supports, in pipeline order."""
    parts = [_overview(run), _generation(run), _fret(run), _training(run), _evaluation(run)]
    return [s for s in parts if s is not None]


# ------------------------------------------------------------------------------------------------ formats
def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(sections: list[Section], *, title: str, files_dir: str = "report_files") -> str:
    out = [f"# {title}", ""]
    for sec in sections:
        out += [f"## {sec.title}", ""]
        for b in sec.blocks:
            if isinstance(b, Table):
                out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
                out.append("|" + "---|" * len(b.headers))
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            elif isinstance(b, Figure):
                out.append(f"![{b.caption}]({files_dir}/{b.name}.png)")
            else:
                out.append(b)
            out.append("")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1080px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #1f6fb2;padding-bottom:.3em}h2{margin-top:2em;color:#1f6fb2}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left}
th{background:#f3f6fa}tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#666;font-size:.85em}
nav a{margin-right:1em}
"""


def to_html(sections: list[Section], *, title: str) -> str:
    def anchor(t: str) -> str:
        return "".join(c if c.isalnum() else "-" for c in t.lower())

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<nav>"
        + "".join(f'<a href="#{anchor(s.title)}">{html.escape(s.title)}</a>' for s in sections)
        + "</nav>",
    ]
    for sec in sections:
        parts.append(f'<h2 id="{anchor(sec.title)}">{html.escape(sec.title)}</h2>')
        for b in sec.blocks:
            if isinstance(b, Table):
                head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in b.rows
                )
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(b, Figure):
                data = base64.b64encode(b.png).decode("ascii")
                parts.append(
                    f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(b.caption)}</figcaption></figure>"
                )
            else:
                parts.append(f"<p>{html.escape(b)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
