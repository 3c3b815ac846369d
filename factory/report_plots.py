"""Charts for the HTML run report, rendered headless (matplotlib Agg) into inline ``<img>`` tags.

Contract: every function returns one self-contained ``<img src="data:image/png;base64,...">`` string
(nothing is written to disk, no network access) with an ``alt`` text naming the chart. Callers pass
plain Python lists; empty inputs are the caller's job (the report shows "not run" instead of a chart).
Charts: overlaid :func:`histogram`, :func:`bars`, :func:`intervals` (points with error bars: the ablation's
per-policy accuracies and differences) and :func:`lines` (a per-step curve, shared by the
training and RL sections).
matplotlib is imported inside the functions so ``import factory.report`` stays light.
"""

from __future__ import annotations

import base64
import html
import io

COLORS = {"kept": "#2b7bba", "dropped": "#d95f02"}
FALLBACK_COLORS = ["#2b7bba", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _to_img(fig, alt: str) -> str:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="chart" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def histogram(series: dict[str, list[float]], title: str, xlabel: str, bins: int = 30,
              value_range: tuple[float, float] | None = None, ylabel: str = "rows") -> str:
    """Overlaid histograms, one per named series (e.g. kept vs dropped), on shared bins."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    values = [v for vs in series.values() for v in vs]
    low, high = value_range or (min(values), max(values))
    if low == high:
        low, high = low - 0.5, high + 0.5
    for i, (name, vs) in enumerate(series.items()):
        if vs:
            color = COLORS.get(name, FALLBACK_COLORS[i % len(FALLBACK_COLORS)])
            ax.hist(vs, bins=bins, range=(low, high), alpha=0.6, label=f"{name} (n={len(vs)})", color=color)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize=8)
    return _to_img(fig, title)


def bars(labels: list[str], values: list[float], title: str, xlabel: str, horizontal: bool = True) -> str:
    """One bar per label; horizontal by default so long labels (stage:reason) stay readable.
    ``xlabel`` names the value axis in both orientations."""
    plt = _pyplot()
    height = max(2.4, 0.35 * len(labels) + 1.2) if horizontal else 3.2
    fig, ax = plt.subplots(figsize=(7, height))
    if horizontal:
        ax.barh(range(len(labels)), values, color=FALLBACK_COLORS[0])
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
    else:
        ax.bar(range(len(labels)), values, color=FALLBACK_COLORS[0])
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylabel(xlabel)
    ax.set_title(title)
    return _to_img(fig, title)



def lines(values: list[float | None], title: str, xlabel: str, ylabel: str, x: list[float] | None = None,
          log_scale: bool = False) -> str:
    """One line over ``x`` (default 1, 2, ...: a per-step curve); a None value (a step that logged
    nothing) is left out. ``log_scale`` applies when every value drawn is positive."""
    plt = _pyplot()
    points = [(at, v) for at, v in zip(x or range(1, len(values) + 1), values, strict=True) if v is not None]
    fig, ax = plt.subplots(figsize=(7, 3.0))
    ax.plot([at for at, _ in points], [v for _, v in points], color=FALLBACK_COLORS[0], linewidth=1.2)
    if log_scale and points and min(v for _, v in points) > 0:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return _to_img(fig, title)


def intervals(labels: list[str], means: list[float], lows: list[float], highs: list[float], title: str,
              xlabel: str, reference: float | None = None) -> str:
    """One point per label with its interval as a horizontal error bar (a forest plot, top to bottom in
    label order); ``reference`` draws a dashed vertical line (e.g. 0 for differences, or a baseline)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, max(2.4, 0.45 * len(labels) + 1.2)))
    rows = list(range(len(labels)))
    errors = [[m - lo for m, lo in zip(means, lows)], [hi - m for m, hi in zip(means, highs)]]
    ax.errorbar(means, rows, xerr=errors, fmt="o", color=FALLBACK_COLORS[0], ecolor=FALLBACK_COLORS[0], capsize=4)
    if reference is not None:
        ax.axvline(reference, color=FALLBACK_COLORS[1], linestyle="--", linewidth=1)
    ax.set_yticks(rows, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return _to_img(fig, title)
