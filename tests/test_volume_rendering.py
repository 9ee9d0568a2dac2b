"""Volume rendering of packed ray samples (Warp, float32) against its float64 torch twin."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close_rel

from splat.fields.volume_rendering import composite_rays, composite_rays_torch


def random_rays(gen, R: int = 60, max_samples: int = 40):
    counts = torch.randint(0, max_samples, (R,), generator=gen)
    counts[0] = 0  # an empty ray
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    S = int(offsets[-1])
    sigmas = torch.exp(torch.randn(S, generator=gen, dtype=torch.float64) * 1.5)
    sigmas[torch.rand(S, generator=gen) < 0.1] = 0.0  # empty space
    dense = torch.randperm(R, generator=gen)[: R // 4]
    for r in dense.tolist():  # opaque rays: terminate early
        sigmas[offsets[r] : offsets[r + 1]] *= 50
    rgbs = torch.rand((S, 3), generator=gen, dtype=torch.float64)
    deltas = 0.02 + 0.1 * torch.rand(S, generator=gen, dtype=torch.float64)
    t_ends = torch.zeros(S, dtype=torch.float64)
    for r in range(R):
        a, b = int(offsets[r]), int(offsets[r + 1])
        t_ends[a:b] = 0.5 + deltas[a:b].cumsum(0)
    return offsets, sigmas, rgbs, t_ends - deltas, t_ends


def test_composite_rays_matches_twin(gen, device="cpu"):
    offsets, sigmas, rgbs, t0, t1 = random_rays(gen)
    s32, c32 = sigmas.float().to(device).requires_grad_(True), rgbs.float().to(device).requires_grad_(True)
    s64, c64 = sigmas.float().double().requires_grad_(True), rgbs.float().double().requires_grad_(True)
    colors, opac, depth, used = composite_rays(
        offsets.to(device), s32, c32, t0.float().to(device), t1.float().to(device)
    )
    assert colors.device.type == torch.device(device).type
    colors, opac, depth, used = colors.cpu(), opac.cpu(), depth.cpu(), used.cpu()
    ref = composite_rays_torch(offsets, s64, c64, t0.float().double(), t1.float().double())
    assert (used < offsets[1:]).any(), "no ray terminated early: the test does not cover early termination"
    assert opac[0] == 0 and colors[0].abs().max() == 0
    for name, a, b in zip(("colors", "opacities", "depths"), (colors, opac, depth), ref):
        assert_close_rel(a, b, 1e-5, name)
    ups = [torch.randn(x.shape, generator=gen, dtype=torch.float64) for x in ref]
    sum((a.double() * u).sum() for a, u in zip((colors, opac, depth), ups)).backward()
    sum((b * u).sum() for b, u in zip(ref, ups)).backward()
    assert_close_rel(s32.grad, s64.grad, 1e-4, "d loss / d sigmas")
    assert_close_rel(c32.grad, c64.grad, 1e-4, "d loss / d rgbs")
    late = torch.cat([torch.arange(int(u), int(e)) for u, e in zip(used, offsets[1:])])
    assert late.numel() > 0 and (s32.grad.cpu()[late] == 0).all(), "samples after termination must get no gradient"


def test_composite_rays_bad_input():
    with pytest.raises(ValueError, match="ray_offsets"):
        composite_rays(torch.tensor([0, 5]), torch.ones(4), torch.ones(4, 3), torch.zeros(4), torch.ones(4))
    with pytest.raises(ValueError, match="rgbs"):
        composite_rays(torch.tensor([0, 4]), torch.ones(4), torch.ones(4, 2), torch.zeros(4), torch.ones(4))
