"""Benchmark scenes: the real garden points (gsplat's test scene) and a synthetic 1M-Gaussian scene."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from common import DATASETS

GARDEN = DATASETS / "garden_points" / "test_garden.npz"


def garden(seed: int = 42):
    """138,766 coloured points of Mip-NeRF 360 garden with its 3 cameras (648x420), given Gaussian
    attributes the way gsplat's tests do: scales U(1e-4, 0.02), random unit quats, opacities U(0, 1)."""
    if not GARDEN.exists():
        raise FileNotFoundError(f"{GARDEN} is missing (see ../shared/datasets/README.md)")
    d = np.load(GARDEN)
    g = torch.Generator().manual_seed(seed)
    means = torch.from_numpy(d["means3d"]).float()
    N = means.shape[0]
    return dict(
        means=means,
        quats=F.normalize(torch.randn((N, 4), generator=g), dim=-1),
        scales=torch.rand((N, 3), generator=g) * (0.02 - 1e-4) + 1e-4,
        opacities=torch.rand((N,), generator=g),
        colors=torch.from_numpy(d["colors"] / 255.0).float(),
        viewmats=torch.from_numpy(d["viewmats"]).float(),
        Ks=torch.from_numpy(d["Ks"]).float(),
        width=int(d["width"]),
        height=int(d["height"]),
    )


def synthetic(n: int = 1_000_000, width: int = 1920, height: int = 1080, seed: int = 0):
    """n Gaussians filling one camera's frustum at depths 2..10, sized like a trained scene's
    (projected sigma log-uniform in 0.5..8 px, anisotropic), opacities U(0.05, 0.95), random colours."""
    g = torch.Generator().manual_seed(seed)
    f = 1000.0
    cx, cy = width / 2, height / 2
    z = torch.exp(torch.empty(n).uniform_(math.log(2.0), math.log(10.0), generator=g))
    u = torch.empty(n).uniform_(-64, width + 64, generator=g)
    v = torch.empty(n).uniform_(-64, height + 64, generator=g)
    means = torch.stack([(u - cx) / f * z, (v - cy) / f * z, z], -1)
    sigma_px = torch.exp(torch.empty(n).uniform_(math.log(0.5), math.log(8.0), generator=g))
    aniso = torch.exp(torch.empty(n, 3).uniform_(math.log(0.5), math.log(2.0), generator=g))
    scales = (sigma_px * z / f)[:, None] * aniso
    K = torch.tensor([[f, 0, cx], [0, f, cy], [0, 0, 1]])
    return dict(
        means=means,
        quats=F.normalize(torch.randn((n, 4), generator=g), dim=-1),
        scales=scales,
        opacities=torch.empty(n).uniform_(0.05, 0.95, generator=g),
        colors=torch.rand((n, 3), generator=g),
        viewmats=torch.eye(4)[None],
        Ks=K[None],
        width=width,
        height=height,
    )


SCENES = {
    "garden": garden,
    "synthetic_1m": synthetic,
    # `gpu_check.py --dry`: the same kind of scene, small enough for a CI run on the CPU
    "synthetic_small": lambda: synthetic(n=3000, width=160, height=96),
}
