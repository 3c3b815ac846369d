"""The circuit breaker's window: share of sandbox_error over the recent runs, a minimum window, sticky."""

from factory.verifiers.sandbox_breaker import ErrorWindow


def test_a_single_early_error_does_not_open_it():
    window = ErrorWindow(max_error_share=0.01, window=1000, min_runs=200)
    assert window.record([True]) is None
    assert window.record([False] * 199) is None


def test_opens_when_the_share_over_the_window_passes_the_bound():
    window = ErrorWindow(max_error_share=0.01, window=100, min_runs=100)
    reason = window.record([False] * 97 + [True] * 3, last_error="connection refused")
    assert reason is not None
    assert "3 of the last 100 sandbox runs (3.0%)" in reason and "window 100 runs" in reason
    assert "max_error_share=1.0%" in reason and "connection refused" in reason


def test_a_share_at_the_bound_does_not_open_it():
    window = ErrorWindow(max_error_share=0.01, window=100, min_runs=100)
    assert window.record([True] + [False] * 99) is None


def test_errors_leave_the_window_as_newer_runs_arrive():
    window = ErrorWindow(max_error_share=0.05, window=20, min_runs=20)
    assert window.record([False] * 19 + [True]) is None  # 1/20 = 5%: at the bound
    assert window.record([False] * 20) is None
    assert window.record([True]) is None  # the old error has left: 1/20 again


def test_it_stays_open_once_opened():
    window = ErrorWindow(max_error_share=0.1, window=10, min_runs=10)
    first = window.record([True] * 10)
    assert first is not None and window.record([False] * 100) == first


def test_a_total_outage_opens_it_at_min_runs():
    window = ErrorWindow(max_error_share=0.01, window=1000, min_runs=200)
    assert window.record([True] * 199) is None
    assert window.record([True]) is not None


def test_summary_counts_every_run_and_error():
    window = ErrorWindow(max_error_share=0.5, window=4, min_runs=4)
    window.record([True, False, False, False, False, True])
    assert window.summary() == {"sandbox_runs": 6, "sandbox_errors": 2, "circuit": "closed"}
