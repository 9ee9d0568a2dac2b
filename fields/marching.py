"""Ray marching through an occupancy grid, with scene contraction for unbounded scenes.

Field space. The network sees points u in [0, 1]^3. A bounded scene maps the box
[-bound, bound]^3 linearly onto it. An unbounded scene (contract=True) first contracts y = x / bound
(the L-infinity form of mip-NeRF 360's contraction, as MERF: unchanged inside the unit cube,
(2 - 1/m) y / m outside it, m = max_i |y_i|), so all of space lands in [-2, 2]^3, then u = y/4 + 1/2:
the inner box keeps the middle half of the grid per axis at full resolution and the rest of the
world shares the outer shell.

Occupancy grid. res^3 cells over u space, each with a running density estimate: every few steps a
random point in each of a random quarter of the cells (every cell during warm-up) is evaluated and
the estimate becomes max(decay * old, new), as Instant-NGP and nerfacc do. A cell is occupied while
its estimate exceeds min(mean estimate, threshold / min_step), i.e. one step through it would be
at least 1% opaque.

Marching. Each ray steps from t_begin to t_far with dt = clamp(t * cone_angle, min_step, max_step)
(constant steps for bounded scenes; steps growing with distance for unbounded ones) and emits a
sample [t, t + dt) wherever the step's midpoint lies in an occupied cell. Empty cells where the map
is linear (inside the box) are skipped to their exit in whole steps. The kernel writes at most
`capacity` samples per ray from `starts[r]` on and returns each ray's count and where it stopped:
training runs it once to count and once to write packed samples; inference marches a few samples
per ray at a time and drops rays once they are opaque (early termination, `render_rays` in
`fields/radiance_field.py`).
"""

from __future__ import annotations

import math

import torch
import warp as wp

from splat.renderer import warp_runtime

wp.set_module_options(warp_runtime.KERNEL_OPTIONS)

STEPS_PER_DIAGONAL = 1024  # Instant-NGP: the unit box's diagonal takes 1024 of the smallest steps
OPACITY_THRESHOLD = 0.01


@wp.struct
class MarchParams:
    occupied: wp.array(dtype=wp.uint8)  # res^3 cells, x slowest: (i * res + j) * res + k
    res: int
    bound: float
    contract: int
    min_step: float
    max_step: float
    cone_angle: float


@wp.func
def to_unit(x: wp.vec3, bound: float, contract: int) -> wp.vec3:
    """World point (normalised scene frame) -> field coordinates in [0, 1]^3."""
    y = x / bound
    if contract == 0:
        return y * 0.5 + wp.vec3(0.5)
    m = wp.max(wp.max(wp.abs(y[0]), wp.abs(y[1])), wp.abs(y[2]))
    if m > 1.0:
        y = y * ((2.0 - 1.0 / m) / m)
    return y * 0.25 + wp.vec3(0.5)


@wp.func
def linear_span(p: MarchParams) -> float:
    """World length of the unit interval of u where the map is linear (box or inner box)."""
    if p.contract != 0:
        return 4.0 * p.bound
    return 2.0 * p.bound


@wp.func
def cell_of_unit(u: wp.vec3, res: int) -> wp.vec3i:
    return wp.vec3i(
        wp.clamp(int(wp.floor(u[0] * float(res))), 0, res - 1),
        wp.clamp(int(wp.floor(u[1] * float(res))), 0, res - 1),
        wp.clamp(int(wp.floor(u[2] * float(res))), 0, res - 1),
    )


@wp.func
def step_size(t: float, p: MarchParams) -> float:
    return wp.clamp(t * p.cone_angle, p.min_step, p.max_step)


@wp.func
def skip_empty_cell(o: wp.vec3, d: wp.vec3, t: float, dt: float, c: wp.vec3i, p: MarchParams) -> float:
    """The next step start after an empty cell: its exit along the ray, rounded up to whole steps."""
    span = linear_span(p)
    res = float(p.res)
    t_exit = float(1.0e30)
    for i in range(3):
        lo = (float(c[i]) / res - 0.5) * span
        hi = (float(c[i] + 1) / res - 0.5) * span
        if d[i] > 1.0e-9:
            t_exit = wp.min(t_exit, (hi - o[i]) / d[i])
        elif d[i] < -1.0e-9:
            t_exit = wp.min(t_exit, (lo - o[i]) / d[i])
    steps = wp.ceil((t_exit - t - 0.5 * dt) / dt)
    return t + wp.max(steps, 1.0) * dt


