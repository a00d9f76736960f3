"""The report's figures, drawn with matplotlib's Agg backend and returned as PNG bytes.

Each function takes plain Python data (no run-directory knowledge) and returns ``bytes``; the renderer embeds
them in HTML as base64 and writes them next to the Markdown twin.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["bar_chart", "histograms", "line_chart", "dims_chart"]

_BASE = "#8a8a8a"
_TRAINED = "#1f6fb2"
_COLORS = ["#1f6fb2", "#d1495b", "#66a182", "#edae49", "#7d5ba6", "#00798c"]


def _figure(width: float = 6.4, height: float = 3.4) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def bar_chart(
    counts: Mapping[str, int],
    *,
    title: str,
    xlabel: str = "",
    horizontal: bool = True,
    keep_order: bool = False,
) -> bytes:
    """Counts per category, largest first (or in the given order with ``keep_order``)."""
    items = list(counts.items()) if keep_order else sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    fig, ax = _figure(6.4, max(2.2, 0.35 * len(items) + 1.0) if horizontal else 3.4)
    labels, values = [k for k, _ in items], [v for _, v in items]
    if horizontal:
        ax.barh(range(len(labels)), values[::-1], color=_TRAINED)
        ax.set_yticks(range(len(labels)), labels[::-1])
        ax.grid(axis="x", alpha=0.3)
        ax.grid(axis="y", alpha=0)
        for y, v in enumerate(values[::-1]):
            ax.text(v, y, f" {v}", va="center", fontsize=8)
    else:
        pos = list(range(len(labels)))  # numeric positions: string labels that look like numbers confuse mpl
        ax.bar(pos, values, color=_TRAINED)
        ax.set_xticks(pos, labels)
        ax.set_ylabel("count")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _png(fig)


def histograms(
    groups: Mapping[str, Sequence[float]], *, title: str, xlabel: str, bins: int | Sequence[float] = 30
) -> bytes:
    """Overlaid histograms (one per group) on shared bins."""
    import numpy as np

    fig, ax = _figure()
    values = [v for vs in groups.values() for v in vs]
    edges = np.histogram_bin_edges(values, bins=bins) if values else bins
    for (name, vs), color in zip(groups.items(), _COLORS, strict=False):
        if len(vs):
            ax.hist(
                vs, bins=edges, alpha=0.5, label=f"{name} (n={len(vs)})", color=color, density=len(groups) > 1
            )
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density" if len(groups) > 1 else "count")
    if len(groups) > 1:
        ax.legend(fontsize=8)
    return _png(fig)


def line_chart(
    xs: Sequence[float], ys: Sequence[float], *, title: str, xlabel: str, ylabel: str, smooth: int = 0
) -> bytes:
    """A curve, plus its moving average over ``smooth`` points when ``smooth > 1``."""
    fig, ax = _figure()
    ax.plot(xs, ys, color=_TRAINED, alpha=0.35 if smooth > 1 else 1.0, lw=1, label="raw")
    if smooth > 1 and len(ys) >= smooth:
        import numpy as np

        avg = np.convolve(ys, np.ones(smooth) / smooth, mode="valid")
        ax.plot(xs[smooth - 1 :], avg, color=_TRAINED, lw=2, label=f"moving average ({smooth})")
        ax.legend(fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _png(fig)


def dims_chart(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]], *, score_names: Mapping[str, str]
) -> bytes:
    """Main score ×100 vs Matryoshka dim, one panel per task; base dashed grey, trained solid blue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary)
    cols = min(3, max(1, len(tasks)))
    rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.0 * rows), dpi=110, squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for label, by_dim in summary[task].items():
            dims = sorted(int(d) for d in by_dim)
            ys = [100 * by_dim[str(d)] for d in dims]
            style = (
                {"color": _BASE, "ls": "--", "marker": "s"}
                if label == "base"
                else {"color": _TRAINED, "ls": "-", "marker": "o"}
            )
            ax.plot(dims, ys, label=label, **style)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({int(d) for m in summary[task].values() for d in m}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_title(f"{task}: {score_names.get(task, 'main score')}", fontsize=10)
        ax.set_xlabel("Matryoshka dim")
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    return _png(fig)
