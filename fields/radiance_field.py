"""An Instant-NGP radiance field and its renderer.

Network (Instant-NGP's NeRF): the hash grid + a 64-wide, one-hidden-layer MLP (`HashGridMLP`, the
fused kernels on CUDA) give 16 outputs; density = exp(first) (gradient clamped, "truncated exp"),
the other 15 are geometry features. Colour: a 64-wide, two-hidden-layer MLP of those features and
the view direction in real spherical harmonics of degree 4 (16 terms), sigmoid output.

Rendering: `render_rays_train` marches every sample of a batch of rays (packed), evaluates the
network and composites with `composite_rays` (hand-written backward). `render_rays` (inference)
marches a few samples per ray at a time and drops each ray once its transmittance falls below 1e-4,
so opaque surfaces stop the march (early termination); both follow the same quadrature.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from splat.renderer.torch_impl import sh_basis

from .fused import HashGridMLP
from .marching import OccupancyGrid, march, ray_box, to_unit_torch
from .volume_rendering import TRANSMITTANCE_MIN, composite_rays

NEAR = 0.05  # nearest sample distance, in the normalised frame (cameras at distance ~1)
FAR_UNBOUNDED = 1e3  # unbounded scenes: farthest sample distance


@dataclasses.dataclass
class FieldSpec:
    """Everything that fixes a field's shape (stored in checkpoints, so a field loads without its
    training configuration)."""

    bound: float = 0.375  # half-size of the scene box, in the normalised frame (cameras at ~1)
    contract: bool = False  # unbounded scene: contract space outside the box (see marching.py)
    n_levels: int = 16
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048  # finest level; per_level_scale follows
    grid_resolution: int = 128  # occupancy grid cells per axis

    @property
    def per_level_scale(self) -> float:
        return math.exp(math.log(self.max_resolution / self.base_resolution) / max(self.n_levels - 1, 1))


class _TruncExp(torch.autograd.Function):
    """exp with its gradient's argument clamped at 15 (Instant-NGP), so a spike cannot blow up."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15))


