#!/usr/bin/env bash
# Here, with package-index access: what the device machine needs carried, as files of at most
# 58 MiB each (one call of the device tool carries at most 64 MiB, the repository included).
#
#   bash bench/gpu_bundle.sh            # -> .gpu/wheels/part-NN  (../shared/tools/offline-bundle:
#                                       #    warp-lang, viser and its small deps, plyfile, gsplat)
#                                       #    .gpu/data/part-NN    (lego_400 and the garden points)
# .gpu/ is git-ignored. On the device: bench/gpu_device.sh (README, "GPU" section, has the calls).
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