@wp.kernel
def march_rays(
    offset: int,
    origins: wp.array(dtype=wp.vec3),
    dirs: wp.array(dtype=wp.vec3),
    t_begin: wp.array(dtype=float),
    t_far: wp.array(dtype=float),
    p: MarchParams,
    starts: wp.array(dtype=int),
    capacity: int,
    write: int,
    counts: wp.array(dtype=int),
    t_next: wp.array(dtype=float),
    t_starts: wp.array(dtype=float),
    t_ends: wp.array(dtype=float),
):
    r = wp.tid() + offset
    o = origins[r]
    d = dirs[r]
    t = t_begin[r]
    far = t_far[r]
    base = starts[r]
    n = int(0)
    while t < far and n < capacity:
        dt = step_size(t, p)
        x = o + (t + 0.5 * dt) * d
        c = cell_of_unit(to_unit(x, p.bound, p.contract), p.res)
        if p.occupied[(c[0] * p.res + c[1]) * p.res + c[2]] != wp.uint8(0):
            if write != 0:
                t_starts[base + n] = t
                t_ends[base + n] = t + dt
            n += 1
            t = t + dt
        else:
            inside = True
            if p.contract != 0:
                y = x / p.bound
                inside = wp.max(wp.max(wp.abs(y[0]), wp.abs(y[1])), wp.abs(y[2])) <= 1.0
            if inside:
                t = skip_empty_cell(o, d, t, dt, c, p)
            else:
                t = t + dt
    counts[r] = n
    t_next[r] = t


def to_unit_torch(x: torch.Tensor, bound: float, contract: bool) -> torch.Tensor:
    """Pure-torch twin of `to_unit` (any float dtype)."""
    y = x / bound
    if not contract:
        return y * 0.5 + 0.5
    m = y.abs().amax(dim=-1, keepdim=True)
    y = torch.where(m > 1, y * ((2 - 1 / m) / m), y)
    return y * 0.25 + 0.5


def from_unit_torch(u: torch.Tensor, bound: float, contract: bool) -> torch.Tensor:
    """Inverse of `to_unit_torch` (points of the outermost shell map to very far points)."""
    if not contract:
        return (u - 0.5) * 2 * bound
    y = (u - 0.5) * 4
    m = y.abs().amax(dim=-1, keepdim=True).clamp_max(2 - 1e-6)
    return torch.where(m > 1, y / (m * (2 - m)), y) * bound


