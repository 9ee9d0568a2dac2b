"""4D-Rotor's velocity consistency (train/dynamic.py) against its definition written out by hand,
on fresh random Gaussians; gradients against the hand-written twin and float64 finite differences."""

from __future__ import annotations

import pytest
import torch

from splat.train import dynamic


def test_neighbour_cells_group_nearby_points(gen):
    points = torch.rand(4000, 4, generator=gen, dtype=torch.float64)
    cell = dynamic.neighbour_cells(points, gen)
    counts = torch.bincount(cell)
    assert cell.max() < 4 * 4000
    assert 4 <= counts[counts > 0].float().mean() <= 16  # about CELL_OCCUPANCY an occupied cell
    # points in one cell are within one cell size of each other on every axis
    size = (dynamic.CELL_OCCUPANCY / 4000) ** 0.25
    occupied = counts.nonzero().flatten()
    for c in occupied[torch.randperm(occupied.numel(), generator=gen)[:50]].tolist():
        members = points[cell == c]
        assert (members.max(0).values - members.min(0).values <= size + 1e-9).all()
    # a flat axis (every point at one time) makes the grid huge: cells are renumbered densely
    points[:, 3] = 0.5
    cell = dynamic.neighbour_cells(points, gen)
    assert torch.equal(torch.unique(cell), torch.arange(int(cell.max()) + 1))
    assert torch.bincount(cell).float().mean() >= 1


def velocity_term_by_hand(means, velocities, alive, cell):
    """The same term from an explicit loop over the Gaussians and their cell mates."""
    v = velocities[alive]
    terms = []
    for i in range(len(alive)):
        mates = [j for j in range(len(alive)) if cell[j] == cell[i] and j != i]
        if mates:
            terms.append((v[mates].mean(0) - v[i]).abs().sum())
    return torch.stack(terms).mean()


def test_velocity_consistency_is_its_definition_with_gradients(seed):
    n = 400
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 4, generator=g, dtype=torch.float64)
    velocities = torch.randn(n, 3, generator=g, dtype=torch.float64, requires_grad=True)
    alive = torch.randperm(n, generator=g)[:250]
    state = g.get_state()
    value = dynamic.velocity_consistency(means[alive], velocities[alive], g)
    g.set_state(state)  # the same random cell offset for the hand-written twin
    points = means[alive].clone()
    points[:, 3] *= dynamic.TIME_STRETCH
    cell = dynamic.neighbour_cells(points, g)
    expected = velocity_term_by_hand(means, velocities, alive, cell)
    assert value.item() == pytest.approx(expected.item(), rel=1e-10)
    grad = torch.autograd.grad(value, velocities)[0]
    grad_by_hand = torch.autograd.grad(expected, velocities)[0]
    assert torch.allclose(grad, grad_by_hand, atol=1e-12)

    def term(v):
        g.set_state(state)
        return dynamic.velocity_consistency(means[alive], v[alive], g)

    assert torch.autograd.gradcheck(term, (velocities,))
    assert grad[alive].abs().sum() > 0 and grad[[i for i in range(n) if i not in set(alive.tolist())]].abs().sum() == 0
    # Gaussians moving together cost nothing
    same = torch.randn(1, 3, generator=g, dtype=torch.float64).expand(n, 3)
    assert dynamic.velocity_consistency(means[alive], same[alive], g).item() == pytest.approx(0.0, abs=1e-12)


def test_alive_velocities_take_each_gaussian_once(gen):
    """Two renders of a step (two times) report velocities for their own live Gaussians only: the
    term gets each drawn Gaussian once, with the velocity its rows say."""
    n = 60
    velocities = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    infos = []
    for _ in range(2):
        live = torch.randperm(n, generator=gen)[:40].sort().values
        drawn = live[torch.randperm(40, generator=gen)[:25]]
        infos.append({"live_ids": live, "gaussian_ids": drawn, "velocities": velocities[live]})
    alive, v = dynamic.alive_velocities(infos)
    expected = torch.unique(torch.cat([i["gaussian_ids"] for i in infos]))
    assert torch.equal(alive, expected)
    assert torch.equal(v, velocities[alive])
