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
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet -e '.[dev]'
	# DeepSpeed JIT-compiles its CPU communication op on first use (slow); build it once now
	# (cached under ~/.cache/torch_extensions) rather than inside the first ZeRO test.
	$(PY) -c 'import deepspeed.ops as o; from deepspeed.accelerator import get_accelerator as g; \
	  b = g().create_op_builder("ShareMemCommBuilder"); b and o.__compatible_ops__.get(b.NAME) and b.load()' \
	  >/dev/null || echo "warning: DeepSpeed's CPU comm op did not build; the first ZeRO run will try again" >&2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medmo demo

# Debian packages some tests need (a real Slurm on loopback, chromium for the UI test, PostgreSQL).
# Without root or sudo this warns and those tests skip, saying why; CI runs as root and installs them.
system-deps:
	bash scripts/install-system-deps.sh || echo "warning: system packages not installed; Slurm, browser and PostgreSQL tests will skip" >&2

test: $(STAMP) system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

ui: $(STAMP)
	$(VENV)/bin/medmo ui

clean-home:
	rm -rf .medmo
