"""The trainable Gaussian scene's initialisation: Gaussians on points (from the dataset or random
within its bounds). Parameter names, layout and activations: `splat/gaussians.py`. Trainers keep
them in a torch ParameterDict, one Adam per entry so strategies can edit rows.
"""

from __future__ import annotations

import math

import torch

from splat.gaussians import rgb_to_sh


def knn_mean_distance(points: torch.Tensor, k: int = 3, chunk: int = 4096) -> torch.Tensor:
    """sqrt of the mean squared distance to each point's k nearest neighbours (exact, chunked)."""
    n = points.shape[0]
    if n <= 1:
        return torch.ones(n)
    k = min(k, n - 1)
    out = torch.empty(n)
    for start in range(0, n, chunk):
        d2 = torch.cdist(points[start : start + chunk], points).pow(2)
        nearest = d2.topk(k + 1, dim=1, largest=False).values[:, 1:]  # drop the point itself
        out[start : start + chunk] = nearest.mean(dim=1).sqrt()
    return out


def init_params(
    points: torch.Tensor,
    colors: torch.Tensor,
    sh_degree: int,
    init_opacity: float = 0.1,
    init_scale: float = 1.0,
    times: torch.Tensor | None = None,
    time_scale: float = 0.2,
) -> torch.nn.ParameterDict:
    """Gaussians on `points` with kNN-sized isotropic scales, identity rotations, `init_opacity`.
    With `times` (N,): 4D Gaussians at those times, lasting `time_scale` (std. dev.), static
    (identity 4D rotation)."""
    n = points.shape[0]
    dist = knn_mean_distance(points).clamp(min=1e-7)
    scales = torch.log(dist * init_scale)[:, None].repeat(1, 3)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    opacities = torch.full((n,), math.log(init_opacity / (1 - init_opacity)))
    sh0 = rgb_to_sh(colors.float())[:, None, :]
    shN = torch.zeros(n, (sh_degree + 1) ** 2 - 1, 3)
    tensors = dict(means=points.float(), scales=scales, quats=quats, opacities=opacities, sh0=sh0, shN=shN)
    if times is not None:
        tensors["means"] = torch.cat([points.float(), times.float()[:, None]], 1)
        tensors["scales"] = torch.cat([scales, torch.full((n, 1), math.log(time_scale))], 1)
        tensors["quats_right"] = quats.clone()
    return torch.nn.ParameterDict({k: torch.nn.Parameter(v.contiguous()) for k, v in tensors.items()})


def random_points(n: int, dataset, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n points with random colours where the dataset's content is: inside the training cameras'
    view frusta, between the near and far depth of its SceneBounds (datasets/scene_bounds.py)."""
    points = dataset.bounds.sample_points(n, dataset.train_cameras(), generator)
    colors = torch.rand(n, 3, generator=generator)
    return points, colors


BLOCK = 16  # pixels: sparse points cover an image block when one of them projects into it


def background_fill(
    n: int, dataset, points: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """n points for the parts of the training images that no sparse point covers (distant
    background a structure-from-motion model rarely reconstructs: sky, far walls), each on the
    ray of a random uncovered pixel of a random training image, at a depth between that camera's
    median point depth and 10x its 95th percentile (uniform in disparity), coloured as the pixel.

    Fewer points (possibly none) come back when the sparse points cover every image."""
    cams = [dataset.frames[i].camera for i in dataset.train_indices]
    pts64 = points.double()
    chosen_cams = torch.randint(len(cams), (n,), generator=generator)
    out_points, out_colors = [], []
    for c in torch.unique(chosen_cams).tolist():
        m = int((chosen_cams == c).sum())
        cam, index = cams[c], dataset.train_indices[c]
        view = torch.from_numpy(cam.viewmat)
        K = torch.from_numpy(cam.K)
        p = pts64 @ view[:3, :3].T + view[:3, 3]
        front = p[:, 2] > 1e-6
        if int(front.sum()) < 8:
            continue
        p = p[front]
        uv = (p[:, :2] / p[:, 2:]) @ K[:2, :2].T + K[:2, 2]
        bw, bh = math.ceil(cam.width / BLOCK), math.ceil(cam.height / BLOCK)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
        covered = torch.zeros(bh, bw, dtype=torch.bool)
        blocks = (uv[inside] / BLOCK).long()
        covered[blocks[:, 1], blocks[:, 0]] = True
        free = (~covered).nonzero()
        if free.shape[0] == 0:
            continue
        depths = p[inside, 2] if bool(inside.any()) else p[:, 2]
        near = float(depths.median())
        far = 10.0 * float(torch.quantile(depths, 0.95))
        pick = free[torch.randint(free.shape[0], (m,), generator=generator)]
        jitter = torch.rand(m, 2, generator=generator, dtype=torch.float64) * BLOCK
        px = (pick[:, 1] * BLOCK + jitter[:, 0]).clamp(max=cam.width - 1e-3)
        py = (pick[:, 0] * BLOCK + jitter[:, 1]).clamp(max=cam.height - 1e-3)
        s = torch.rand(m, generator=generator, dtype=torch.float64)
        z = 1.0 / (1.0 / near + (1.0 / far - 1.0 / near) * s)
        p_cam = torch.stack([(px - K[0, 2]) / K[0, 0] * z, (py - K[1, 2]) / K[1, 1] * z, z], dim=1)
        out_points.append((p_cam - view[:3, 3]) @ view[:3, :3])  # R^T (p - t)
        rgb, _ = dataset.image(index)
        out_colors.append(rgb[py.long(), px.long()])
    if not out_points:
        return torch.zeros(0, 3), torch.zeros(0, 3)
    return torch.cat(out_points).float(), torch.cat(out_colors).float()
