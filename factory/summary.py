"""What ``factory run`` / ``factory refresh`` print at the end: aligned tables of the pipeline's stages
(rows in → out, drops, seconds), the evaluation (problems, accuracy, cost), where the outputs are, and
a last line of one-line JSON (:meth:`factory.flow.RunSummary.headline`).

Contract: plain text, fixed-width columns, no line over 120 characters; every figure comes from the
run summary (nothing is recomputed here). The eval table is rendered from
:mod:`factory.eval_fields`, like the HTML report's.
"""

from __future__ import annotations

import json

from factory.eval_fields import BY_KEY, MODEL_LABELS, format_value, model_rows, present_models, ratio_rows


def table(header: list[str], rows: list[list], right: set[int] | None = None) -> list[str]:
    """Lines of an aligned text table; columns in ``right`` (default: all but the first) are right-aligned."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    right = set(range(1, len(header))) if right is None else right

    def line(row: list[str]) -> str:
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))

    return [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(row) for row in cells[1:]]


def stage_rows(stages: list[dict]) -> list[list]:
    """One row per pipeline stage: name, rows in, rows out, kept, dropped, seconds (busy)."""
    rows = []
    for stage in stages:
        dropped = sum((stage.get("drops") or {}).values())
        kept = stage.get("kept_out", stage.get("rows_out", ""))
        seconds = stage.get("busy_s")
        rows.append([stage["name"], stage.get("rows_in", ""), stage.get("rows_out", ""), kept, dropped or "",
                     "" if seconds is None else f"{seconds:.1f}"])
    return rows


def eval_lines(results: dict) -> list[str]:
    """The eval table (one row per model), per-set accuracy when there are several sets, the
    student/teacher ratios, and which results were reused from an earlier identical evaluation."""
    header, rows = model_rows(results, summary_only=True)
    lines = table(header, rows)
    per_set = [[MODEL_LABELS[m], source, scores.get("problems"), format_value(BY_KEY["accuracy"], scores.get("accuracy"))]
               for m in present_models(results) for source, scores in (results[m].get("by_source") or {}).items()]
    if len({row[1] for row in per_set}) > 1:
        lines += [""] + table(["model", "held-out set", "problems", "accuracy"], per_set, right={2, 3})
    comparison = results.get("student_vs_teacher")
    ratios = ratio_rows(comparison)
    if ratios:
        lines.append(f"{MODEL_LABELS[comparison['student']]} / teacher: "
                     + ", ".join(f"{label} {value}" for label, value in ratios))
    if comparison and not comparison.get("costs_comparable", True):
        lines.append("(speed and memory not compared: a result was reused from an earlier run)")
    lines += [f"{MODEL_LABELS[m]}: reused the identical evaluation measured {results[m].get('measured_at')}"
              for m in present_models(results) if results[m].get("reused_from")]
    return lines


def render(summary, log_path: str | None = None) -> list[str]:
    """The end-of-run lines for a :class:`factory.flow.RunSummary` (and the run's log file)."""
    lines = ["", "== distill-factory run =="]
    lines += table(["stage", "rows in", "rows out", "kept", "dropped", "busy s"], stage_rows(summary.stages))
    if summary.eval:
        lines += ["", "evaluation (held-out problems):"] + ["  " + line for line in eval_lines(summary.eval)]
    phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in summary.phases.items())
    lines += ["", f"time: {summary.seconds:.0f} s ({phases})" if phases else f"time: {summary.seconds:.0f} s"]
    lines += [f"dataset:    {summary.dataset}", f"manifest:   {summary.manifest}",
              f"checkpoint: {summary.checkpoint}", f"report:     {summary.report}  (open this first)"]
    if log_path:
        lines.append(f"log:        {log_path}")
    lines.append(json.dumps(summary.headline()))
    return lines
