"""Edits of the Gaussian set that keep each parameter and its Adam state in step.

Every op rewrites rows of all parameters (a ParameterDict) and the matching rows of their
optimisers' moment estimates: duplicate, split, remove, reset opacity, relocate and add by
sampling (MCMC), and position noise. Randomness comes from the caller's generator so training
runs replay exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from splat.rotation import quat_to_rotmat, rotation_4d

# The Gaussians' parameters by name (means, scales, quats, opacities, sh0, shN, ...), and one
# Adam optimiser per parameter, whose moment estimates the ops keep row for row in step.
Params = torch.nn.ParameterDict
Optimizers = dict[str, torch.optim.Optimizer]


def covariance_factor(params: Params) -> torch.Tensor:
    """M = R diag(exp(scales)) per Gaussian, (N, d, d), so the covariance is M M^T: d = 3, or 4 for
    4D Gaussians (xyzt; split and noise then act in space-time)."""
    scales = torch.exp(params["scales"].data)
    if params["means"].shape[1] == 4:
        return rotation_4d(params["quats"].data, params["quats_right"].data) * scales[:, None, :]
    return quat_to_rotmat(params["quats"].data) * scales[:, None, :]


def spatial_scale_max(params: Params) -> torch.Tensor:
    """The largest spatial (x, y, z) scale of each Gaussian; a 4D one's time scale is not a size."""
    return torch.exp(params["scales"].data[:, :3]).max(dim=-1).values


@torch.no_grad()
def update_rows(
    params: torch.nn.ParameterDict,
    optimizers: dict[str, torch.optim.Optimizer],
    param_fn: Callable[[str, torch.Tensor], torch.Tensor],
    state_fn: Callable[[str, torch.Tensor], torch.Tensor],
) -> None:
    """Replace every parameter p by param_fn(name, p) and each Adam moment v by state_fn(name, v)."""
    for name in list(params.keys()):
        old = params[name]
        new = torch.nn.Parameter(param_fn(name, old.data), requires_grad=old.requires_grad)
        opt = optimizers.get(name)
        if opt is not None:
            state = opt.state.pop(old, None)
            if state is not None:
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key] = state_fn(name, state[key])
                opt.state[new] = state
            for group in opt.param_groups:
                group["params"] = [new if p is old else p for p in group["params"]]
        params[name] = new


def duplicate(params: Params, optimizers: Optimizers, mask: torch.Tensor) -> None:
    """Append copies of the masked Gaussians (fresh Adam moments for the copies)."""
    idx = mask.nonzero(as_tuple=True)[0]
    update_rows(
        params,
        optimizers,
        lambda name, p: torch.cat([p, p[idx]]),
        lambda name, v: torch.cat([v, torch.zeros_like(v[idx])]),
    )


def split(
    params: Params,
    optimizers: Optimizers,
    mask: torch.Tensor,
    generator: torch.Generator,
    revised_opacity: bool = False,
) -> None:
    """Replace each masked Gaussian by two, sampled from it, with scales / 1.6 (INRIA 3DGS)."""
    idx = mask.nonzero(as_tuple=True)[0]
    rest = (~mask).nonzero(as_tuple=True)[0]
    n = idx.numel()
    scales = torch.exp(params["scales"].data[idx])
    d = scales.shape[1]
    M = covariance_factor(params)[idx]
    samples = torch.randn(2, n, d, generator=generator).to(scales)
    offsets = torch.einsum("nij,bnj->bni", M, samples).reshape(2 * n, d)

    def param_fn(name, p):
        if name == "means":
            new = p[idx].repeat(2, 1) + offsets
        elif name == "scales":
            new = torch.log(scales / 1.6).repeat(2, 1)
        elif name == "opacities" and revised_opacity:
            new = torch.logit(1 - torch.sqrt(1 - torch.sigmoid(p[idx]))).repeat(2)
        else:
            new = p[idx].repeat((2,) + (1,) * (p.dim() - 1))
        return torch.cat([p[rest], new])

    update_rows(
        params,
        optimizers,
        param_fn,
        lambda name, v: torch.cat([v[rest], torch.zeros((2 * n,) + v.shape[1:], dtype=v.dtype)]),
    )


def remove(params: Params, optimizers: Optimizers, mask: torch.Tensor) -> None:
    keep = (~mask).nonzero(as_tuple=True)[0]
    update_rows(params, optimizers, lambda name, p: p[keep], lambda name, v: v[keep])


def reset_opacity(params: Params, optimizers: Optimizers, value: float) -> None:
    """Clamp every opacity to at most `value` and forget its Adam moments."""
    cap = math.log(value / (1 - value))
    update_rows(
        params,
        optimizers,
        lambda name, p: p.clamp(max=cap) if name == "opacities" else p,
        lambda name, v: torch.zeros_like(v) if name == "opacities" else v,
    )


# ---------------------------------------------------------------------------------------------
# MCMC (Kheradmand et al. 2024, "3D Gaussian Splatting as Markov Chain Monte Carlo")
# ---------------------------------------------------------------------------------------------

MAX_COPIES = 51  # relocation splits one Gaussian into at most this many


def binomial_table(n: int = MAX_COPIES) -> torch.Tensor:
    t = torch.zeros(n, n)
    for i in range(n):
        for k in range(i + 1):
            t[i, k] = math.comb(i, k)
    return t


