"""The training section of the HTML run report, from a run's ``metrics.json``.

Contract: :func:`training_section_html` returns one HTML fragment: a table of the run's figures
(steps, tokens/s, MFU, peak memory per worker, samples trained and dropped as overlong), the loss,
learning-rate and gradient-norm curves per optimizer step, and the length distribution of the
samples dropped for exceeding ``max_seq_len``. Charts are :mod:`factory.report_plots`' (self-contained
inline PNG ``<img>`` tags, matplotlib Agg, nothing written to disk); a step without a gradient norm is
left out of its curve. Only reads the dict: a missing key is a missing figure ("—"), curve or
chart, never an error (a run that took no step gets the table only). Not covered: placing the
fragment in the page (``factory.report`` does).
"""

from __future__ import annotations

import html

from factory import report_plots as plots

GIB = 2**30
STEP = "optimizer step"


def _figure(value, fmt: str, missing: str) -> str:
    return html.escape(missing if value is None else format(value, fmt))


def _figures_table(metrics: dict) -> str:
    data = metrics.get("data") or {}
    peak = metrics.get("peak_memory_bytes")
    rows = [
        ("optimizer steps", f"{metrics.get('steps', 0):,} of {metrics.get('total_steps', 0):,}"),
        ("tokens/s (all workers)", _figure(metrics.get("tokens_per_s"), ",.0f", "—")),
        ("MFU", _figure(metrics.get("mfu"), ".1%", "— (no peak FLOP/s known for this device)")),
        ("peak memory per worker", _figure(None if peak is None else peak / GIB, ".2f", "—") + (" GiB" if peak else "")),
        ("samples trained on", _figure(data.get("trained_samples"), ",d", "—")),
        (f"dropped: longer than max_seq_len ({data.get('max_seq_len', '?')})", _figure(data.get("overlong_samples"), ",d", "—")),
    ]
    cells = "".join(f"<tr><th>{html.escape(name)}</th><td class=\"num\">{value}</td></tr>" for name, value in rows)
    return f"<table>{cells}</table>"


def _overlong_chart(data: dict) -> str:
    histogram = data.get("overlong_lengths") or {}
    if not data.get("overlong_samples"):
        return f"<p>No sample was longer than max_seq_len ({data.get('max_seq_len', '?')} tokens).</p>"
    if not {"edges", "counts", "p50", "p90", "max"} <= set(histogram):
        return f"<p>{data['overlong_samples']:,} samples were dropped as longer than max_seq_len.</p>"
    edges, counts = histogram["edges"], histogram["counts"]
    labels = [f"{lo + 1:,}–{hi:,}" for lo, hi in zip(edges, edges[1:])] + [f"> {edges[-1]:,}"]
    title = (f"Dropped as too long: {data['overlong_samples']:,} samples "
             f"(tokens: median {histogram['p50']:,}, p90 {histogram['p90']:,}, max {histogram['max']:,})")
    return plots.bars(labels, counts, title, "samples")


def training_section_html(metrics: dict) -> str:
    """HTML for the report's training section (see module contract)."""
    parts = [_figures_table(metrics)]
    if metrics.get("loss_curve"):
        parts.append(plots.lines(metrics["loss_curve"], "Training loss per optimizer step", STEP, "mean token loss",
                                 log_scale=True))
    if metrics.get("lr_curve"):
        parts.append(plots.lines(metrics["lr_curve"], "Learning rate per optimizer step", STEP, "learning rate"))
    if metrics.get("grad_norm_curve"):
        parts.append(plots.lines(metrics["grad_norm_curve"], "Gradient norm (before clipping) per optimizer step", STEP,
                                 "global grad norm", log_scale=True))
    parts.append(_overlong_chart(metrics.get("data") or {}))
    return "\n".join(parts)
