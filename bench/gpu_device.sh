#!/usr/bin/env bash
# On the device machine (its own python3 with torch, no package index), in the repository root,
# once every part of .gpu/ (bench/gpu_bundle.sh) has been carried there: unpack the wheels and
# the datasets, install them and the project, run the acceptance run, copy the results to $OUT.
#
#   bash bench/gpu_device.sh [bench/gpu_check.py arguments]
#
# PYTHON (default python3), GPU_WORK (default /tmp/splat-gpu): where to unpack and install.
set -uo pipefail
PYTHON=${PYTHON:-python3}
B=${GPU_BUNDLE:-.gpu}
W=${GPU_WORK:-/tmp/splat-gpu}
mkdir -p "$W"
ls "$B"/wheels/part-* >/dev/null 2>&1 || { echo "gpu_device: no $B/wheels/part-* here (carry them first)" >&2; exit 2; }
cat "$B"/wheels/part-* | tar -x -C "$W" || { echo "gpu_device: the wheel parts do not make a whole tar" >&2; exit 2; }
if ls "$B"/data/part-* >/dev/null 2>&1; then
  cat "$B"/data/part-* | tar -x -C "$W" || echo "gpu_device: the data parts do not make a whole tar; stages that need data skip" >&2
fi
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$W/site" "$W"/wheels/*.whl || exit 3
export PYTHONPATH="$W/site${PYTHONPATH:+:$PYTHONPATH}"
# the project on top, editable; where the system environment is read-only, a plain copy into the site
"$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e . ||
  "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --target "$W/site" . || exit 3
"$PYTHON" -c "import torch, warp, splat; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'warp', warp.__version__)"
set -o pipefail
"$PYTHON" bench/gpu_check.py --datasets "$W/datasets" "$@" 2>&1 | tee "${OUT:-$W}/gpu_check.log"
rc=$?
if [ -n "${OUT:-}" ]; then  # the device tool brings back at most 8 files: the summary, the log, one tar
  cp bench/results/gpu_check-cuda.json "$OUT"/ 2>/dev/null
  tar -cf "$OUT/results-cuda.tar" bench/results/*-cuda.json 2>/dev/null
fi
exit $rc