def ray_box(origins: torch.Tensor, dirs: torch.Tensor, bound: float, near: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances of rays through [-bound, bound]^3, entry at least `near`; rays that
    miss get exit <= entry."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    a, b = (-bound - origins) * inv, (bound - origins) * inv
    t0 = torch.minimum(a, b).amax(-1).clamp_min(near)
    t1 = torch.maximum(a, b).amin(-1)
    return t0, t1


class OccupancyGrid:
    """Which cells of field space may hold density; see the module docstring."""

    def __init__(
        self,
        resolution: int = 128,
        bound: float = 1.0,
        contract: bool = False,
        decay: float = 0.95,
        warmup_steps: int = 256,
        update_every: int = 16,
        cone_angle: float | None = None,
        device: str | torch.device = "cpu",
    ):
        if resolution < 4 or resolution % 4:
            raise ValueError(f"resolution: a positive multiple of 4, got {resolution}")
        self.resolution, self.bound, self.contract = resolution, float(bound), bool(contract)
        self.decay, self.warmup_steps, self.update_every = decay, warmup_steps, update_every
        self.min_step = math.sqrt(3) * 2 * self.bound / STEPS_PER_DIAGONAL
        # unbounded: steps grow with distance (1/256 as Instant-NGP for large scenes), up to a cell
        # of the outer shell at the far end
        self.cone_angle = (1 / 256 if self.contract else 0.0) if cone_angle is None else cone_angle
        self.max_step = 1e10 if not self.contract else 1e3 * self.bound / resolution
        self.device = torch.device(device)
        n = resolution**3
        self.density = torch.zeros(n, device=self.device)
        self.occupied = torch.ones(n, dtype=torch.uint8, device=self.device)

    @property
    def density_threshold(self) -> float:
        return OPACITY_THRESHOLD / self.min_step

    @property
    def occupied_fraction(self) -> float:
        return float(self.occupied.float().mean())

    def params(self) -> MarchParams:
        p = MarchParams()
        p.occupied = warp_runtime.array(self.occupied)
        p.res, p.bound, p.contract = self.resolution, self.bound, int(self.contract)
        p.min_step, p.max_step, p.cone_angle = self.min_step, self.max_step, self.cone_angle
        return p

    @torch.no_grad()
    def update(self, step: int, density_fn, generator: torch.Generator, chunk: int = 1 << 18) -> bool:
        """Refresh the estimate (on update steps only; returns whether it did). `density_fn` maps
        field coordinates u (N, 3) in [0, 1]^3 to densities (N,)."""
        if step % self.update_every:
            return False
        n, res = self.resolution**3, self.resolution
        cells = torch.arange(n) if step < self.warmup_steps else torch.randperm(n, generator=generator)[: n // 4]
        jitter = torch.rand((cells.numel(), 3), generator=generator)
        ijk = torch.stack([cells // (res * res), (cells // res) % res, cells % res], dim=1)
        u = ((ijk + jitter) / res).to(self.device)
        cells = cells.to(self.device)
        fresh = torch.cat([density_fn(u[k : k + chunk]).float() for k in range(0, u.shape[0], chunk)])
        self.density[cells] = torch.maximum(self.density[cells] * self.decay, fresh)
        threshold = min(self.density_threshold, float(self.density.mean()))
        self.occupied = (self.density > threshold).to(torch.uint8)
        return True

    def state_dict(self) -> dict:
        return {"density": self.density.cpu(), "occupied": self.occupied.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.density = state["density"].to(self.device)
        self.occupied = state["occupied"].to(self.device)


def march(
    grid: OccupancyGrid,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    t_begin: torch.Tensor,
    t_far: torch.Tensor,
    capacity: int | None = None,
    max_samples: int = 1 << 12,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """March rays through `grid`.

    capacity None (training): every sample of every ray (at most `max_samples` each), packed:
        returns ray_offsets (R+1,) int32, t_starts (S,), t_ends (S,), t_next (R,).
    capacity K (inference): at most K samples per ray from t_begin, padded to (R, K):
        returns counts (R,) int32, t_starts (R, K), t_ends (R, K), t_next (R,) (where to go on).
    """
    R, dev = origins.shape[0], origins.device
    A = warp_runtime.array
    o, d = origins.float().contiguous(), dirs.float().contiguous()
    t0, t1 = t_begin.float().contiguous(), t_far.float().contiguous()
    p = grid.params()
    counts = torch.empty(R, dtype=torch.int32, device=dev)
    t_next = torch.empty(R, dtype=torch.float32, device=dev)

    def run(starts, cap, write, t_starts, t_ends):
        warp_runtime.launch(
            march_rays,
            R,
            [A(o, wp.vec3), A(d, wp.vec3), A(t0), A(t1), p, A(starts), int(cap), int(write)],
            [A(counts), A(t_next), A(t_starts), A(t_ends)],
            device=dev,
            grain=256,
        )

    if capacity is not None:
        starts = torch.arange(R, dtype=torch.int32, device=dev) * capacity
        t_starts = torch.zeros((R, capacity), dtype=torch.float32, device=dev)
        t_ends = torch.zeros((R, capacity), dtype=torch.float32, device=dev)
        run(starts, capacity, 1, t_starts, t_ends)
        return counts, t_starts, t_ends, t_next
    placeholder = torch.zeros(1, dtype=torch.float32, device=dev)
    run(torch.zeros(R, dtype=torch.int32, device=dev), max_samples, 0, placeholder, placeholder)
    offsets = torch.zeros(R + 1, dtype=torch.int32, device=dev)
    offsets[1:] = torch.cumsum(counts, 0)
    S = int(offsets[-1])
    t_starts = torch.empty(max(S, 1), dtype=torch.float32, device=dev)
    t_ends = torch.empty(max(S, 1), dtype=torch.float32, device=dev)
    run(offsets[:-1].contiguous(), max_samples, 1, t_starts, t_ends)
    return offsets, t_starts[:S], t_ends[:S], t_next


def march_torch(
    occupied: torch.Tensor,
    res: int,
    bound: float,
    contract: bool,
    min_step: float,
    max_step: float,
    cone_angle: float,
    origin,
    direction,
    t_begin: float,
    t_far: float,
    capacity: int,
):
    """Pure-python twin of the kernel for one ray (float64): the list of (t_start, t_end), t_next."""
    o = torch.as_tensor(origin, dtype=torch.float64)
    d = torch.as_tensor(direction, dtype=torch.float64)
    occ = occupied.reshape(res, res, res)
    span = (4.0 if contract else 2.0) * bound
    t, samples = float(t_begin), []
    while t < t_far and len(samples) < capacity:
        dt = min(max(t * cone_angle, min_step), max_step)
        x = o + (t + 0.5 * dt) * d
        u = to_unit_torch(x, bound, contract)
        c = (u * res).floor().long().clamp(0, res - 1)
        if occ[c[0], c[1], c[2]]:
            samples.append((t, t + dt))
            t += dt
        elif not contract or float((x / bound).abs().max()) <= 1:
            lo, hi = (c / res - 0.5) * span, ((c + 1) / res - 0.5) * span
            exits = [
                float(((hi if di > 1e-9 else lo)[i] - o[i]) / di) for i, di in enumerate(d.tolist()) if abs(di) > 1e-9
            ]
            t += max(math.ceil((min(exits) - t - 0.5 * dt) / dt), 1) * dt
        else:
            t += dt
    return samples, t
