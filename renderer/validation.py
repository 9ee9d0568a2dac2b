"""Input checks for the public rasterizer: every bad input becomes a ValueError naming the argument,
never a crash (or silent garbage) inside a kernel. The rasterizer's options as `Literal` types, and
`checks_rasterize_inputs`, the one place the entries (`rasterize`, `rasterize_distributed`) are
checked."""

from __future__ import annotations

import functools
import inspect
import math
from numbers import Integral, Real
from typing import Literal, get_args

import torch

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]
RasterizeMode = Literal["classic", "antialiased"]
CameraModel = Literal["pinhole", "ortho"]
RENDER_MODES: tuple[str, ...] = get_args(RenderMode)
RASTERIZE_MODES: tuple[str, ...] = get_args(RasterizeMode)
CAMERA_MODEL_NAMES: tuple[str, ...] = get_args(CameraModel)
MAX_TILE_SIZE = 32  # 32 x 32 = 1024 pixels, one CUDA block per tile


def _require_tensor(name: str, t, ndim: int | None = None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not (t.is_floating_point()):
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    return t


def _require_shape(name: str, t: torch.Tensor, shape: tuple) -> None:
    if tuple(t.shape) != tuple(shape):
        want = "(" + ", ".join(str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(t.shape)}")


def _require_int(name: str, v, lo: int, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, Integral):
        raise ValueError(f"{name}: expected an integer, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        bound = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name}: expected an integer {bound}, got {v}")
    return int(v)


def _require_real(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, Real) or math.isnan(float(v)):
        raise ValueError(f"{name}: expected a number, got {v!r}")
    return float(v)


def _check_sh_pair(colors, sh_degree, N: int, C: int, named: dict) -> None:
    """colors given as (DC band (N, 1, 3), higher bands (N, K - 1, 3)), shared by all cameras."""
    _require_int("sh_degree", sh_degree, 0, 3)
    if len(colors) != 2:
        raise ValueError(f"colors: a pair of SH tables is (DC band, higher bands), got {len(colors)} tensors")
    dc, rest = colors
    _require_tensor("colors[0]", dc)
    _require_tensor("colors[1]", rest)
    K = (sh_degree + 1) ** 2
    if dc.dim() != 3 or dc.shape != (N, 1, 3) or rest.dim() != 3 or rest.shape[0] != N or rest.shape[2] != 3:
        raise ValueError(
            f"colors: expected the DC band (N, 1, 3) and the higher bands (N, K - 1, 3) with N={N}; "
            f"got {tuple(dc.shape)} and {tuple(rest.shape)}"
        )
    if 1 + rest.shape[1] < K:
        raise ValueError(f"colors: sh_degree={sh_degree} needs {K} coefficients, the pair holds {1 + rest.shape[1]}")
    named["colors[0]"], named["colors[1]"] = dc, rest


def check_rasterize_inputs(
    *,
    means,
    quats,
    scales,
    opacities,
    colors,
    viewmats,
    Ks,
    width,
    height,
    near_plane,
    far_plane,
    eps2d,
    sh_degree,
    backgrounds,
    render_mode,
    rasterize_mode,
    camera_model,
    tile_size,
    covars,
    radius_clip,
) -> None:
    """Raise ValueError naming the first bad argument of `rasterize`."""
    _require_tensor("means", means, 2)
    if means.shape[-1] != 3:
        raise ValueError(f"means: expected shape (N, 3), got {tuple(means.shape)}")
    N = means.shape[0]
    if N == 0:
        raise ValueError("means: the scene is empty (0 Gaussians)")
    device = means.device

    named = {"means": means}
    if covars is None:
        if quats is None or scales is None:
            raise ValueError("quats, scales: both are required unless covars is given")
        _require_tensor("quats", quats)
        _require_shape("quats", quats, (N, 4))
        _require_tensor("scales", scales)
        _require_shape("scales", scales, (N, 3))
        named.update(quats=quats, scales=scales)
    else:
        _require_tensor("covars", covars)
        _require_shape("covars", covars, (N, 3, 3))
        named["covars"] = covars
    _require_tensor("opacities", opacities)
    _require_shape("opacities", opacities, (N,))
    named["opacities"] = opacities

    _require_tensor("viewmats", viewmats, 3)
    if viewmats.shape[1:] != (4, 4) or viewmats.shape[0] == 0:
        raise ValueError(f"viewmats: expected shape (C, 4, 4) with C >= 1, got {tuple(viewmats.shape)}")
    C = viewmats.shape[0]
    _require_tensor("Ks", Ks)
    _require_shape("Ks", Ks, (C, 3, 3))
    named.update(viewmats=viewmats, Ks=Ks)

    if sh_degree is not None and isinstance(colors, (tuple, list)):
        _check_sh_pair(colors, sh_degree, N, C, named)
    elif sh_degree is None:
        _require_tensor("colors", colors)
        if not ((colors.dim() == 2 and colors.shape[0] == N) or (colors.dim() == 3 and colors.shape[:2] == (C, N))):
            raise ValueError(f"colors: expected shape (N, D) or (C, N, D) with N={N}, C={C}, got {tuple(colors.shape)}")
        if colors.shape[-1] == 0:
            raise ValueError("colors: expected at least one channel, got D=0")
    else:
        _require_tensor("colors", colors)
        _require_int("sh_degree", sh_degree, 0, 3)
        K = (sh_degree + 1) ** 2
        ok = (colors.dim() == 3 and colors.shape[0] == N) or (colors.dim() == 4 and colors.shape[:2] == (C, N))
        if not ok or colors.shape[-1] != 3 or colors.shape[-2] < K:
            raise ValueError(
                f"colors: with sh_degree={sh_degree} expected SH coefficients (N, K, 3) or (C, N, K, 3) with "
                f"K >= {K}, N={N}, C={C}; got {tuple(colors.shape)}"
            )
    if not isinstance(colors, (tuple, list)):
        named["colors"] = colors

    _require_int("width", width, 1)
    _require_int("height", height, 1)
    _require_int("tile_size", tile_size, 1, MAX_TILE_SIZE)
    near = _require_real("near_plane", near_plane)
    far = _require_real("far_plane", far_plane)
    if not near < far:
        raise ValueError(f"near_plane: must be below far_plane, got near_plane={near}, far_plane={far}")
    if _require_real("eps2d", eps2d) < 0:
        raise ValueError(f"eps2d: must be >= 0, got {eps2d}")
    _require_real("radius_clip", radius_clip)
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode: expected one of {RENDER_MODES}, got {render_mode!r}")
    if rasterize_mode not in RASTERIZE_MODES:
        raise ValueError(f"rasterize_mode: expected one of {RASTERIZE_MODES}, got {rasterize_mode!r}")
    if camera_model not in CAMERA_MODEL_NAMES:
        raise ValueError(f"camera_model: expected one of {CAMERA_MODEL_NAMES}, got {camera_model!r}")

    if backgrounds is not None:
        _require_tensor("backgrounds", backgrounds)
        if render_mode in ("D", "ED"):
            D = backgrounds.shape[-1] if backgrounds.dim() == 2 else -1
        else:
            D = 3 if sh_degree is not None else colors.shape[-1]
        _require_shape("backgrounds", backgrounds, (C, D))
        named["backgrounds"] = backgrounds

    for name, t in named.items():
        if t.device != device:
            raise ValueError(f"{name}: on device {t.device}, but means is on {device}; put all tensors on one device")

    # One host round-trip for all finiteness checks (one sync on CUDA, not one per tensor). A sum is
    # finite when every element is (NaN and Inf propagate), so one reduction per tensor decides;
    # only a non-finite sum (bad input, or finite values that overflow it) pays for the exact check.
    flags = [torch.isfinite(t.detach().sum()) for t in named.values()]
    if covars is None:
        flags.append((quats.detach().abs().sum(dim=-1) > 0).all())
    flags = torch.stack(flags).tolist()
    for (name, t), ok in zip(named.items(), flags):
        if not ok and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}: contains NaN or Inf")
    if covars is None and not flags[-1]:
        raise ValueError("quats: contains an all-zero quaternion (no rotation can be derived from it)")


CHECKED = tuple(inspect.signature(check_rasterize_inputs).parameters)


def checks_rasterize_inputs(fn):
    """Decorate a rasterizer entry taking `rasterize`'s arguments (by these names): each call is
    checked by `check_rasterize_inputs` before the entry runs."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        check_rasterize_inputs(**{name: bound.arguments[name] for name in CHECKED})
        return fn(*args, **kwargs)

    return checked
