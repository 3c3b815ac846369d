"""Self-contained HTML report of one committed snapshot (``report.html`` beside ``_manifest.json``).

Inputs, all read from the snapshot directory:

- ``_manifest.json`` (required). Keys read, each optional except ``version``:
  ``dataset``, ``version``, ``created_at``, ``run``, ``config_hash``, ``code_version``, ``num_rows``,
  ``counts`` {stage: {"in": n, "out": n}}, ``drops`` {"stage:reason": n},
  ``timings`` {stage: {"seconds": s, "rows_per_s": r}}, ``generation`` {name: number} (throughput etc.),
  ``dedup`` {name: number, ..., "cluster_sizes": {size: clusters}},
  ``decontam`` {benchmark: {"hits": n, ...}} (non-dict values are shown as overall figures),
  ``eval`` {"teacher" | "student_before" | "student_after": {"accuracy": a, ...}, "ratio": r,
  "student_vs_teacher": {figure: ratio}},
  ``train`` {name: value}, ``lineage`` {...}, ``files`` [{"path": ...}],
  ``side_tables`` {"dropped": {"files": [{"path": ...}]}}.
- ``run_summary.json`` (optional, written after the immutable manifest by training/evaluation): its
  ``eval``, ``train`` and ``timings``/``counts`` entries are laid over the manifest's.
- Parquet data files (kept rows) and the ``_side/dropped`` side table (rejected rows), columns per
  :mod:`factory.schema`; only ``prompt_id``, ``reward``, ``completion_tokens`` and ``pass_rate`` are read.

Sections: overview, rows per stage, drops by reason, reward and response-length distributions (kept vs
dropped), per-prompt pass rate, dedup clusters, decontamination hits, timing/throughput, student vs
teacher accuracy, training, lineage. A section whose inputs are absent says "not run" instead of failing.
Not covered: comparing snapshots, or anything needing network access (the HTML embeds its PNG charts).
"""

from __future__ import annotations

import glob
import html
import json
import os
from typing import Any

import pyarrow.parquet as pq

from factory import report_plots as plots
from factory.evaluate import COMPARED
from factory.evaluate import MODELS as EVAL_MODELS