def relocation(opacities: torch.Tensor, scales: torch.Tensor, copies: torch.Tensor, binoms: torch.Tensor):
    """Opacity and scale for each of `copies` Gaussians replacing one, so that their sum renders
    like the original (MCMC paper, eq. 9): o' = 1 - (1 - o)^(1/N), s' = o / denom * s."""
    copies = copies.clamp(1, binoms.shape[0] - 1).long()
    new_op = 1.0 - torch.pow(1.0 - opacities, 1.0 / copies)
    denom = torch.zeros_like(opacities)
    for i in range(1, int(copies.max()) + 1):
        active = copies >= i
        for k in range(i):
            term = binoms[i - 1, k] * ((-1.0) ** k) / math.sqrt(k + 1) * new_op.pow(k + 1)
            denom = denom + torch.where(active, term, torch.zeros_like(term))
    new_scales = (opacities / denom.clamp(min=1e-12))[:, None] * scales
    return new_op, new_scales


def _sample_by_opacity(opacities: torch.Tensor, candidates: torch.Tensor, n: int, generator) -> torch.Tensor:
    """n indices from `candidates`, drawn with probability proportional to opacity (on the CPU,
    where the run's generator lives)."""
    probs = opacities[candidates].double().cpu()
    picks = torch.multinomial(probs / probs.sum(), n, replacement=True, generator=generator)
    return candidates[picks.to(candidates.device)]


def _relocation_update(params, sampled: torch.Tensor, min_opacity: float, binoms: torch.Tensor):
    op = torch.sigmoid(params["opacities"].data)
    copies = torch.bincount(sampled, minlength=op.shape[0])[sampled] + 1
    new_op, new_scales = relocation(op[sampled], torch.exp(params["scales"].data[sampled]), copies, binoms.to(op))
    eps = torch.finfo(torch.float32).eps
    new_op = new_op.clamp(min=min_opacity, max=1 - eps)
    return torch.logit(new_op), torch.log(new_scales)


def _with_relocated_rows(name: str, p: torch.Tensor, sampled, new_logit, new_log_scale) -> torch.Tensor:
    """A copy of parameter `name` whose `sampled` rows carry their relocated opacity / scale."""
    p = p.clone()
    if name == "opacities":
        p[sampled] = new_logit
    elif name == "scales":
        p[sampled] = new_log_scale
    return p


def _forget_sampled(v: torch.Tensor, sampled) -> torch.Tensor:
    v = v.clone()
    v[sampled] = 0
    return v


def relocate(
    params: Params,
    optimizers: Optimizers,
    dead: torch.Tensor,
    binoms: torch.Tensor,
    generator: torch.Generator,
    min_opacity: float = 0.005,
) -> int:
    """Move dead Gaussians onto live ones sampled by opacity, sharing their opacity and size."""
    dead_idx = dead.nonzero(as_tuple=True)[0]
    alive_idx = (~dead).nonzero(as_tuple=True)[0]
    if dead_idx.numel() == 0 or alive_idx.numel() == 0:
        return 0
    op = torch.sigmoid(params["opacities"].data)
    sampled = _sample_by_opacity(op, alive_idx, dead_idx.numel(), generator)
    new_logit, new_log_scale = _relocation_update(params, sampled, min_opacity, binoms)

    def param_fn(name, p):
        p = _with_relocated_rows(name, p, sampled, new_logit, new_log_scale)
        p[dead_idx] = p[sampled]
        return p

    update_rows(params, optimizers, param_fn, lambda name, v: _forget_sampled(v, sampled))
    return dead_idx.numel()


def sample_add(
    params: Params,
    optimizers: Optimizers,
    n: int,
    binoms: torch.Tensor,
    generator: torch.Generator,
    min_opacity: float = 0.005,
) -> int:
    """Append n Gaussians copied from live ones sampled by opacity (relocation-corrected)."""
    if n <= 0:
        return 0
    op = torch.sigmoid(params["opacities"].data)
    sampled = _sample_by_opacity(op, torch.arange(op.shape[0], device=op.device), n, generator)
    new_logit, new_log_scale = _relocation_update(params, sampled, min_opacity, binoms)

    def param_fn(name, p):
        p = _with_relocated_rows(name, p, sampled, new_logit, new_log_scale)
        return torch.cat([p, p[sampled]])

    def state_fn(name, v):
        v = _forget_sampled(v, sampled)
        return torch.cat([v, torch.zeros_like(v[sampled])])

    update_rows(params, optimizers, param_fn, state_fn)
    return n


@torch.no_grad()
def inject_position_noise(params: Params, scaler: float, generator: torch.Generator) -> None:
    """MCMC exploration: move nearly transparent Gaussians along their own covariance."""
    op = torch.sigmoid(params["opacities"].data)
    M = covariance_factor(params)
    cov = M @ M.transpose(1, 2)
    gate = 1.0 / (1.0 + torch.exp(-100.0 * ((1.0 - op) - 0.995)))
    noise = torch.randn(params["means"].shape, generator=generator).to(op) * gate[:, None] * scaler
    params["means"].data.add_(torch.einsum("nij,nj->ni", cov, noise))
