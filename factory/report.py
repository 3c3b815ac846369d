"""Self-contained HTML report of one committed snapshot (``report.html`` beside ``_manifest.json``).

Inputs, all read from the snapshot directory:

- ``_manifest.json`` (required). Keys read, each optional except ``version``: ``dataset``, ``version``,
  ``created_at``, ``run``, ``config_hash``, ``code_version``, ``num_rows``, ``stages`` (the pipeline's
  per-stage records in order: rows and kept rows in/out, drops by reason, busy and wall seconds,
  barrier, stats, and an optional custom ``view`` — see :mod:`factory.pipeline`), ``drops``
  {"stage:reason": n}, ``lineage`` {...}, ``files`` [{"path": ...}], ``side_tables``
  {"dropped": {"files": [{"path": ...}]}}.
- ``run_summary.json`` (optional, written after the immutable manifest by training/evaluation): its
  ``eval``, ``train`` and ``phases`` entries.
- Parquet data files (kept rows) and the ``_side/dropped`` side table (rejected rows), columns per
  :mod:`factory.schema`; only ``prompt_id``, ``reward``, ``completion_tokens`` and ``pass_rate`` are read.

Sections: overview, the pipeline (every stage the same way, in pipeline order), drops by reason, reward
and response-length distributions (kept vs dropped), per-prompt pass rate, one section per stage that
provides a view, timing, student vs teacher (rendered from :mod:`factory.eval_fields`, like the CLI
summary), training (the run's ``metrics.json`` curves when its ``metrics_path`` is readable), lineage.
A section whose inputs are absent says "not run" instead of failing.
Not covered: comparing snapshots, or anything needing network access (the HTML embeds its PNG charts).
"""

from __future__ import annotations

import html
import json
from typing import Any


from factory import report_plots as plots
from factory.atomic import write_atomic
from factory.eval_fields import MODEL_LABELS, MODELS, model_rows, present_models, ratio_rows
from factory.paths import REPORT, RUN_SUMMARY

