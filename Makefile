# Two commands for a fresh machine: `make demo` and `make test`.
# torch is installed first, pinned (override with TORCH_SPEC=...), so that resolving the package's
# own `torch>=2.2` requirement never pulls a multi-GB CUDA build onto a CPU machine.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.retain-installed

.PHONY: setup demo test test-slow bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 2>/dev/null || true
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,lm-eval]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/retain demo

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/engine_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
