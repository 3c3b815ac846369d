"""The one table of evaluation result fields: what each figure is called, where it comes from, how it
is shown, and whether the student/teacher ratio of it is reported. The CLI summary and the HTML
report both render evaluation results from this table (:func:`model_rows`, :func:`ratio_rows`).
Also the named evaluation protocols (:data:`EVAL_PRESETS`), plain data the eval config resolves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MODELS = ("teacher", "student_before", "student_after")
"""The models an eval result may hold, in the order they are evaluated and reported."""
MODEL_LABELS = {"teacher": "teacher", "student_before": "student before", "student_after": "student after"}


@dataclass(frozen=True)
class EvalField:
    """One figure of a model's eval result."""

    key: str
    """Key in the result dict."""
    label: str
    """Column label in the summary and the report."""
    unit: str = ""
    """Display unit; ``MiB`` values are stored in bytes."""
    progress_stat: str | None = None
    """The generation progress statistic the figure is read from (cost figures), if any."""
    compared: bool = False
    """Whether the student/teacher ratio of the figure is reported."""
    timeless: bool = False
    """Comparable across runs (accuracy, weights); speed and memory are only compared within one run."""
    summary: bool = True
    """Shown in the CLI summary table (the report shows every field)."""
    share: bool = False
    """A share of problems or samples in [0, 1]: shown with three decimals, its ratio as a plain number."""


FIELDS = (
    EvalField("problems", "problems"),
    EvalField("accuracy", "accuracy", compared=True, timeless=True, share=True),
    EvalField("pass_at_1", "pass@1", compared=True, timeless=True, share=True),
    EvalField("k", "samples/problem", summary=False),
    EvalField("pass_at_k", "pass@k", summary=False, share=True),
    EvalField("maj_at_k", "maj@k", summary=False, share=True),
    EvalField("errors", "errors"),
    EvalField("output_tokens_per_s", "output tok/s", progress_stat="engine_output_tokens_per_s", compared=True),
    EvalField("latency_p50_s", "latency p50", "s", progress_stat="latency_p50_s", compared=True),
    EvalField("latency_p90_s", "latency p90", "s", progress_stat="latency_p90_s", summary=False),
    EvalField("token_latency_p50_s", "latency/token p50", "s", progress_stat="token_latency_p50_s", compared=True,
              summary=False),
    EvalField("peak_rss_bytes", "peak RSS", "MiB", progress_stat="peak_rss_bytes_per_actor", compared=True),
    EvalField("peak_device_bytes", "peak GPU memory", "MiB", progress_stat="peak_device_bytes_per_actor",
              compared=True, summary=False),
    EvalField("weights_bytes", "weights", "MiB", compared=True, timeless=True),
    EvalField("engine_start_s", "engine start", "s", progress_stat="engine_start_s", summary=False),
    EvalField("generation_s", "generation", "s", progress_stat="generation_s", summary=False),
    EvalField("actors", "actors", progress_stat="actors", summary=False),
)
BY_KEY = {field.key: field for field in FIELDS}

EVAL_PRESETS: dict[str, dict[str, float | int]] = {
    "r1": {"samples": 16, "temperature": 0.6, "top_p": 0.95},
}
"""Named evaluation protocols: the eval-config values each sets unless the config sets them itself.
``r1`` is DeepSeek-R1's: k samples per problem at temperature 0.6, top-p 0.95, pass@1 averaged over
them (the R1 report uses k = 4 to 64 by set size; set ``samples`` to choose)."""


def apply_preset(values: dict) -> dict:
    """Eval-config ``values`` with its ``preset``'s settings filled in where ``values`` has none (an
    unknown preset is left for the config's own validation to name)."""
    return {**EVAL_PRESETS.get(values.get("preset"), {}), **values}


def format_value(field: EvalField, value: Any) -> str:
    """A figure as shown to people ("n/a" when not measured)."""
    if value is None:
        return "n/a"
    if field.unit == "MiB":
        return f"{value / 2**20:.1f} MiB"
    if isinstance(value, float):
        text = f"{value:.3f}" if field.share else f"{value:.3g}"
        return f"{text} {field.unit}".strip()
    return f"{value} {field.unit}".strip()


def present_models(results: dict) -> list[str]:
    """The evaluated models of ``results``, in :data:`MODELS` order."""
    return [model for model in MODELS if isinstance(results.get(model), dict)]


def model_rows(results: dict, summary_only: bool = False) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per evaluated model, one column per field measured for any of them."""
    models = present_models(results)
    fields = [f for f in FIELDS if (f.summary or not summary_only) and any(results[m].get(f.key) is not None
                                                                          for m in models)]
    rows = [[MODEL_LABELS[m]] + [format_value(f, results[m].get(f.key)) for f in fields] for m in models]
    return ["model"] + [f.label for f in fields], rows


def ratio_rows(comparison: dict | None) -> list[list[str]]:
    """(figure, student/teacher ratio) rows for every compared figure with a ratio, then per held-out set."""
    if not comparison:
        return []
    rows = [[f.label, f"{comparison[f.key]:.3f}" if f.share else f"{comparison[f.key]:.2f}x"]
            for f in FIELDS if f.compared and comparison.get(f.key) is not None]
    by_source = comparison.get("accuracy_by_source") or {}
    if len(by_source) > 1:
        rows += [[f"accuracy on {source}", f"{value:.3f}"] for source, value in by_source.items() if value is not None]
    return rows