ROW_COLUMNS = ["prompt_id", "reward", "completion_tokens", "pass_rate"]

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.not-run{color:#888;font-style:italic}
img.chart{max-width:100%;display:block;margin:.5rem 0}pre{background:#f6f6f6;padding:.6rem;overflow:auto}
"""


def build_report(snapshot, out_path: str | None = None) -> str:
    """Write the report of ``snapshot`` (a :class:`factory.store.Snapshot`, or a local snapshot
    directory) and return where it went: beside the manifest through the store (atomically; a local
    path or an object URI), or ``out_path`` (a local file) when given. Raises the store's error when
    the directory is no snapshot; every missing input becomes a "not run" section."""
    from factory.store import Snapshot

    if not isinstance(snapshot, Snapshot):
        snapshot = Snapshot.open(str(snapshot))
    info = dict(snapshot.manifest)
    try:
        summary = json.loads(snapshot.read_file(RUN_SUMMARY))
    except FileNotFoundError:
        summary = {}
    info.update({key: summary[key] for key in ("eval", "train", "phases") if summary.get(key)})
    kept = _read_rows(snapshot, None)
    dropped = _read_rows(snapshot, "dropped") if "dropped" in snapshot.side_tables() else None
    stages = info.get("stages") or []
    body = "\n".join([
        _overview(info),
        _section("Pipeline", _pipeline(stages)),
        _section("Drops by reason", _drops(info.get("drops"))),
        _section("Reward distribution", _distribution(kept, dropped, "reward", "reward-model score")),
        _section("Response length", _distribution(kept, dropped, "completion_tokens", "completion tokens")),
        _section("Per-prompt pass rate", _pass_rates(kept, dropped)),
        *[_section(f"Stage: {stage['name']}", _view(stage["view"])) for stage in stages if stage.get("view")],
        _section("Timing", _timings(stages, info.get("phases"))),
        _section("Student vs teacher", _evaluation(info.get("eval"))),
        _section("Training", _training(info.get("train"))),
        _section("Lineage", _lineage(info.get("lineage"))),
    ])
    title = f"distill-factory report: {info.get('dataset', '')} {info.get('version', '')}".strip()
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n<h1>{_e(title)}</h1>\n{body}\n</body></html>\n").encode("utf-8")
    if out_path is not None:
        write_atomic(out_path, page)
        return out_path
    return snapshot.write_file(REPORT, page)


def _read_rows(snapshot, side: str | None) -> dict[str, list] | None:
    """The report's columns of the data (or side table ``side``) as lists; None when there are no rows."""
    dataset = snapshot.to_arrow_dataset(side=side)
    present = [c for c in ROW_COLUMNS if c in dataset.schema.names]
    table = dataset.to_table(columns=present)
    if table.num_rows == 0:
        return None
    return {c: table.column(c).to_pylist() if c in present else [None] * table.num_rows for c in ROW_COLUMNS}


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return _e(json.dumps(value, sort_keys=True))
    return _e(value)


def _section(title: str, content: str) -> str:
    return f"<section><h2>{_e(title)}</h2>\n{content}\n</section>"


def _not_run(what: str = "not run") -> str:
    return f'<p class="not-run">{_e(what)}</p>'


def _table(header: list[str] | None, rows: list[list[Any]]) -> str:
    """An HTML table; ``header=None`` for key/value tables."""
    head = "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>" if header else ""
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{_fmt(v)}</td>' if isinstance(v, (int, float)) else f"<td>{_fmt(v)}</td>" for v in row
        ) + "</tr>"
        for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _overview(info: dict) -> str:
    keys = ["dataset", "version", "created_at", "run", "num_rows", "config_hash", "code_version"]
    rows = [[k, info[k]] for k in keys if info.get(k) is not None]
    return _section("Overview", _table(None, rows) if rows else _not_run("no metadata"))


def _drops(drops: dict | None) -> str:
    if drops is None:
        return _not_run()
    if not drops:
        return "<p>no rows dropped</p>"
    ordered = sorted(drops.items(), key=lambda kv: -kv[1])
    chart = plots.bars([k for k, _ in ordered], [v for _, v in ordered], "Dropped rows by stage:reason", "rows")
    return chart + _table(["stage:reason", "rows"], [list(kv) for kv in ordered])


def _numbers(rows: dict[str, list] | None, column: str) -> list[float]:
    if rows is None:
        return []
    return [float(v) for v in rows[column] if v is not None]


def _distribution(kept: dict | None, dropped: dict | None, column: str, label: str) -> str:
    series = {"kept": _numbers(kept, column), "dropped": _numbers(dropped, column)}
    if not any(series.values()):
        return _not_run(f"not run (no {column} values)")
    summary = [[name, len(vs), min(vs), sum(vs) / len(vs), max(vs)] for name, vs in series.items() if vs]
    return (plots.histogram(series, f"{label}: kept vs dropped", label)
            + _table(["rows", "n", "min", "mean", "max"], summary))


def _pass_rates(kept: dict | None, dropped: dict | None) -> str:
    per_prompt: dict[str, float] = {}
    for rows in (kept, dropped):
        if rows is not None:
            for prompt_id, rate in zip(rows["prompt_id"], rows["pass_rate"], strict=True):
                if rate is not None:
                    per_prompt.setdefault(prompt_id, float(rate))
    if not per_prompt:
        return _not_run("not run (no pass_rate values)")
    rates = list(per_prompt.values())
    solved = sum(r > 0 for r in rates)
    return (plots.histogram({"prompts": rates}, "Share of a prompt's samples judged correct", "pass rate",
                            bins=10, value_range=(0.0, 1.0), ylabel="prompts")
            + f"<p>{len(rates)} prompts; {solved} with at least one correct sample; "
              f"{sum(r == 1.0 for r in rates)} always correct.</p>")


def _pipeline(stages: list[dict]) -> str:
    if not stages:
        return _not_run()
    rows = [[s["name"], s.get("rows_in"), s.get("rows_out"), s.get("kept_in"), s.get("kept_out"),
             sum((s.get("drops") or {}).values()), s.get("busy_s"), s.get("wall_s"), s.get("barrier") or "streams"]
            for s in stages]
    return ("<p>Stages in the order the data flows; a filter never removes a row, it marks it dropped "
            "(kept = rows not dropped so far). Busy seconds are summed over workers.</p>"
            + _table(["stage", "rows in", "rows out", "kept in", "kept out", "dropped", "busy s", "wall s", "mode"], rows))


def _view(view: dict) -> str:
    """A stage's custom section (see :mod:`factory.pipeline`): its tables, then its bar charts."""
    parts = []
    for item in view.get("tables", []):
        parts.append(f"<h3>{_e(item['title'])}</h3>" + _table(item.get("header"), item["rows"]))
    for item in view.get("bars", []):
        parts.append(plots.bars(item["labels"], item["values"], item["title"], item.get("unit", ""), horizontal=False))
    return "\n".join(parts) if parts else _not_run("nothing to show")


def _timings(stages: list[dict], phases: dict | None) -> str:
    timed = [s for s in stages if s.get("busy_s") is not None]
    if not timed and not phases:
        return _not_run()
    parts = []
    if timed:
        parts.append(plots.bars([s["name"] for s in timed], [s["busy_s"] for s in timed], "Busy seconds per stage",
                                "seconds"))
    if phases:
        parts.append(_table(["phase", "seconds"], [[name, seconds] for name, seconds in phases.items()]))
    return "\n".join(parts)


def _evaluation(results: dict | None) -> str:
    models = present_models(results or {})
    if not models:
        return _not_run()
    parts = []
    scored = [m for m in models if results[m].get("accuracy") is not None]
    if scored:
        parts.append(plots.bars([MODEL_LABELS[m] for m in scored], [results[m]["accuracy"] for m in scored],
                                "Held-out accuracy (pass@1)", "accuracy", horizontal=False))
    header, rows = model_rows(results)
    parts.append(_table(header, rows))
    per_source = [[MODEL_LABELS[m], source, scores.get("accuracy"), scores.get("maj_at_k"), scores.get("problems"),
                   scores.get("errors")]
                  for m in models for source, scores in (results[m].get("by_source") or {}).items()]
    if per_source:
        parts.append("<h3>Per held-out set</h3>"
                     + _table(["model", "held-out set", "accuracy", "maj@k", "problems", "errors"], per_source))
    comparison = results.get("student_vs_teacher") or {}
    ratios = ratio_rows(comparison)
    if ratios:
        parts.append(f"<p>{_e(MODEL_LABELS.get(comparison.get('student'), ''))} / teacher, per figure:</p>"
                     + _table(["figure", "ratio"], ratios))
    if comparison and not comparison.get("costs_comparable", True):
        parts.append("<p>Speed and memory are not compared: a result was reused from an earlier run (see "
                     "<code>reused_from</code>), measured under other conditions.</p>")
    missing = [m for m in MODELS if m not in models]
    if missing:
        parts.append(_not_run(f"not run: {', '.join(MODEL_LABELS[m] for m in missing)}"))
    return "\n".join(parts)


def _training(train: dict | None) -> str:
    """The run's ``metrics.json`` (named by the summary's ``metrics_path``) rendered by
    :func:`factory.train.report.training_section_html`, then the summary's scalar entries; the summary
    alone when that file is not readable here (another machine's run directory, or removed)."""
    scalars = {k: v for k, v in (train or {}).items() if not isinstance(v, (list, dict))}
    try:
        with open(scalars["metrics_path"], encoding="utf-8") as handle:
            metrics = json.load(handle)
    except (KeyError, TypeError, OSError, ValueError):  # no path, unreadable or not JSON
        return _key_values(scalars)
    from factory.train.report import training_section_html

    return training_section_html(metrics) + "<h3>Run summary</h3>" + _key_values(scalars)


def _key_values(mapping: dict | None) -> str:
    if not mapping:
        return _not_run()
    return _table(None, [[k, v] for k, v in mapping.items()])


def _lineage(lineage: dict | None) -> str:
    if not lineage:
        return _not_run("no lineage recorded")
    return f"<pre>{_e(json.dumps(lineage, indent=2, sort_keys=True))}</pre>"

