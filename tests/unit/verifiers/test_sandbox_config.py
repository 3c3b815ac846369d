"""The verify section's sandbox settings validate through the config loader, with errors naming the field."""

import pytest

from factory.config import ConfigError, parse_config

BASE = {
    "run": {"name": "t", "work_dir": "runs"},
    "prompts": {"sources": [{"name": "synthetic", "kind": "synthetic", "synthetic_n": 1}]},
    "generation": {},
    "store": {"root": "datasets", "dataset": "t"},
}


def _verify(**section):
    return parse_config({**BASE, "verify": section}).verify


def test_local_backend_is_the_default():
    cfg = _verify()
    assert (cfg.sandbox_backend, cfg.sandbox_service) == ("local", None)
    assert (cfg.circuit_breaker.max_error_share, cfg.circuit_breaker.min_runs) == (0.01, 200)


def test_service_backend_takes_its_url_and_client_settings():
    cfg = _verify(sandbox_backend="service", sandbox_service={"url": "http://distill-factory-sandbox:8080",
                                                              "concurrency": 16, "retries": 5})
    assert (cfg.sandbox_service.url, cfg.sandbox_service.concurrency, cfg.sandbox_service.retries) == (
        "http://distill-factory-sandbox:8080", 16, 5)


@pytest.mark.parametrize("section, named", [
    ({"sandbox_backend": "service"}, "verify.sandbox_service"),
    ({"sandbox_backend": "docker"}, "verify.sandbox_backend"),
    ({"sandbox_backend": "service", "sandbox_service": {"url": "distill-factory-sandbox:8080"}},
     "verify.sandbox_service.url"),
    ({"sandbox_backend": "service", "sandbox_service": {"url": "http://s:8080", "concurrency": 0}},
     "verify.sandbox_service.concurrency"),
    ({"sandbox_backend": "service", "sandbox_service": {"url": "http://s:8080", "retries": -1}},
     "verify.sandbox_service.retries"),
    ({"sandbox_backend": "service", "sandbox_service": {"url": "http://s:8080", "timeout_s": 3}},
     "verify.sandbox_service.timeout_s"),
    ({"circuit_breaker": {"max_error_share": 1.5}}, "verify.circuit_breaker.max_error_share"),
    ({"circuit_breaker": {"window": 100, "min_runs": 500}}, "min_runs (500) must be <= window (100)"),
    ({"max_concurrent_tasks": 0}, "verify.max_concurrent_tasks"),
    ({"max_parallel_sandboxes": 0}, "verify.max_parallel_sandboxes"),
])
def test_bad_sandbox_settings_are_errors_naming_the_field(section, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        _verify(**section)


def test_where_and_how_fast_code_runs_does_not_change_the_verdict_settings():
    local = _verify()
    served = _verify(sandbox_service={"url": "http://s:8080", "concurrency": 32}, circuit_breaker={"window": 500},
                     max_concurrent_tasks=4, max_parallel_sandboxes=8, batch_size=16)
    assert served.verdict_settings() == local.verdict_settings()


def test_limits_and_the_backend_change_the_verdict_settings():
    base = _verify().verdict_settings()
    assert _verify(code_limits={"memory_mb": 1024}).verdict_settings() != base
    assert _verify(sandbox_backend="service", sandbox_service={"url": "http://s:8080"}).verdict_settings() != base
