#!/usr/bin/env bash
# Here, with package-index access: what the device machine needs carried, as files of at most
# 58 MiB each (one call of the device tool carries at most 64 MiB, the repository included).
#
#   bash bench/gpu_bundle.sh            # -> .gpu/wheels/part-NN  (../shared/tools/offline-bundle:
#                                       #    warp-lang, viser and its small deps, plyfile, gsplat)
#                                       #    .gpu/data/part-NN    (lego_400 and the garden points)
# .gpu/ is git-ignored. On the device: bench/gpu_device.sh. With the device tool, four calls, each
# within 30 s of the previous reply (a warm machine keeps the parts carried before; one call
# cannot carry a wheel part and the data together: over 64 MiB with the repository):
#
#   run(command="ls -l .gpu/wheels", carry=[".gpu/wheels/part-00"], timeout_s=60)
#   run(command="ls -l .gpu/wheels", carry=[".gpu/wheels/part-01"], timeout_s=60)
#   run(command="ls -l .gpu/wheels", carry=[".gpu/wheels/part-02"], timeout_s=60)
#   run(command="bash bench/gpu_device.sh", carry=[".gpu/data/part-00"], timeout_s=600)
#
# then give the machine back, `tar -xf <files_at>/results-cuda.tar` here and commit
# bench/results/*-cuda.json. With under 12 minutes of device time left, pass a smaller budget
# (`bash bench/gpu_device.sh --budget 300`) or fewer stages (`--stages tests,rasterize`).
# Rehearsal on the CPU: PYTHON=<py3.12 venv with torch 2.11> OUT=/tmp/out bash bench/gpu_device.sh --dry
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.gpu}
SHARED=${SHARED:-$(cd .. && pwd)/shared}
[ -x "$SHARED/tools/offline-bundle" ] || { echo "gpu_bundle: $SHARED/tools/offline-bundle is missing (set SHARED=...)" >&2; exit 2; }
rm -rf "$OUT"
mkdir -p "$OUT/data"
"$SHARED/tools/offline-bundle" "$OUT/wheels" >/dev/null
tar -C "$SHARED" -cf - datasets/lego_400 datasets/garden_points | split -b 58m -d - "$OUT/data/part-"
ls -l "$OUT"/wheels "$OUT"/data
