"""The ablation's HTML report and console table: a view of ``ablation.json``, holding nothing it lacks.

Report sections: what was compared (pool, held-out set, decoding, training), the policy table (rows
trained on, mean held-out accuracy with its interval, difference to the baseline and to the teacher
with theirs), interval plots of both, and every student's figures. Built from :mod:`factory.report`'s
table and section helpers and :func:`factory.report_plots.intervals`; self-contained (inline PNGs).
"""

from __future__ import annotations

from factory import report_plots as plots
from factory.atomic import write_atomic
from factory.report import STYLE, _e, _section, _table


def _ci(entry: dict | None) -> str:
    return "" if entry is None else f"[{entry['low']:.3f}, {entry['high']:.3f}]"


def _signed(entry: dict | None) -> str:
    return "" if entry is None else f"{entry['mean']:+.3f}"


def policy_rows(summary: dict) -> list[list]:
    """One row per model: name, rows, seeds, accuracy, its CI, Δ vs baseline, its CI, Δ vs teacher, its CI."""
    comparison = summary["comparison"]
    baseline = summary["baseline"]
    vs_base = comparison["differences"].get(baseline, {})
    vs_teacher = comparison["differences"].get("teacher", {})
    rows = []
    for name, model in comparison["models"].items():
        policy = summary["policies"].get(name)
        rows.append([name, policy["rows"] if policy else "", len(policy["students"]) if policy else "",
                     f"{model['mean']:.3f}", _ci(model),
                     "(baseline)" if name == baseline else _signed(vs_base.get(name)), _ci(vs_base.get(name)),
                     _signed(vs_teacher.get(name)), _ci(vs_teacher.get(name))])
    return rows


HEADER = ["policy", "rows", "seeds", "accuracy", "CI", "Δ baseline", "CI", "Δ teacher", "CI"]


def console_table(summary: dict) -> list[str]:
    """The policy table as aligned text lines, then the report and JSON paths (the JSON path last)."""
    level = round(summary["comparison"]["confidence"] * 100)
    header = [h if h != "CI" else f"{level}% CI" for h in HEADER]
    rows = [[str(c) for c in r] for r in policy_rows(summary)]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = [f"== distill-factory ablate: {summary['comparison']['problems']} held-out problems, "
             f"{summary['decoding']['backend']} temperature {summary['decoding']['temperature']}, "
             f"paired bootstrap over problems and seeds =="]
    for r in [header, ["-" * w for w in widths]] + rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    lines.append(f"time: {summary['seconds']:.0f} s (train {summary['timings']['train_s']:.0f} s, "
                 f"eval {summary['timings']['eval_s']:.0f} s)")
    lines.append(f"report: {summary['report']}")
    lines.append(summary["summary"])
    return lines


def _plots(summary: dict) -> str:
    comparison = summary["comparison"]
    models = comparison["models"]
    names = list(models)
    charts = [plots.intervals(names, [models[n]["mean"] for n in names], [models[n]["low"] for n in names],
                              [models[n]["high"] for n in names], "Held-out accuracy per policy", "accuracy")]
    baseline = summary["baseline"]
    diffs = comparison["differences"].get(baseline, {})
    if diffs:
        names = list(diffs)
        charts.append(plots.intervals(names, [diffs[n]["mean"] for n in names], [diffs[n]["low"] for n in names],
                                      [diffs[n]["high"] for n in names], f"Accuracy difference vs {baseline} (paired)",
                                      "accuracy difference", reference=0.0))
    return "".join(charts)


def render(summary: dict) -> str:
    """The report's HTML for an ``ablation.json`` dict."""
    comparison = summary["comparison"]
    level = round(comparison["confidence"] * 100)
    setup = [["pool", f"{summary['pool']['snapshot']} ({summary['pool']['eligible_rows']} eligible samples, "
                      f"left out {summary['pool']['left_out']})"],
             ["held-out", f"{summary['heldout']['problems']} problems from {', '.join(summary['heldout']['sources'])}; "
                          f"{comparison['problems']} compared ({comparison['problems_excluded']} without a judged "
                          "answer from every model left out)"],
             ["decoding", summary["decoding"]],
             ["student training", summary["train"]],
             ["intervals", f"{level}% percentile intervals of {comparison['resamples']} paired bootstrap draws "
                           "over problems (same draw for every model) and seeds"],
             ["seconds", summary["seconds"]], ["timings", summary["timings"]]]
    students = [[name, s["seed"], s["curriculum"], p["rows"], s["steps"], s["final_loss"], s["accuracy"], s["train_s"],
                 s["eval_s"]] for name, p in summary["policies"].items() for s in p["students"]]
    body = "\n".join([
        _section("Setup", _table(None, setup)),
        _section("Policies", _table([h if h != "CI" else f"{level}% CI" for h in HEADER], policy_rows(summary))
                 + _plots(summary)),
        _section("Students", _table(["policy", "seed", "order", "rows", "steps", "final loss", "accuracy",
                                     "train s", "eval s"], students)),
    ])
    title = f"distill-factory ablation: {summary['config']['run']['name']}"
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n<h1>{_e(title)}</h1>\n{body}\n</body></html>\n")


def write_report(path: str, summary: dict) -> str:
    """Write the report for ``summary`` to ``path``; returns ``path``."""
    write_atomic(path, render(summary).encode())
    return path
