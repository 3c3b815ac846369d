"""The report's training section: figures table, loss/LR/grad-norm curves and the overlong lengths,
and factory.report placing it from the run summary's metrics_path."""

import json
import re
from pathlib import Path

import numpy as np

from factory.train.report import training_section_html
from factory.train.samples import overlong_summary

METRICS = {
    "steps": 3, "total_steps": 3, "loss_curve": [2.0, 1.5, 1.2], "lr_curve": [1e-4, 5e-5, 1e-5],
    "grad_norm_curve": [3.0, 2.0, 1.0], "tokens_per_s": 1234.5, "mfu": None, "peak_memory_bytes": 3 * 2**30,
    "data": {"samples": 10, "trained_samples": 7, "max_seq_len": 100, "overlong_samples": 3,
             "overlong_lengths": overlong_summary(np.array([120, 130, 450]), 100)},
}


def _charts(html: str) -> list[str]:
    return re.findall(r'<img class="chart" alt="([^"]+)" src="data:image/png;base64,', html)


def test_section_plots_loss_lr_grad_norm_and_overlong_lengths():
    charts = _charts(training_section_html(METRICS))
    assert [c.split(" ")[0] for c in charts] == ["Training", "Learning", "Gradient", "Dropped"]
    assert "3 samples" in charts[-1] and "max 450" in charts[-1]


def test_figures_table_states_missing_mfu_and_memory_in_gib():
    html = training_section_html(METRICS)
    assert "1,234" in html and "3.00 GiB" in html and "no peak FLOP/s" in html
    assert "longer than max_seq_len (100)" in html


def test_run_without_overlong_samples_says_so_instead_of_an_empty_chart():
    data = dict(METRICS["data"], overlong_samples=0, overlong_lengths=overlong_summary(np.array([5]), 100))
    html = training_section_html(dict(METRICS, data=data))
    assert "No sample was longer than max_seq_len (100 tokens)" in html and len(_charts(html)) == 3


def test_gradient_norm_steps_without_a_value_are_left_out_of_the_curve():
    html = training_section_html(dict(METRICS, grad_norm_curve=[None, 2.0, 1.0]))
    assert _charts(html)[2].startswith("Gradient norm")


def _training_section(tmp_path, train: dict) -> str:
    """The Training section of the report of an empty committed snapshot whose run summary has ``train``."""
    from factory.report import build_report
    from factory.schema import DATASET_SCHEMA
    from factory.store import SnapshotStore

    snapshot = SnapshotStore(str(tmp_path / "store"), "demo").begin(schema=DATASET_SCHEMA).commit({"run": "demo"})
    snapshot.write_file("run_summary.json", json.dumps({"train": train}).encode())
    page = Path(build_report(snapshot)).read_text()
    return dict(re.findall(r"<h2>([^<]+)</h2>\n(.*?)\n</section>", page, flags=re.S))["Training"]


def test_report_training_section_draws_the_runs_metrics_file(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS, default=int))
    section = _training_section(tmp_path, {"steps": 3, "final_loss": 1.2, "metrics_path": str(tmp_path / "metrics.json"),
                                           "lr_curve": METRICS["lr_curve"]})
    assert [c.split(" ")[0] for c in _charts(section)] == ["Training", "Learning", "Gradient", "Dropped"]
    assert "final_loss" in section and "lr_curve" not in section  # the summary's scalars, not its lists


def test_report_training_section_falls_back_to_the_summary_without_the_metrics_file(tmp_path):
    section = _training_section(tmp_path, {"steps": 3, "final_loss": 1.2, "metrics_path": str(tmp_path / "gone.json")})
    assert "final_loss" in section and not _charts(section)
