# The two commands of the README. Both create the virtual environment on first use (~2 minutes): the exact versions
# of constraints.txt, within the ranges of pyproject.toml.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
ANOSEG := $(VENV)/bin/anoseg
STAMP  := $(VENV)/.installed-stamp
DEMO_MODEL ?= lfd

.PHONY: install demo test test-fast lint bench clean-demo

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job end to end on the built-in data: synth → generate → prepare → train → eval → report,
## for two generators side by side (the SeaS-layout pairs of the demo data, and anoseg's own Perlin pairs).
DEMO_GENERATORS ?= seas perlin

demo: $(STAMP)
	$(ANOSEG) synth --out data/demo
	$(ANOSEG) generate --method perlin --recipe demo --count 20 --overwrite
	for g in $(DEMO_GENERATORS); do \
	  $(ANOSEG) prepare --recipe demo --generator $$g && \
	  $(ANOSEG) train --recipe demo --model $(DEMO_MODEL) --generator $$g --fresh && \
	  $(ANOSEG) eval --recipe demo --model $(DEMO_MODEL) --generator $$g --save-scores || exit 1; \
	done
	$(ANOSEG) report --dataset demo

## Everything (what CI runs).
PYTEST_ARGS ?= -n 2  # pytest-xdist: two worker processes (the suite is CPU-bound; this machine has 2 cores); PYTEST_ARGS= for serial

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## Unit and small integration tests: everything but the tests marked slow (multi-process and long end-to-end runs).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check anoseg tests bench

bench: $(STAMP)
	$(PY) bench/metrics.py
	$(ANOSEG) bench

clean-demo:
	rm -rf data/demo outputs/demo
