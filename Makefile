# Two commands for a newcomer:  `make demo`  and  `make test`  (each sets up .venv first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torch is installed first and pinned, so pip never swaps in a multi-GB CUDA build on a CPU machine.
# Elsewhere, pick the wheel index you need, e.g.
#   make setup TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/splat demo --out outputs/demo

# pytest exits 5 when it collects no tests (e.g. everything deselected): not a failure here.
test: setup
	$(PY) -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

bench: setup
	$(PY) bench/rasterize.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
