"""A static procedural scene built from Gaussians: a checkerboard floor, a striped sphere, a cube with
shaded faces and a rainbow torus. Colour, texture-like detail and depth variation, ~16k Gaussians,
small enough to render interactively on a CPU. Deterministic for a given seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from splat.camera import Camera

from .cameras import orbit_cameras


def _quat_from_normals(normals: torch.Tensor) -> torch.Tensor:
    """wxyz quaternions rotating +z onto each unit normal (flat splats lie in the tangent plane)."""
    z = torch.tensor([0.0, 0.0, 1.0], dtype=normals.dtype)
    axis = torch.linalg.cross(z.expand_as(normals), normals)
    s = axis.norm(dim=-1, keepdim=True)
    c = (normals * z).sum(-1, keepdim=True)
    angle = torch.atan2(s, c)
    axis = torch.where(s > 1e-8, axis / s.clamp(min=1e-12), torch.tensor([1.0, 0.0, 0.0], dtype=normals.dtype))
    return torch.cat([torch.cos(angle / 2), torch.sin(angle / 2) * axis], dim=-1)


def _hsv(h: torch.Tensor, s: float, v: float) -> torch.Tensor:
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=-1)
    return v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _floor(n: int, half: float):
    u = torch.linspace(-half, half, n)
    x, y = torch.meshgrid(u, u, indexing="ij")
    means = torch.stack([x.flatten(), y.flatten(), torch.zeros(n * n)], -1)
    cells = (torch.floor(x.flatten() / 0.25) + torch.floor(y.flatten() / 0.25)) % 2
    light = torch.tensor([0.85, 0.82, 0.75])
    dark = torch.tensor([0.25, 0.28, 0.35])
    colors = torch.where(cells[:, None] > 0, light, dark)
    step = 2 * half / (n - 1)
    scales = torch.tensor([step * 0.7, step * 0.7, step * 0.05]).expand(n * n, 3)
    quats = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(n * n, 4)
    return means, quats, scales, colors


def _sphere(n: int, center, radius: float):
    k = torch.arange(n, dtype=torch.float32) + 0.5
    phi = torch.acos(1 - 2 * k / n)  # Fibonacci sphere: even coverage
    theta = math.pi * (1 + 5**0.5) * k
    normals = torch.stack([torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi), torch.cos(phi)], -1)
    means = torch.tensor(center) + radius * normals
    stripes = (torch.floor(phi / (math.pi / 10)) % 2)[:, None]
    colors = torch.where(stripes > 0, torch.tensor([0.9, 0.3, 0.2]), torch.tensor([0.95, 0.9, 0.8]))
    size = radius * math.sqrt(4 * math.pi / n) * 0.8
    scales = torch.tensor([size, size, size * 0.1]).expand(n, 3)
    return means, _quat_from_normals(normals), scales, colors


def _cube(per_edge: int, center, size: float):
    means, normals, colors = [], [], []
    u = torch.linspace(-0.5, 0.5, per_edge)
    a, b = torch.meshgrid(u, u, indexing="ij")
    a, b = a.flatten(), b.flatten()
    face_colors = [
        (0.2, 0.5, 0.9),
        (0.1, 0.35, 0.7),
        (0.3, 0.75, 0.4),
        (0.2, 0.55, 0.3),
        (0.95, 0.8, 0.2),
        (0.6, 0.5, 0.1),
    ]
    for axis in range(3):
        for k, sign in enumerate((1.0, -1.0)):
            p = torch.zeros(a.shape[0], 3)
            others = [i for i in range(3) if i != axis]
            p[:, axis] = 0.5 * sign
            p[:, others[0]] = a
            p[:, others[1]] = b
            nrm = torch.zeros_like(p)
            nrm[:, axis] = sign
            shade = 0.75 + 0.25 * torch.cos(6 * a)[:, None] * torch.cos(6 * b)[:, None]  # soft pattern
            means.append(p * size + torch.tensor(center))
            normals.append(nrm)
            colors.append(torch.tensor(face_colors[2 * axis + k]) * shade)
    means, normals, colors = torch.cat(means), torch.cat(normals), torch.cat(colors)
    step = size / (per_edge - 1)
    scales = torch.tensor([step * 0.7, step * 0.7, step * 0.05]).expand(means.shape[0], 3)
    return means, _quat_from_normals(normals), scales, colors


def _torus(n_major: int, n_minor: int, center, R: float, r: float):
    t = torch.linspace(0, 2 * math.pi, n_major + 1)[:-1]
    p = torch.linspace(0, 2 * math.pi, n_minor + 1)[:-1]
    T, P = torch.meshgrid(t, p, indexing="ij")
    T, P = T.flatten(), P.flatten()
    normals = torch.stack([torch.cos(T) * torch.cos(P), torch.sin(T) * torch.cos(P), torch.sin(P)], -1)
    ring = torch.stack([torch.cos(T), torch.sin(T), torch.zeros_like(T)], -1)
    means = torch.tensor(center) + R * ring + r * normals
    colors = _hsv(T / (2 * math.pi), 0.75, 0.95)
    size = 2 * math.pi * max(R / n_major, r / n_minor) * 0.8
    scales = torch.tensor([size, size, size * 0.1]).expand(means.shape[0], 3)
    return means, _quat_from_normals(normals), scales, colors


def _speckle(means: torch.Tensor, g: torch.Generator, waves: int = 32) -> torch.Tensor:
    """A multi-scale blotchy pattern in [0, 1] over space (a sum of random plane waves, 2 to 14
    cycles a unit): the distinct corners and blobs that feature matchers need."""
    directions = torch.nn.functional.normalize(torch.randn(waves, 3, generator=g), dim=-1)
    frequency = 2.0 + 12.0 * torch.rand(waves, generator=g)
    phase = 2 * math.pi * torch.rand(waves, generator=g)
    value = torch.sin(2 * math.pi * frequency * (means @ directions.T) + phase).sum(-1) / math.sqrt(waves / 2)
    return torch.sigmoid(2.5 * value)


def still_life(seed: int = 0, speckled: bool = False) -> dict[str, torch.Tensor]:
    """Gaussians of the still-life scene (float32, CPU): means, quats (wxyz), scales and opacities
    (activated), colors (RGB in [0, 1]). The scene sits on z = 0 with +z up, within |x|, |y| < 1.5.
    `speckled`: every surface darkened by a blotchy pattern, so that structure from motion finds
    features to match (the plain scene's smooth colours and repeating checkers give it too few)."""
    parts = [
        _floor(90, 1.5),
        _sphere(4000, (-0.55, -0.2, 0.45), 0.42),
        _cube(22, (0.55, 0.35, 0.3), 0.6),
        _torus(96, 24, (0.15, -0.85, 0.25), 0.32, 0.1),
    ]
    means, quats, scales, colors = (torch.cat([p[i] for p in parts]) for i in range(4))
    g = torch.Generator().manual_seed(seed)
    colors = (colors + 0.03 * torch.randn(colors.shape, generator=g)).clamp(0, 1)  # a little grain
    if speckled:
        colors = colors * (0.25 + 0.75 * _speckle(means, g))[:, None]
    opacities = torch.full((means.shape[0],), 0.95)
    return {
        "means": means.float().contiguous(),
        "quats": quats.float().contiguous(),
        "scales": scales.float().contiguous(),
        "opacities": opacities,
        "colors": colors.float().contiguous(),
    }


def still_life_orbit(
    n: int, width: int, height: int, radius: float = 3.2, height_above: float = 1.6, fov_x: float = 55.0
) -> list[Camera]:
    """n cameras orbiting the still life, the first looking along +y."""
    target = (0.0, 0.0, 0.25)
    return orbit_cameras(n, radius, height_above, target, -math.pi / 2, width=width, image_height=height, fov_x=fov_x)


def still_life_cameras(
    n: int, width: int, height: int, radius: float = 3.2, height_above: float = 1.6, fov_x: float = 55.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """`still_life_orbit` as `splat.rasterize` tensors: (viewmats (n, 4, 4), Ks (n, 3, 3)) float32."""
    cams = still_life_orbit(n, width, height, radius, height_above, fov_x)
    return tuple(torch.from_numpy(np.stack([getattr(c, m) for c in cams])).float() for m in ("viewmat", "K"))
