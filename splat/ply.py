"""INRIA 3DGS PLY: the interchange format every splat viewer reads.

One `vertex` element, float32 properties in this order:
x y z nx ny nz f_dc_0..2 f_rest_0..(3K-4) opacity scale_0..2 rot_0..3
with pre-activation values (opacity logit, log-scales, unnormalised wxyz quaternion, normals 0)
and f_rest channel-major (all of R's coefficients, then G's, then B's).

`load_ply` reads INRIA, gsplat and nerfstudio exports (the same layout; extra properties are
ignored; missing f_rest means SH degree 0).

4D (dynamic) Gaussians add six properties after rot_3: `t` (mean time), `scale_t` (log temporal
scale), `rotr_0..3` (the right quaternion of the 4D rotation L(q_l) R(q_r); rot_0..3 hold q_l).
Static viewers that ignore them show the 4D Gaussians' spatial parts, un-sliced.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .formats.common import MAX_SH_DEGREE
from .io_utils import atomic_path


class PlyError(InputError):
    """A PLY file that is not a Gaussian splat file (message names the file)."""


def sh_degree_of(num_rest: int) -> int:
    """SH degree from the count of f_rest properties (3 * ((d + 1)^2 - 1))."""
    bases = num_rest // 3 + 1
    degree = int(round(math.sqrt(bases))) - 1
    if 3 * ((degree + 1) ** 2 - 1) != num_rest:
        raise ValueError(f"{num_rest} f_rest properties do not match any SH degree")
    return degree


def save_ply(path: str | os.PathLike, splats: dict[str, torch.Tensor]) -> None:
    """Write pre-activation splats {means (N,3), scales (N,3) log, quats (N,4) wxyz,
    opacities (N,) logit, sh0 (N,1,3), shN (N,K-1,3)} as an INRIA PLY, atomically; 4D splats
    (means and scales (N,4), quats_right) add the properties listed in the module docstring."""
    from plyfile import PlyData, PlyElement

    means = splats["means"].detach().float().cpu().numpy()
    N = means.shape[0]
    sh0 = splats["sh0"].detach().float().cpu().reshape(N, -1, 3)
    shN = splats.get("shN")
    shN = shN.detach().float().cpu().reshape(N, -1, 3) if shN is not None else torch.zeros(N, 0, 3)
    # channel-major f_rest: (N, K-1, 3) -> (N, 3, K-1) -> flat
    f_rest = shN.transpose(1, 2).reshape(N, -1).numpy()
    columns = [
        ("x", means[:, 0]),
        ("y", means[:, 1]),
        ("z", means[:, 2]),
        ("nx", np.zeros(N)),
        ("ny", np.zeros(N)),
        ("nz", np.zeros(N)),
    ]
    columns += [(f"f_dc_{i}", sh0[:, 0, i].numpy()) for i in range(3)]
    columns += [(f"f_rest_{i}", f_rest[:, i]) for i in range(f_rest.shape[1])]
    columns += [("opacity", splats["opacities"].detach().float().cpu().reshape(N).numpy())]
    scales = splats["scales"].detach().float().cpu().numpy()
    quats = splats["quats"].detach().float().cpu().numpy()
    columns += [(f"scale_{i}", scales[:, i]) for i in range(3)]
    columns += [(f"rot_{i}", quats[:, i]) for i in range(4)]
    if means.shape[1] == 4:  # 4D
        right = splats["quats_right"].detach().float().cpu().numpy()
        columns += [("t", means[:, 3]), ("scale_t", scales[:, 3])] + [(f"rotr_{i}", right[:, i]) for i in range(4)]
    vertex = np.empty(N, dtype=[(name, "f4") for name, _ in columns])
    for name, values in columns:
        vertex[name] = values
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp))


def load_ply(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a Gaussian-splat PLY into pre-activation tensors (float32, CPU), as `save_ply` writes them.

    Returns {means, scales, quats, opacities, sh0 (N,1,3), shN (N,K-1,3)}; raises PlyError with the
    file name for anything that is not one.
    """
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise PlyError(f"{path}: no such file")
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
    except Exception as e:  # noqa: BLE001 - plyfile raises many types for malformed files
        raise PlyError(f"{path}: not a readable PLY file ({e.__class__.__name__}: {e})") from None
    names = set(vertex.data.dtype.names or ())
    required = ["x", "y", "z", "opacity"] + [f"f_dc_{i}" for i in range(3)]
    required += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    missing = [n for n in required if n not in names]
    if missing:
        raise PlyError(f"{path}: not a Gaussian splat PLY (missing properties: {', '.join(missing)})")
    N = len(vertex.data)
    if N == 0:
        raise PlyError(f"{path}: the splat file holds 0 Gaussians")
    rest = [f"f_rest_{i}" for i in range(sum(n.startswith("f_rest_") for n in names))]
    if not set(rest) <= names:  # f_rest_x, or a gap in the numbering
        odd = sorted(n for n in names if n.startswith("f_rest_") and n not in rest)
        raise PlyError(f"{path}: SH properties must be f_rest_0..f_rest_{len(rest) - 1}, got {', '.join(odd[:3])}")
    try:
        degree = sh_degree_of(len(rest))
    except ValueError as e:
        raise PlyError(f"{path}: {e}") from None

    def col(*keys):
        return torch.from_numpy(np.stack([np.asarray(vertex[k], dtype=np.float32) for k in keys], axis=-1))

    out = {
        "means": col("x", "y", "z"),
        "scales": col("scale_0", "scale_1", "scale_2"),
        "quats": col("rot_0", "rot_1", "rot_2", "rot_3"),
        "opacities": col("opacity")[:, 0],
        "sh0": col("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :],
    }
    if {"t", "scale_t", "rotr_0", "rotr_1", "rotr_2", "rotr_3"} <= names:  # 4D
        out["means"] = col("x", "y", "z", "t")
        out["scales"] = col("scale_0", "scale_1", "scale_2", "scale_t")
        out["quats_right"] = col("rotr_0", "rotr_1", "rotr_2", "rotr_3")
    if rest:  # channel-major; bands above MAX_SH_DEGREE (degree 4 files) are dropped, as the renderer stops there
        keep = (min(degree, MAX_SH_DEGREE) + 1) ** 2 - 1
        out["shN"] = col(*rest).reshape(N, 3, -1)[:, :, :keep].transpose(1, 2).contiguous()
    else:
        out["shN"] = torch.zeros(N, 0, 3)
    for k, v in out.items():
        if not torch.isfinite(v).all():
            raise PlyError(f"{path}: property block '{k}' contains NaN or Inf")
    for k in ("quats", "quats_right"):
        if k in out and (out[k].norm(dim=-1) == 0).any():
            n = int((out[k].norm(dim=-1) == 0).sum())
            raise PlyError(
                f"{path}: {n} Gaussian(s) have an all-zero rotation quaternion ('{k}'), which is no rotation"
            )
    return out
