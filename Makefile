# The two commands of the README. Both create the virtual environment on first use (~2 minutes): the exact versions
# of constraints.txt, within the ranges of pyproject.toml.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
ANOSEG := $(VENV)/bin/anoseg
STAMP  := $(VENV)/.installed-stamp
DEMO_MODEL ?= lfd

.PHONY: install demo demo-val test test-fast lint bench clean-demo

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

## Issue 24's sequence (docs/operating-points.md): the demo with a validation split (recipe demo_val, its own copy of
## the demo data with more good images), the checkpoint chosen on validation, thresholds fixed on validation at a 1 %
## image-level false-alarm target, a report with the operating points and per-defect tables, and predict at that
## threshold with the checkpoint train chose (selection.json).
DEMO_VAL_RUN := outputs/demo_val/seas/$(DEMO_MODEL)/all

demo-val: $(STAMP)
	$(ANOSEG) synth --out data/demo_val --train-good 60
	$(ANOSEG) prepare --recipe demo_val
	$(ANOSEG) train --recipe demo_val --model $(DEMO_MODEL) --fresh --select val:pixel_ap
	$(ANOSEG) eval --recipe demo_val --model $(DEMO_MODEL) --target-fpr image:0.01
	$(ANOSEG) report --dataset demo_val --by defect
	$(ANOSEG) predict data/demo_val/mvtec/disk/test/crack --category disk --out outputs/demo_val/predict --overwrite \
	  --checkpoint $(DEMO_VAL_RUN)/$$($(PY) -c "import json; print(json.load(open('$(DEMO_VAL_RUN)/selection.json'))['checkpoint'])")

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
