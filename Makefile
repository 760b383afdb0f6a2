# Two entry points: `make demo` (set up + run the whole graph) and `make test` (set up + tests).
# The environment lives in .venv in this checkout; torch is installed first and pinned, because an
# unpinned torch pulled in by another package resolves to a multi-GB CUDA build.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test ui clean-home

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medmo demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

ui: $(STAMP)
	$(VENV)/bin/medmo ui

clean-home:
	rm -rf .medmo
