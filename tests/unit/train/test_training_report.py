"""The report's training section: figures table, loss/LR/grad-norm curves and the overlong lengths."""

import re

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
