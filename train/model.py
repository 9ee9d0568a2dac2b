"""The trainable Gaussian scene's initialisation: Gaussians on points (from the dataset or random
within its bounds). Parameter names, layout and activations: `splat/gaussians.py`. Trainers keep
them in a torch ParameterDict, one Adam per entry so strategies can edit rows.
"""

from __future__ import annotations

import math

import torch

from splat.camera import pixel_rays
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
NEIGHBOURS = 8  # a fill point takes its depth from this many sparse points nearest in the image
FILL_BEYOND = 1.5  # ... up to this factor behind the farthest of them


def background_fill(
    n: int, dataset, points: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """n points for the parts of the training images that no sparse point covers (distant
    background a structure-from-motion model rarely reconstructs: sky, far walls), each on the
    ray of a random pixel of a random training image whose BLOCK x BLOCK block no point projects
    into, coloured as the pixel. Its depth is that of the farthest of the NEIGHBOURS sparse points
    that project nearest to the pixel, times 1 to FILL_BEYOND (uniform): an uncovered patch is
    most often a textureless wall or sky behind what surrounds it. A fill point in front of the
    true surface is a floater that hides the background from other views (on beer, a depth drawn
    between the camera's median and 10x its far points put most fill in front of the doors).

    Fewer points (possibly none) come back when the sparse points cover every image."""
    chosen = torch.randint(len(dataset.train_indices), (n,), generator=generator)
    out_points, out_colors = [], []
    for c in torch.unique(chosen).tolist():
        m = int((chosen == c).sum())
        index = dataset.train_indices[c]
        cam = dataset.frames[index].camera
        view, K = torch.from_numpy(cam.viewmat), torch.from_numpy(cam.K)
        depth = points.double() @ view[2, :3] + view[2, 3]  # camera z
        front = depth > 1e-6
        if int(front.sum()) < 8:
            continue
        uv = torch.from_numpy(cam.project(points[front].numpy()))
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
        covered = torch.zeros(math.ceil(cam.height / BLOCK), math.ceil(cam.width / BLOCK), dtype=torch.bool)
        blocks = (uv[inside] / BLOCK).long()
        covered[blocks[:, 1], blocks[:, 0]] = True
        free = (~covered).nonzero()  # (block row, block column)
        if free.shape[0] == 0:
            continue
        block = free[torch.randint(free.shape[0], (m,), generator=generator)].flip(1)  # (column, row)
        pixels = block * BLOCK + torch.randint(BLOCK, (m, 2), generator=generator)
        pixels = torch.minimum(pixels, torch.tensor([cam.width - 1, cam.height - 1]))
        seen_uv, seen_z = (uv[inside], depth[front][inside]) if bool(inside.any()) else (uv, depth[front])
        k = min(NEIGHBOURS, seen_z.shape[0])
        nearest = torch.cdist(pixels.double() + 0.5, seen_uv).topk(k, largest=False).indices
        s = torch.rand(m, generator=generator, dtype=torch.float64)
        z = seen_z[nearest].amax(dim=1) * (1.0 + (FILL_BEYOND - 1.0) * s)
        origins, dirs = pixel_rays(pixels, K, view, cam.model)
        out_points.append(origins + dirs * (z / (dirs @ view[2, :3]))[:, None])  # at camera z
        rgb, _ = dataset.image(index)
        out_colors.append(rgb[pixels[:, 1], pixels[:, 0]])
    if not out_points:
        return torch.zeros(0, 3), torch.zeros(0, 3)
    return torch.cat(out_points).float(), torch.cat(out_colors).float()
