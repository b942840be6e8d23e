# Quick start: `make demo` (main job, offline) and `make test`. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
METHOD ?= livt
PYTEST_ARGS ?=
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test lint demo clean

install: $(VENV)/.installed

# --no-compile: no bytecode for every installed module up front (Python compiles what is imported, on first use);
# it halves the install (bench/results/install_time.md)
$(VENV)/.installed: setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -e ".[dev]"
	touch $@

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest -n 2 --dist loadfile -q $(PYTEST_ARGS)

demo: install
	$(PY) scripts/demo.py --method $(METHOD)

clean:
	rm -rf outputs .pytest_cache .ruff_cache
