# Two entry points: `make demo` (set up + run the whole graph) and `make test` (set up + tests).
# The environment lives in .venv in this checkout; torch is installed first and pinned, because an
# unpinned torch pulled in by another package resolves to a multi-GB CUDA build.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test ui clean-home system-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medmo demo

# Debian packages some tests need (a real Slurm on loopback). Without root or sudo this warns and
# those tests skip, saying why; CI runs as root and installs them.
system-deps:
	bash scripts/install-system-deps.sh || echo "warning: system packages not installed; Slurm tests will skip" >&2

test: $(STAMP) system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

ui: $(STAMP)
	$(VENV)/bin/medmo ui

clean-home:
	rm -rf .medmo