class RadianceField(torch.nn.Module):
    def __init__(self, spec: FieldSpec, generator: torch.Generator | None = None, fused: bool | None = None):
        super().__init__()
        self.spec = spec
        self.density_net = HashGridMLP(
            16,
            n_hidden_layers=1,
            generator=generator,
            fused=fused,
            n_input_dims=3,
            n_levels=spec.n_levels,
            n_features_per_level=spec.n_features_per_level,
            log2_hashmap_size=spec.log2_hashmap_size,
            base_resolution=spec.base_resolution,
            per_level_scale=spec.per_level_scale,
        )
        layers = []
        for n_in, n_out in ((15 + 16, 64), (64, 64), (64, 3)):
            layer = torch.nn.Linear(n_in, n_out, bias=False)
            bound = math.sqrt(6.0 / n_in)  # Kaiming-uniform for ReLU, from the shared generator
            with torch.no_grad():
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
            layers += [layer, torch.nn.ReLU()]
        self.color_net = torch.nn.Sequential(*layers[:-1])

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return to_unit_torch(x, self.spec.bound, self.spec.contract)

    def density(self, u: torch.Tensor) -> torch.Tensor:
        """Density at field coordinates u (N, 3) in [0, 1]^3."""
        return _TruncExp.apply(self.density_net(u)[:, 0])

    def forward(self, u: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(density (N,), colour (N, 3)) at field coordinates u for unit view directions dirs."""
        h = self.density_net(u)
        sigma = _TruncExp.apply(h[:, 0])
        rgb = torch.sigmoid(self.color_net(torch.cat([h[:, 1:], sh_basis(3, dirs)], dim=1)))
        return sigma, rgb

    def mlp_parameters(self) -> list[torch.nn.Parameter]:
        return [self.density_net.w_in, self.density_net.w_hidden, self.density_net.w_out, *self.color_net.parameters()]

    def make_grid(self, device) -> OccupancyGrid:
        s = self.spec
        return OccupancyGrid(s.grid_resolution, s.bound, s.contract, device=device)


def ray_range(spec: FieldSpec, origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each ray's samples may lie: the box for bounded scenes, near..far otherwise."""
    if spec.contract:
        near = torch.full(origins.shape[:1], NEAR, device=origins.device)
        return near, torch.full_like(near, FAR_UNBOUNDED)
    return ray_box(origins, dirs, spec.bound, NEAR)


def render_rays_train(
    field: RadianceField, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor, backgrounds: torch.Tensor
) -> dict:
    """Differentiable render of R rays: rgb (R, 3) over backgrounds (R, 3), opacity (R,), depth (R,)
    (expected distance along the ray), samples (network evaluations with gradient), marched.

    As nerfacc does, a density-only pass without gradient first finds where each ray becomes
    opaque (transmittance < 1e-4); only the samples before that point go through the full network
    with gradient. The result is the same as compositing every sample: later ones contribute
    nothing and get no gradient."""
    R, dev = origins.shape[0], origins.device
    t_begin, t_far = ray_range(field.spec, origins, dirs)
    offsets, t_starts, t_ends, _ = march(grid, origins, dirs, t_begin, t_far)
    marched = int(t_starts.shape[0])
    ray_ids = torch.repeat_interleave(torch.arange(R, device=dev), (offsets[1:] - offsets[:-1]).long())
    mid = 0.5 * (t_starts + t_ends)
    u = field.to_unit(origins[ray_ids] + mid[:, None] * dirs[ray_ids])
    with torch.no_grad():
        sigma = field.density(u)
        _, _, _, used = composite_rays(offsets, sigma, torch.zeros((marched, 3), device=dev), t_starts, t_ends)
    keep = torch.arange(marched, device=dev) < used.long()[ray_ids]
    offsets = torch.cat([offsets[:1], torch.cumsum(used.long() - offsets[:-1].long(), 0).to(offsets.dtype)])
    ray_ids, t_starts, t_ends, u = ray_ids[keep], t_starts[keep], t_ends[keep], u[keep]
    sigma, rgb = field(u, dirs[ray_ids])
    color, opacity, depth, _ = composite_rays(offsets, sigma, rgb, t_starts, t_ends)
    return {
        "rgb": color + (1 - opacity)[:, None] * backgrounds,
        "opacity": opacity,
        "depth": depth,
        "samples": int(t_starts.shape[0]),
        "marched": marched,
    }


@torch.no_grad()
def render_rays(
    field: RadianceField,
    grid: OccupancyGrid,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: torch.Tensor,
    samples_per_round: int = 16,
) -> dict:
    """Inference render of R rays with early termination: rgb (R, 3) over `background` (3,),
    opacity (R,), depth (R,) (expected distance), samples (int, network evaluations)."""
    R, dev = origins.shape[0], origins.device
    color = torch.zeros((R, 3), device=dev)
    depth = torch.zeros(R, device=dev)
    T = torch.ones(R, device=dev)
    t, t_far = ray_range(field.spec, origins, dirs)
    alive = torch.nonzero(t_far > t).squeeze(1)
    evaluated = 0
    while alive.numel():
        o, d = origins[alive], dirs[alive]
        counts, t_starts, t_ends, t_next = march(grid, o, d, t[alive], t_far[alive], capacity=samples_per_round)
        valid = torch.arange(samples_per_round, device=dev)[None] < counts[:, None]
        rows, cols = torch.nonzero(valid, as_tuple=True)
        mid = 0.5 * (t_starts + t_ends)
        sigma, rgb = field(field.to_unit(o[rows] + mid[rows, cols, None] * d[rows]), d[rows])
        evaluated += rows.numel()
        alpha = torch.zeros_like(t_starts)
        alpha[rows, cols] = 1 - torch.exp(-sigma * (t_ends[rows, cols] - t_starts[rows, cols]))
        # transmittance before each sample; a ray stops before the first sample where it is < 1e-4
        before = T[alive, None] * torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], 1), 1)
        alpha = torch.where(before >= TRANSMITTANCE_MIN, alpha, torch.zeros_like(alpha))
        w = before * alpha
        colors = torch.zeros((*alpha.shape, 3), device=dev)
        colors[rows, cols] = rgb
        color[alive] += (w[..., None] * colors).sum(1)
        depth[alive] += (w * mid).sum(1)
        T[alive] = T[alive] * torch.prod(1 - alpha, dim=1)
        t[alive] = t_next
        done = (counts < samples_per_round) | (T[alive] < TRANSMITTANCE_MIN)
        alive = alive[~done]
    opacity = 1 - T
    return {"rgb": color + T[:, None] * background, "opacity": opacity, "depth": depth, "samples": evaluated}


def render_rays_chunked(
    field: RadianceField,
    grid: OccupancyGrid,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: torch.Tensor,
    chunk: int = 1 << 15,
) -> dict:
    """`render_rays` over many rays (e.g. a whole image), `chunk` rays at a time to bound memory."""
    parts = [
        render_rays(field, grid, origins[k : k + chunk], dirs[k : k + chunk], background)
        for k in range(0, origins.shape[0], chunk)
    ]
    return {k: torch.cat([p[k] for p in parts]) for k in ("rgb", "opacity", "depth")}
