"""The RL run's HTML report: headline figures, prompt selection, and the per-step curves as charts.

Self-contained (charts are inline PNGs from :func:`factory.rl.curves.render_curves`), written atomically
beside ``rl_summary.json``; it is a view of the summary and holds nothing the summary lacks.
"""

from __future__ import annotations

import html

from factory.atomic import write_atomic
from factory.rl.curves import render_curves


def _row(name: str, value) -> str:
    return f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value))}</td></tr>"


def _accuracy(result: dict | None):
    if not result or result.get("pass_at_1") is None:
        return "not run"
    return (f"{result['pass_at_1']:.3f}; pass@{result['k']} {result['pass_at_k']:.3f} ({result['samples']} samples, "
            f"{result['errors']} errors; model identity {result.get('model_identity')})")


def render(summary: dict) -> str:
    """The report's HTML for an ``rl_summary.json`` dict."""
    results, selection = summary["eval"], summary["selection"]
    rows = [
        _row("checkpoint", summary["checkpoint"]), _row("identity", summary["identity"]),
        _row("steps", summary["steps"]), _row("held-out pass@1 before", _accuracy(results.get("before"))),
        _row("held-out pass@1 after", _accuracy(results.get("after"))),
        _row("pass@1 change", f"{results['delta']:+.3f}" if "delta" in results else "not run"),
        _row("completions judged", summary["judged"]),
        _row("excluded (verifier failures)", summary["excluded"]),
        _row("prompts selected", f"{selection['selected']} of {selection['seen']} (band {selection['band']})"),
        _row("prompts left out", selection["left_out"]), _row("seconds", round(summary["seconds"], 1)),
        _row("timings", summary["timings"]),
    ]
    charts = "\n".join(render_curves(summary["curves"]))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>RL run</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}th{text-align:left;padding-right:1em}"
            "</style></head><body><h1>RL run (GRPO)</h1><table>" + "".join(rows) + "</table><h2>Curves</h2>"
            + charts + "</body></html>")


def write_report(path: str, summary: dict) -> str:
    """Write the report for ``summary`` to ``path``; returns ``path``."""
    write_atomic(path, render(summary).encode())
    return path
