"""Shared pieces of the splat file formats: the error type, bounded reads and decompression,
activations, and the axis flips between coordinate conventions.

Every reader works on numpy arrays in the layout `GaussianScene` keeps (pre-activation values):
means (N, 3), log-scales (N, 3), wxyz quaternions (N, 4), opacity logits (N,), SH DC (N, 1, 3)
and higher bands (N, K-1, 3).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import torch

from splat.errors import InputError

MAX_SH_DEGREE = 3  # what the renderer evaluates; higher bands in a file are dropped on read


class FormatError(InputError):
    """A file that is not a readable splat file of its format (the message names the file)."""


def fail(path, message: str) -> FormatError:
    return FormatError(f"{path}: {message}")


def read_bytes(path: Path, max_bytes: int | None = None) -> bytes:
    """The file's bytes (a missing file or folder is a FormatError naming it)."""
    if not path.is_file():
        raise fail(path, "no such file")
    with open(path, "rb") as f:
        return f.read() if max_bytes is None else f.read(max_bytes)


def gunzip_bounded(path: Path, data: bytes, limit: int) -> bytes:
    """Decompress a gzip stream, refusing to produce more than `limit` bytes (a gzip bomb or a
    header that lies about its size). Returns at most `limit` bytes, all of them if shorter."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit)
    except zlib.error as e:
        raise fail(path, f"corrupt gzip data ({e})") from None
    if len(out) < limit and not d.eof:
        raise fail(path, "truncated gzip data")
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def logit(alpha: np.ndarray, levels: int = 255) -> np.ndarray:
    """Inverse sigmoid of a quantised opacity, kept within half a level of 0 and 1 so that fully
    transparent / opaque values stay finite (the renderer clamps alpha at 0.99 anyway)."""
    a = np.clip(alpha.astype(np.float64), 0.5 / levels, 1.0 - 0.5 / levels)
    return np.log(a / (1.0 - a))


def unit_quats(q: np.ndarray) -> np.ndarray:
    """Normalised wxyz quaternions (a zero quaternion becomes the identity)."""
    q = q.astype(np.float64)
    n = np.linalg.norm(q, axis=1, keepdims=True)
    out = np.where(n > 0, q / np.where(n > 0, n, 1.0), np.array([1.0, 0.0, 0.0, 0.0]))
    return out


def sh_degree_for(num_bases: int, path) -> int:
    """SH degree of K = (d + 1)^2 bases per channel."""
    d = int(round(np.sqrt(num_bases))) - 1
    if (d + 1) ** 2 != num_bases:
        raise fail(path, f"{num_bases} SH coefficients per channel do not match any SH degree")
    return d


def sh_axis_signs(degree: int, flips) -> np.ndarray:
    """Sign of each higher-band SH coefficient (bases 1..(d+1)^2-1) under the axis flip
    x -> flips[0] x, y -> flips[1] y, z -> flips[2] z. Every real SH basis function is even or odd
    in each coordinate, so a flip multiplies it by +-1; read off from the renderer's own basis."""
    from splat.renderer.torch_impl import sh_basis

    d = torch.nn.functional.normalize(torch.tensor([[0.3, -0.5, 0.8]], dtype=torch.float64), dim=-1)
    f = torch.tensor(flips, dtype=torch.float64)
    ratio = sh_basis(degree, d * f) / sh_basis(degree, d)
    return np.sign(ratio[0, 1:].numpy())


def flip_axes(splats: dict[str, np.ndarray], flips) -> dict[str, np.ndarray]:
    """The same Gaussians seen in a frame whose axes are flipped by `flips` (+-1 each, an even
    number of -1s, i.e. a proper rotation such as RDF <-> RUB = (1, -1, -1))."""
    f = np.asarray(flips, dtype=np.float64)
    assert np.prod(f) > 0, "an axis flip used for a frame change must be a rotation"
    out = dict(splats)
    out["means"] = (splats["means"] * f).astype(np.float32)
    # R' = F R F^-1 for F = diag(f) a rotation: the rotation axis maps to F axis, angle kept.
    out["quats"] = (splats["quats"] * np.concatenate([[1.0], f])).astype(np.float32)
    shN = splats["shN"]
    if shN.shape[1]:
        degree = int(round(np.sqrt(shN.shape[1] + 1))) - 1
        out["shN"] = (shN * sh_axis_signs(degree, f)[None, :, None]).astype(np.float32)
    return out


def trim_sh_bands(shN: np.ndarray) -> np.ndarray:
    """Higher SH bands (N, K-1, 3) without the trailing bands that are zero for every Gaussian
    (a short run's untrained bands): lossless, and the quantised formats then store nothing
    rather than a value near zero."""
    degree = int(round(np.sqrt(shN.shape[1] + 1))) - 1
    while degree > 0 and not shN[:, degree**2 - 1 : (degree + 1) ** 2 - 1].any():
        degree -= 1
    return shN[:, : (degree + 1) ** 2 - 1]


def morton_order(means: np.ndarray) -> np.ndarray:
    """Permutation sorting points along a 3D Morton (Z-order) curve of 10 bits per axis, so that
    runs of consecutive points are compact in space (what chunked formats quantise against)."""
    lo, hi = means.min(0), means.max(0)
    q = ((means - lo) / np.where(hi > lo, hi - lo, 1.0) * 1023).astype(np.uint64)
    code = np.zeros(len(means), dtype=np.uint64)
    for bit in range(10):
        for axis in range(3):
            code |= ((q[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return np.argsort(code, kind="stable")


def to_numpy_splats(splats: dict) -> dict[str, np.ndarray]:
    """3D pre-activation splats (tensors or arrays) as float32 numpy arrays on the CPU."""

    def arr(v):
        return v.detach().cpu().float().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float32)

    means = arr(splats["means"])
    if means.ndim != 2 or means.shape[1] != 3:
        raise InputError(
            f"means: expected 3D Gaussians (N, 3), got shape {tuple(means.shape)} "
            "(4D scenes export a time slice: --time t)"
        )
    N = means.shape[0]
    shN = splats.get("shN")
    out = {
        "means": means,
        "scales": arr(splats["scales"]).reshape(N, 3),
        "quats": arr(splats["quats"]).reshape(N, 4),
        "opacities": arr(splats["opacities"]).reshape(N),
        "sh0": arr(splats["sh0"]).reshape(N, 1, 3),
        "shN": arr(shN).reshape(N, -1, 3) if shN is not None else np.zeros((N, 0, 3), np.float32),
    }
    for k, v in out.items():
        if not np.isfinite(v).all():
            raise InputError(f"{k}: NaN or Inf in the Gaussians to export")
    return out


def to_tensors(path, splats: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Checked float32 tensors from a reader's arrays (SH beyond degree 3 dropped)."""
    shN = splats["shN"]
    keep = (MAX_SH_DEGREE + 1) ** 2 - 1
    if shN.shape[1] > keep:
        shN = shN[:, :keep]
    out = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in {**splats, "shN": shN}.items()}
    if out["means"].shape[0] == 0:
        raise fail(path, "the splat file holds 0 Gaussians")
    for k, v in out.items():
        if not torch.isfinite(v).all():
            raise fail(path, f"'{k}' contains NaN or Inf")
    return out


def file_size(path: os.PathLike) -> int:
    return os.stat(path).st_size
