"""antimatter15 `.splat`: the web viewers' minimal format, 32 bytes per Gaussian, no header.

Per Gaussian, little-endian: position 3 x float32, scale 3 x float32 (activated, exp of the
log-scale), colour RGBA 4 x uint8 (RGB = 0.5 + SH_C0 * f_dc clipped to [0, 1], A = sigmoid of the
opacity logit), rotation 4 x uint8 (unit wxyz quaternion q, stored as q * 128 + 128).
The frame is the PLY's (no axis change). View-dependent colour (higher SH bands) is lost, as is
colour outside [0, 1]. Written sorted by importance (size x opacity, largest first) as
antimatter15's converter does, so streaming viewers show the big splats first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splat.renderer.constants import SH_C0

from .common import fail, file_size, logit, sigmoid, unit_quats

RECORD = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
assert RECORD.itemsize == 32


def importance_order(splats: dict[str, np.ndarray]) -> np.ndarray:
    """Largest-first order of exp(sum of log-scales) x opacity (stable)."""
    key = np.exp(splats["scales"].astype(np.float64).sum(1)) * sigmoid(splats["opacities"])
    return np.argsort(-key, kind="stable")


def encode(splats: dict[str, np.ndarray]) -> bytes:
    order = importance_order(splats)
    s = {k: v[order] for k, v in splats.items()}
    rec = np.empty(len(order), dtype=RECORD)
    rec["position"] = s["means"]
    rec["scale"] = np.exp(s["scales"].astype(np.float64))
    rgb = 0.5 + SH_C0 * s["sh0"][:, 0, :].astype(np.float64)
    rgba = np.concatenate([rgb, sigmoid(s["opacities"])[:, None]], 1)
    rec["rgba"] = np.clip(np.round(rgba * 255.0), 0, 255)
    rec["rot"] = np.clip(np.round(unit_quats(s["quats"]) * 128.0 + 128.0), 0, 255)
    return rec.tobytes()


def read(path: Path) -> dict[str, np.ndarray]:
    size = file_size(path)
    if size == 0 or size % RECORD.itemsize:
        raise fail(path, f"{size} bytes is not a whole number of 32-byte .splat records")
    rec = np.fromfile(path, dtype=RECORD)
    if rec.size * RECORD.itemsize != size:  # the file changed under us
        raise fail(path, "truncated .splat file")
    scale = rec["scale"].astype(np.float64)
    if not np.isfinite(scale).all() or (scale <= 0).any():
        raise fail(path, "non-positive or non-finite scales (not a .splat file?)")
    rgba = rec["rgba"].astype(np.float64) / 255.0
    q = (rec["rot"].astype(np.float64) - 128.0) / 128.0
    return {
        "means": rec["position"].astype(np.float32),
        "scales": np.log(scale).astype(np.float32),
        "quats": unit_quats(q).astype(np.float32),
        "opacities": logit(rgba[:, 3]).astype(np.float32),
        "sh0": ((rgba[:, None, :3] - 0.5) / SH_C0).astype(np.float32),
        "shN": np.zeros((len(rec), 0, 3), np.float32),
    }
