"""4D-Rotor GS's velocity consistency (Duan et al. 2024) for 4D (XYZT) Gaussians on monocular
dynamic data.

With one camera per instant, a frame can be reproduced by Gaussians that move just so for that
one view; this term makes each Gaussian move as its 4D neighbours move, so that motion seen in one
frame carries to the next. It acts on the Gaussians drawn at the step's times (the renderer's
"gaussian_ids"): the others get no photometric gradient either. (4D-Rotor's other term, opacity
entropy at its weight 0.001, changed nothing on D-NeRF lego: bench/results/train_dnerf-cpu.json.)
"""

from __future__ import annotations

import torch

TIME_STRETCH = 5.0  # 4D-Rotor's neighbourhoods: a time difference counts 5x a distance
CELL_OCCUPANCY = 8.0  # Gaussians per occupied cell aimed at (4D-Rotor: 8 nearest neighbours)


def neighbour_cells(points: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A cell index per point of a 4D grid whose occupied cells hold about CELL_OCCUPANCY points
    on average (cell size from the points' bounding box), randomly offset so that cell borders
    move from call to call. Points in one cell are each other's neighbours. Indices are below
    4 x the number of points, not necessarily consecutive (some cells may be empty)."""
    n = points.shape[0]
    lo, hi = points.min(dim=0).values, points.max(dim=0).values
    volume = torch.clamp(hi - lo, min=1e-6).prod()
    size = float((volume * CELL_OCCUPANCY / max(n, 1)) ** 0.25)
    offset = torch.rand(points.shape[1], generator=generator).to(points) * size
    cells = torch.floor((points - lo + offset) / size).long()  # >= 0 on every axis
    extent = cells.max(dim=0).values + 1
    key = cells[:, 0]
    for d in range(1, cells.shape[1]):  # one integer per cell: a 1-D unique is far cheaper than rows
        key = key * extent[d] + cells[:, d]
    if int(extent.prod()) <= 4 * n:  # the grid's own cell numbers are small enough: no sort
        return key
    _, index = torch.unique(key, return_inverse=True)  # a flat axis makes the grid too large
    return index


def velocity_consistency(means: torch.Tensor, velocities: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mean L1 distance between each Gaussian's velocity and the mean velocity of the other
    Gaussians in its 4D neighbourhood (x, y, z, TIME_STRETCH x t; a grid cell, see
    `neighbour_cells`), over Gaussians that have neighbours. `means` (M, 4) and `velocities`
    (M, 3) are the alive Gaussians' (rows in the same order); differentiable in the velocities."""
    points = means.detach().clone()
    points[:, 3] *= TIME_STRETCH
    cell = neighbour_cells(points, generator)
    v = velocities
    n_cells = int(cell.max()) + 1 if cell.numel() else 0
    total = torch.zeros(n_cells, 3, dtype=v.dtype, device=v.device).index_add(0, cell, v)
    count = torch.zeros(n_cells, dtype=v.dtype, device=v.device).index_add(0, cell, torch.ones_like(v[:, 0]))
    others = count.index_select(0, cell) - 1.0
    has = (others > 0).to(v.dtype)
    if not bool(has.any()):
        return velocities.new_zeros(())
    mean_others = (total.index_select(0, cell) - v) / others.clamp(min=1.0)[:, None]
    return ((mean_others - v).abs().sum(dim=-1) * has).sum() / has.sum()


def alive_velocities(infos: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (M,), velocities (M, 3)) of the Gaussians drawn in any of a step's renders (their
    "gaussian_ids"), each velocity from the first render that drew it (`rasterize_4d` reports
    velocities for its "live_ids" only)."""
    if len(infos) == 1:  # one render: its ids are unique and sorted already
        info = infos[0]
        ids, live = info["gaussian_ids"], info["live_ids"]
        if ids.numel() == live.numel():
            return ids, info["velocities"]
        return ids, info["velocities"].index_select(0, torch.searchsorted(live, ids))
    ids = torch.cat([info["gaussian_ids"] for info in infos])
    rows = [info["velocities"][torch.searchsorted(info["live_ids"], info["gaussian_ids"])] for info in infos]
    velocities = torch.cat(rows)
    alive, inverse = torch.unique(ids, return_inverse=True)
    order = torch.arange(ids.numel(), device=ids.device)
    first = torch.full((alive.numel(),), ids.numel(), device=ids.device).scatter_reduce(0, inverse, order, "amin")
    return alive, velocities.index_select(0, first)
