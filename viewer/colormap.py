"""Depth to colour for the viewer: a turbo-like colormap (polynomial fit, no matplotlib)."""

from __future__ import annotations

import numpy as np

# Anton Mikhailov's polynomial approximation of Google's Turbo colormap (public domain).
_R = (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943)
_G = (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604)
_B = (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973)


def turbo(x: np.ndarray) -> np.ndarray:
    """(...,) values in [0, 1] -> (..., 3) RGB in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    powers = np.stack([x**k for k in range(6)], axis=-1)
    rgb = np.stack([powers @ np.asarray(c) for c in (_R, _G, _B)], axis=-1)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def colorize_depth(depth: np.ndarray, alpha: np.ndarray, background) -> np.ndarray:
    """Near = red, far = blue, over the 2nd-98th percentile of visible depths; empty pixels show
    the background colour."""
    visible = alpha > 0.5
    if visible.any():
        lo, hi = np.percentile(depth[visible], [2, 98])
    else:
        lo, hi = 0.0, 1.0
    x = 1.0 - (depth - lo) / max(hi - lo, 1e-9)
    rgb = turbo(x)
    a = np.clip(alpha, 0, 1)[..., None]
    return rgb * a + np.asarray(background, dtype=np.float32) * (1 - a)