MANIFEST = "_manifest.json"
RUN_SUMMARY = "run_summary.json"
REPORT = "report.html"
ROW_COLUMNS = ["prompt_id", "reward", "completion_tokens", "pass_rate"]
COST_COLUMNS = {  # eval result key -> report column (factory.evaluate's cost figures)
    "output_tokens_per_s": "output tok/s", "latency_p50_s": "latency p50 (s)", "latency_p90_s": "latency p90 (s)",
    "token_latency_p50_s": "latency/token p50 (s)",
    "peak_rss_bytes": "peak RSS (MiB)", "peak_device_bytes": "peak GPU (MiB)", "weights_bytes": "weights (MiB)",
    "engine_start_s": "engine start (s)", "generation_s": "generation (s)", "actors": "actors",
}

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.not-run{color:#888;font-style:italic}
img.chart{max-width:100%;display:block;margin:.5rem 0}pre{background:#f6f6f6;padding:.6rem;overflow:auto}
"""


def build_report(snapshot_dir: str, out_path: str | None = None) -> str:
    """Write the report for the snapshot at ``snapshot_dir`` and return its path.

    ``out_path`` defaults to ``<snapshot_dir>/report.html``. Raises FileNotFoundError when the snapshot
    has no manifest; every other missing input becomes a "not run" section.
    """
    manifest_path = os.path.join(snapshot_dir, MANIFEST)
    if not os.path.exists(manifest_path):
        raise FileNotFoundError(f"no {MANIFEST} in {snapshot_dir}")
    with open(manifest_path) as f:
        manifest = json.load(f)
    info = _overlay_run_summary(manifest, os.path.join(snapshot_dir, RUN_SUMMARY))
    kept = _read_rows(_data_files(snapshot_dir, manifest))
    dropped = _read_rows(_dropped_files(snapshot_dir, manifest))
    body = "\n".join([
        _overview(info),
        _section("Rows per stage", _counts_table(info.get("counts"))),
        _section("Drops by reason", _drops(info.get("drops"))),
        _section("Reward distribution", _distribution(kept, dropped, "reward", "reward-model score")),
        _section("Response length", _distribution(kept, dropped, "completion_tokens", "completion tokens")),
        _section("Per-prompt pass rate", _pass_rates(kept, dropped)),
        _section("Deduplication", _dedup(info.get("dedup"))),
        _section("Decontamination", _decontam(info.get("decontam"))),
        _section("Timing and throughput", _timings(info.get("timings"), info.get("generation"))),
        _section("Student vs teacher accuracy", _evaluation(info.get("eval"))),
        _section("Training", _key_values(info.get("train"))),
        _section("Lineage", _lineage(info.get("lineage"))),
    ])
    title = f"distill-factory report: {info.get('dataset', '')} {info.get('version', '')}".strip()
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n<h1>{_e(title)}</h1>\n{body}\n</body></html>\n")
    out_path = out_path or os.path.join(snapshot_dir, REPORT)
    tmp = f"{out_path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, out_path)
    return out_path


def _overlay_run_summary(manifest: dict, summary_path: str) -> dict:
    """The manifest with run_summary.json's eval/train/timings/counts laid over it."""
    info = dict(manifest)
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
        for key in ("timings", "counts"):
            if summary.get(key):
                info[key] = {**(info.get(key) or {}), **summary[key]}
        for key in ("eval", "train"):
            if summary.get(key):
                info[key] = summary[key]
    return info


def _data_files(snapshot_dir: str, manifest: dict) -> list[str]:
    if "files" in manifest:
        return [os.path.join(snapshot_dir, entry["path"]) for entry in manifest["files"]]
    return sorted(glob.glob(os.path.join(snapshot_dir, "*.parquet")))


def _dropped_files(snapshot_dir: str, manifest: dict) -> list[str]:
    side = (manifest.get("side_tables") or {}).get("dropped")
    if side:
        return [os.path.join(snapshot_dir, entry["path"]) for entry in side["files"]]
    return sorted(glob.glob(os.path.join(snapshot_dir, "_side", "dropped", "*.parquet")))


def _read_rows(paths: list[str]) -> dict[str, list] | None:
    """The report's columns from ``paths`` as lists; None when there are no files."""
    if not paths:
        return None
    columns: dict[str, list] = {c: [] for c in ROW_COLUMNS}
    for path in paths:
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[c for c in ROW_COLUMNS if c in names])
        for column in ROW_COLUMNS:
            values = table.column(column).to_pylist() if column in table.column_names else [None] * table.num_rows
            columns[column].extend(values)
    return columns


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


def _counts_table(counts: dict | None) -> str:
    if not counts:
        return _not_run()
    rows = [[stage, c.get("in"), c.get("out")] for stage, c in counts.items() if isinstance(c, dict)]
    return _table(["stage", "rows in", "rows out"], rows)


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


def _dedup(dedup: dict | None) -> str:
    if not dedup:
        return _not_run()
    scalars = [[k, v] for k, v in dedup.items() if k != "cluster_sizes"]
    parts = [_table(None, scalars)] if scalars else []
    levels = dedup.get("cluster_sizes") or {}
    if levels and not all(isinstance(v, dict) for v in levels.values()):
        levels = {"near-duplicate": levels}  # a flat {size: count} histogram
    for level, sizes in levels.items():
        if not sizes:
            continue
        ordered = sorted(sizes.items(), key=lambda item: int(str(item[0]).split("-")[0].rstrip("+")))
        parts.append(plots.bars([str(s) for s, _ in ordered], [c for _, c in ordered],
                                f"{level} clusters by size", "clusters", horizontal=False))
    if not any(levels.values()):
        parts.append("<p>no duplicate clusters</p>")
    return "\n".join(parts)


def _decontam(decontam: dict | None) -> str:
    if not decontam:
        return _not_run()
    benchmarks = {k: v for k, v in decontam.items() if isinstance(v, dict)}
    overall = [[k, v] for k, v in decontam.items() if not isinstance(v, dict)]
    parts = [_table(None, overall)] if overall else []
    if benchmarks:
        fields = sorted({f for stats in benchmarks.values() for f in stats} - {"hits"})
        rows = [[name, stats.get("hits")] + [stats.get(f) for f in fields] for name, stats in benchmarks.items()]
        parts.append(_table(["benchmark", "hits"] + fields, rows))
    return "\n".join(parts)


def _timings(timings: dict | None, generation: dict | None) -> str:
    if not timings and not generation:
        return _not_run()
    parts = []
    if timings:
        rows = [[stage, t.get("seconds"), t.get("rows_per_s")] for stage, t in timings.items()]
        parts.append(plots.bars([r[0] for r in rows], [r[1] or 0.0 for r in rows], "Wall time per stage", "seconds"))
        parts.append(_table(["stage", "seconds", "rows/s"], rows))
    if generation:
        parts.append("<h3>Generation</h3>" + _table(None, [[k, v] for k, v in generation.items()]))
    return "\n".join(parts)


def _evaluation(results: dict | None) -> str:
    models = [m for m in EVAL_MODELS if isinstance((results or {}).get(m), dict)]
    if not models:
        return _not_run()
    fields = sorted({f for m in models for f in results[m]} - set(COST_COLUMNS) - {"by_source"})
    parts = []
    scored = [m for m in models if results[m].get("accuracy") is not None]
    if scored:
        parts.append(plots.bars(scored, [results[m]["accuracy"] for m in scored], "Held-out accuracy (pass@1)",
                                "accuracy", horizontal=False))
    parts.append(_table(["model"] + fields, [[m] + [results[m].get(f) for f in fields] for m in models]))
    if results.get("ratio") is not None:
        parts.append(f"<p>student-after / teacher accuracy ratio: <b>{results['ratio']:.3f}</b></p>")
    per_source = [[m, source, scores.get("accuracy"), scores.get("maj_at_k"), scores.get("problems"), scores.get("errors")]
                  for m in models for source, scores in (results[m].get("by_source") or {}).items()]
    if per_source:
        parts.append("<h3>Per held-out set</h3>"
                     + _table(["model", "held-out set", "accuracy", "maj_at_k", "problems", "errors"], per_source))
    costs = [c for c in COST_COLUMNS if any(results[m].get(c) is not None for m in models)]
    if costs:
        parts.append("<h3>Generation cost under the same engine</h3>")
        parts.append(_table(["model"] + [COST_COLUMNS[c] for c in costs],
                            [[m] + [_scaled(c, results[m].get(c)) for c in costs] for m in models]))
    comparison = results.get("student_vs_teacher") or {}
    ratios = [[label, comparison[f]] for f, label in COMPARED.items() if comparison.get(f) is not None]
    by_source = comparison.get("accuracy_by_source") or {}
    if len(by_source) > 1:
        ratios += [[f"accuracy on {source}", v] for source, v in by_source.items() if v is not None]
    if ratios:
        parts.append(f"<p>{_e(comparison.get('student'))} / teacher, per figure:</p>" + _table(["figure", "ratio"], ratios))
    if comparison and not comparison.get("costs_comparable", True):
        parts.append("<p>Speed and memory are not compared: a result was reused from an earlier run (see "
                     "<code>reused_from</code>), measured under other conditions.</p>")
    missing = [m for m in EVAL_MODELS if m not in models]
    if missing:
        parts.append(_not_run(f"not run: {', '.join(missing)}"))
    return "\n".join(parts)


def _scaled(column: str, value: Any) -> Any:
    return value / 2**20 if column.endswith("_bytes") and value is not None else value


def _key_values(mapping: dict | None) -> str:
    if not mapping:
        return _not_run()
    return _table(None, [[k, v] for k, v in mapping.items()])


def _lineage(lineage: dict | None) -> str:
    if not lineage:
        return _not_run("no lineage recorded")
    return f"<pre>{_e(json.dumps(lineage, indent=2, sort_keys=True))}</pre>"

