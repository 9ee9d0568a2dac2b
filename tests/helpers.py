"""Random scenes and comparison helpers for the renderer tests."""

from __future__ import annotations

import math

import torch

from splat.scenes import look_at


def _uniform(gen, shape, lo, hi):
    return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)


def random_cameras(gen, C: int, width: int, height: int, distance=(2.5, 4.0)):
    """C cameras on a sphere around the origin looking roughly at it, random focal and principal point."""
    views, Ks = [], []
    for _ in range(C):
        d = torch.randn(3, generator=gen, dtype=torch.float64)
        d = d / d.norm() * float(_uniform(gen, (), *distance))
        target = 0.2 * torch.randn(3, generator=gen, dtype=torch.float64)
        views.append(look_at(d.tolist(), target.tolist(), dtype=torch.float64))
        f = float(_uniform(gen, (), 0.8, 1.3)) * width
        cx = width / 2 + float(_uniform(gen, (), -0.1, 0.1)) * width
        cy = height / 2 + float(_uniform(gen, (), -0.1, 0.1)) * height
        Ks.append(
            torch.tensor([[f, 0, cx], [0, f * float(_uniform(gen, (), 0.9, 1.1)), cy], [0, 0, 1]], dtype=torch.float64)
        )
    return torch.stack(views), torch.stack(Ks)


def random_gaussians(gen, N: int, spread: float = 0.7, log_scale=(-4.0, -1.8), extremes: bool = True):
    """N Gaussians clustered near the origin (many overlap), with some tiny, huge, off-screen and
    behind-camera ones when `extremes`. All float64."""
    means = torch.randn((N, 3), generator=gen, dtype=torch.float64) * spread
    quats = torch.randn((N, 4), generator=gen, dtype=torch.float64)
    log_scales = _uniform(gen, (N, 3), *log_scale)
    opacities = _uniform(gen, (N,), 0.05, 0.99)
    if extremes and N >= 20:
        k = N // 20
        idx = torch.randperm(N, generator=gen)
        tiny, huge, far, behind = idx[:k], idx[k : 2 * k], idx[2 * k : 3 * k], idx[3 * k : 4 * k]
        log_scales[tiny] = _uniform(gen, (k, 3), -7.0, -6.0)
        log_scales[huge] = _uniform(gen, (k, 1), -0.3, 0.3) + _uniform(gen, (k, 3), -0.2, 0.2)
        opacities[huge] = _uniform(gen, (k,), 0.05, 0.3)
        far_dir = torch.randn((k, 3), generator=gen, dtype=torch.float64)
        means[far] = far_dir / far_dir.norm(dim=-1, keepdim=True) * 12.0  # off-screen for most cameras
        behind_dir = torch.randn((k, 3), generator=gen, dtype=torch.float64)
        means[behind] = behind_dir / behind_dir.norm(dim=-1, keepdim=True) * 5.0  # behind some cameras
    return means, quats, log_scales.exp(), opacities


def to32(*ts):
    return [None if t is None else t.float() for t in ts]


def leaf64(t: torch.Tensor) -> torch.Tensor:
    """A float64 leaf holding exactly the float32 value (so both sides start from identical inputs)."""
    return t.detach().float().double().requires_grad_(True)


def leaf32(t: torch.Tensor, device="cpu") -> torch.Tensor:
    return t.detach().float().to(device).requires_grad_(True)


def max_rel_err(actual: torch.Tensor, expected: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """max |actual - expected| over max |expected| (optionally over a boolean mask)."""
    a = actual.detach().double().cpu()  # a device result against a CPU float64 twin
    e = expected.detach().double().cpu()
    if mask is not None:
        mask = mask.cpu()
        a, e = a[mask], e[mask]
    scale = e.abs().max().item() if e.numel() else 0.0
    if scale == 0.0:
        return a.abs().max().item() if a.numel() else 0.0
    return (a - e).abs().max().item() / scale


def assert_close_rel(actual, expected, tol, what: str, mask=None):
    err = max_rel_err(actual, expected, mask)
    assert err <= tol, f"{what}: max relative error {err:.3e} > {tol:.0e}"
    return err


def depth_ties(means: torch.Tensor, viewmats: torch.Tensor, among: torch.Tensor, rel: float = 1e-5) -> bool:
    """Whether two of the Gaussians `among` (a mask over `means` (N, 3)) lie at depths within
    `rel` (relative) of each other in front of one of the cameras (C, 4, 4): float32 may blend
    such a pair in either order, and the comparison leaves out the pixels both cover
    (reference.py), which for two large ones can be most of the image."""
    for c in range(viewmats.shape[0]):
        z = (means[among] @ viewmats[c, 2, :3] + viewmats[c, 2, 3]).sort().values
        z = z[z > 0]
        if z.numel() > 1 and bool(((z[1:] - z[:-1]) / z[1:] < rel).any()):
            return True
    return False


def quiet_pixels(margin: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """Pixels whose discrete decisions are all clear of float32 rounding (see reference.py)."""
    return margin > tol


def fraction(mask: torch.Tensor) -> float:
    return mask.float().mean().item() if mask.numel() else 1.0


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    cos = (a @ b) / (a.norm() * b.norm()).clamp(min=1e-300)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos.item()))))


def train_until_interrupted(trainer, step: int):
    """Train as a Ctrl-C at `step` would leave it: that step finishes, a checkpoint is saved, the
    loop stops. Returns the trainer."""

    def stop(tr, out):
        if tr.step == step:
            tr._stop_requested = True

    trainer.train(progress=stop)
    return trainer


def forget_setting(run, name: str) -> None:
    """Remove setting `name` from a run's records (config.json and every checkpoint), as a run
    from before the setting existed would have them."""
    import json

    info = json.loads((run / "config.json").read_text())
    del info["config"][name]
    (run / "config.json").write_text(json.dumps(info))
    for path in (run / "checkpoints").glob("step_*.pt"):
        state = torch.load(path, weights_only=True)
        del state["config"][name]
        torch.save(state, path)
