"""What a checkpoint holds is checked before anything is built from it, so that a crafted or
damaged file is refused in one line naming it (InputError) and any later failure is a bug.

- Gaussian checkpoints: the parameter tensors agree on the number of Gaussians and have their
  layouts; the normalisation is a centre of 3 finite numbers and a positive scale.
- Field checkpoints: every `field_spec` value has its type and range, and the network and grid
  tensors have exactly the shapes that spec implies. Those tensors were read from the file, so
  building the field allocates no more than the file held (a spec alone could ask for 16 levels
  of 2^30 entries: 137 GB).
- `check_fits(template, state)`: a checkpoint that is to be resumed has the structure of the
  trainer's own state (keys, types, tensor dtypes and trailing dimensions).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from .errors import InputError
from .train.config import DEFAULT_EPS2D, MAX_EPS2D, is_filter_variance

# the field_spec ranges a checkpoint may hold (the trainer writes values inside them)
FIELD_SPEC_RANGES = {
    "n_levels": (1, 32),
    "n_features_per_level": (1, 8),
    "log2_hashmap_size": (4, 26),
    "base_resolution": (1, 1 << 16),
    "max_resolution": (1, 1 << 20),
    "grid_resolution": (4, 1024),
}
PER_GAUSSIAN = ("params", "optimizers", "strategy_state")  # state entries whose tensors are (N, ...)


def _fail(path, message: str) -> InputError:
    return InputError(f"{path}: not a splat checkpoint ({message})")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


GAUSSIAN_KEYS = ("params", "normalization")
FIELD_KEYS = ("field_spec", "field", "grid", "normalization")


def check_state(path, state) -> dict:
    """A checkpoint's state (a dict read from the file), checked as the module docstring says."""
    if not isinstance(state, dict):
        raise _fail(path, f"holds a {type(state).__name__}, not a dict")
    keys = FIELD_KEYS if state.get("model") == "field" else GAUSSIAN_KEYS
    missing = [k for k in keys if k not in state]
    if missing:
        raise _fail(path, f"missing {', '.join(repr(k) for k in missing)}")
    if keys is FIELD_KEYS:
        check_field(path, state)
    else:
        params = state["params"]
        if not isinstance(params, dict) or not all(
            isinstance(params.get(k), torch.Tensor) for k in ("means", "scales", "quats", "opacities", "sh0")
        ):
            raise _fail(path, "'params' lacks the Gaussian tensors")
        check_gaussians(path, params)
        check_bases(path, state.get("bases"), params)
        check_rasterize_mode(path, state.get("config", {}))
    check_normalization(path, state["normalization"])
    return state


# What runs from before a rasterizer setting existed trained with: their records lack it, and the
# setting's automatic value today may differ (still scenes now resolve eps2d 0 to 0.1)
RENDER_SETTINGS_OF_OLDER_RUNS = {"rasterize_mode": "classic", "eps2d": DEFAULT_EPS2D}


def recorded_render_settings(config: dict) -> dict:
    """The rasterizer settings a run's Gaussians trained with (rasterize_mode, eps2d), from its
    config record (checkpoint or config.json), with older runs' values where it lacks them."""
    return {name: config.get(name, older) for name, older in RENDER_SETTINGS_OF_OLDER_RUNS.items()}


def check_rasterize_mode(path, config) -> None:
    """The rasterizer settings a run records: its mode and low-pass filter (eps2d, px^2)."""
    from splat.renderer.validation import RASTERIZE_MODES

    if not isinstance(config, dict):
        raise _fail(path, "'config' is not a dict")
    settings = recorded_render_settings(config)
    if settings["rasterize_mode"] not in RASTERIZE_MODES:
        raise _fail(path, f"'config' names rasterize_mode {settings['rasterize_mode']!r}, not one of {RASTERIZE_MODES}")
    if not is_filter_variance(settings["eps2d"]):
        raise _fail(path, f"'config' has eps2d {settings['eps2d']!r}, not a variance in (0, {MAX_EPS2D:g}] px^2")


def check_normalization(path, norm) -> None:
    if not isinstance(norm, dict) or not _is_number(norm.get("scale")) or not norm["scale"] > 0:
        raise _fail(path, "'normalization' needs a positive 'scale'")
    center = norm.get("center")
    if not isinstance(center, (list, tuple)) or len(center) != 3 or not all(_is_number(c) for c in center):
        raise _fail(path, "'normalization' needs a 'center' of 3 numbers")


def check_gaussians(path, params: dict) -> None:
    """Tensors of one set of Gaussians: means (N, 3) or (N, 4) with the 4D extras, the rest (N, ...)."""
    means = params["means"]
    if means.ndim != 2 or means.shape[1] not in (3, 4) or not means.is_floating_point():
        raise _fail(path, f"'means' has shape {tuple(means.shape)}, expected (N, 3) or (N, 4)")
    n, dims = means.shape
    expected = {
        "scales": (n, dims),
        "quats": (n, 4),
        "opacities": (n,),
        "sh0": (n, 1, 3),
    }
    if dims == 4:
        expected["quats_right"] = (n, 4)
    for key, shape in expected.items():
        t = params.get(key)
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or not t.is_floating_point():
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise _fail(path, f"'{key}' is {got}, expected a float tensor of shape {shape}")
    shN = params.get("shN")
    if shN is not None:
        if not isinstance(shN, torch.Tensor) or shN.ndim != 3 or shN.shape[0] != n or shN.shape[2] != 3:
            raise _fail(path, f"'shN' must be a tensor of shape ({n}, K, 3)")
        if shN.shape[1] not in (0, 3, 8, 15):
            raise _fail(path, f"'shN' holds {shN.shape[1]} SH coefficients per channel, not those of degree 1-3")


MAX_BASES, MAX_KNOTS = 256, 4096  # shared motions (splat/motion.py): far above what training makes


def check_bases(path, bases, params: dict) -> None:
    """Shared motions: rotations (K, T, 4), translations (K, T, 3) and pivots (K, 3), finite, with blend logits
    (N, K) among the params; neither without the other."""
    logits = params.get("motion")
    if bases is None and logits is None:
        return
    if not isinstance(bases, dict) or not isinstance(logits, torch.Tensor):
        raise _fail(path, "shared motions need both 'bases' and the 'motion' blend logits")
    rotations, translations = bases.get("rotations"), bases.get("translations")
    if not isinstance(rotations, torch.Tensor) or rotations.ndim != 3 or rotations.shape[2] != 4:
        raise _fail(path, "'bases' rotations must be a tensor of shape (K, T, 4)")
    if not rotations.is_floating_point():
        raise _fail(path, "'bases' rotations must be a tensor of shape (K, T, 4)")
    k, t = rotations.shape[:2]
    if not (1 <= k <= MAX_BASES and 1 <= t <= MAX_KNOTS):
        raise _fail(path, f"'bases' holds {k} motions of {t} knots (at most {MAX_BASES} of {MAX_KNOTS})")
    for name, tensor, shape in (
        ("bases translations", translations, (k, t, 3)),
        ("bases pivots", bases.get("pivots"), (k, 3)),
        ("motion", logits, (params["means"].shape[0], k)),
    ):
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape or not tensor.is_floating_point():
            raise _fail(path, f"'{name}' must be a float tensor of shape {shape}")
    if not all(bool(torch.isfinite(bases[name]).all()) for name in ("rotations", "translations", "pivots")):
        raise _fail(path, "'bases' holds values that are not finite")
    if bool((rotations.norm(dim=-1) == 0).any()):
        raise _fail(path, "'bases' holds a zero quaternion")


def check_field_spec(path, spec) -> dict:
    """The field_spec dict, every value checked (FieldSpec's fields, nothing else)."""
    from splat.fields.fused import MAX_INPUT
    from splat.fields.radiance_field import FieldSpec

    names = {f.name for f in dataclasses.fields(FieldSpec)}
    if not isinstance(spec, dict) or set(spec) != names:
        raise _fail(path, f"'field_spec' must hold exactly {', '.join(sorted(names))}")
    for key, (lo, hi) in FIELD_SPEC_RANGES.items():
        v = spec[key]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise _fail(path, f"field_spec '{key}' must be an integer in {lo}..{hi}, got {str(v)[:40]}")
    if not _is_number(spec["bound"]) or not 0 < spec["bound"] <= 1e4:
        raise _fail(path, f"field_spec 'bound' must be a number in (0, 1e4], got {str(spec['bound'])[:40]}")
    if not isinstance(spec["contract"], bool):
        raise _fail(path, "field_spec 'contract' must be true or false")
    if spec["grid_resolution"] % 4 or spec["max_resolution"] < spec["base_resolution"]:
        raise _fail(path, "field_spec: grid_resolution a multiple of 4, max_resolution >= base_resolution")
    if spec["n_levels"] * spec["n_features_per_level"] > MAX_INPUT:
        raise _fail(path, f"field_spec: n_levels x n_features_per_level above {MAX_INPUT}")
    return spec


def check_field(path, state: dict) -> None:
    """field_spec, then the field's and the grid's tensors against the shapes it implies
    (computed on the meta device: nothing is allocated)."""
    from splat.fields.radiance_field import FieldSpec, RadianceField

    spec = FieldSpec(**check_field_spec(path, state["field_spec"]))
    with torch.device("meta"):
        expected = {k: (tuple(v.shape), v.dtype) for k, v in RadianceField(spec).state_dict().items()}
    _check_tensors(path, "field", state["field"], expected)
    cells = (spec.grid_resolution**3,)
    _check_tensors(path, "grid", state["grid"], {"density": (cells, torch.float32), "occupied": (cells, torch.uint8)})


def _check_tensors(path, what: str, given, expected: dict) -> None:
    if not isinstance(given, dict) or set(given) != set(expected):
        raise _fail(path, f"'{what}' does not hold the tensors its field_spec implies")
    for key, (shape, dtype) in expected.items():
        t = given[key]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or t.dtype != dtype:
            got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise _fail(path, f"'{what}.{key}' is {got}, its field_spec implies {shape} {dtype}")


def check_fits(template, state, path: str | Path, optional: tuple[str, ...] = ()) -> None:
    """`state` has the structure of `template` (a fresh trainer's own state_dict): the same keys
    (top-level `optional` ones may be missing), lists of the same length (an empty one: any list of
    indices), numbers for numbers, tensors of the same dtype and shape (the first dimension
    of per-Gaussian entries, PER_GAUSSIAN, may differ). InputError naming the file and the entry."""
    if not isinstance(state, dict):
        raise InputError(f"{path}: does not fit this run (holds a {type(state).__name__}, not a dict)")
    missing = [k for k in template if k not in state and k not in optional]
    if missing:
        raise InputError(f"{path}: does not fit this run (it lacks {', '.join(map(repr, missing[:5]))})")
    for k in template:
        if k == "config":  # a record of the settings (config.json is the run's): older runs lack newer ones
            if not isinstance(state.get(k, {}), dict):
                raise InputError(f"{path}: does not fit this run ('config' is not a dict)")
        elif k in state:
            _fits(template[k], state[k], path, repr(k), any_count=k in PER_GAUSSIAN)
    _check_moments(state, path)


def _fits(template, state, path, at: str, any_count: bool) -> None:
    def refuse(what: str) -> InputError:
        return InputError(f"{path}: does not fit this run ({at} {what})")

    if template is None:
        return
    if isinstance(template, dict):
        if not isinstance(state, dict):
            raise refuse(f"is a {type(state).__name__}, not a dict")
        missing = [k for k in template if k not in state]
        if missing:
            raise refuse(f"lacks {', '.join(map(repr, missing[:5]))}")
        for k in template:
            _fits(template[k], state[k], path, f"{at}[{k!r}]", any_count)
    elif isinstance(template, (list, tuple)) and not template:  # e.g. the sampling order: a list of indices
        if not isinstance(state, (list, tuple)) or not all(isinstance(v, int) and v >= 0 for v in state):
            raise refuse("is not a list of indices")
    elif isinstance(template, (list, tuple)):
        if not isinstance(state, (list, tuple)) or len(state) != len(template):
            raise refuse(f"is not a list of {len(template)}")
        for k, (a, b) in enumerate(zip(template, state)):
            _fits(a, b, path, f"{at}[{k}]", any_count)
    elif isinstance(template, torch.Tensor):
        if not isinstance(state, torch.Tensor) or state.dtype != template.dtype or state.ndim != template.ndim:
            got = f"{tuple(state.shape)} {state.dtype}" if isinstance(state, torch.Tensor) else type(state).__name__
            raise refuse(f"is {got}, expected {template.dtype} of {template.ndim} dimensions")
        if state.shape[int(any_count) :] != template.shape[int(any_count) :]:
            raise refuse(f"has shape {tuple(state.shape)}, expected {tuple(template.shape)}")
    elif isinstance(template, (bool, str)):
        if type(state) is not type(template):
            raise refuse(f"is a {type(state).__name__}, expected a {type(template).__name__}")
    elif isinstance(template, (int, float)):
        if not _is_number(state) or (isinstance(template, int) and not isinstance(state, int)):
            raise refuse(f"is {str(state)[:40]}, not a {type(template).__name__}")


def _check_moments(state: dict, path) -> None:
    """Each Gaussian parameter's Adam moments have the parameter's shape (the shared motions'
    optimiser: rotations, then translations)."""
    params, optimizers = state.get("params"), state.get("optimizers")
    if not isinstance(params, dict) or not isinstance(optimizers, dict):
        return
    bases = state.get("bases") if isinstance(state.get("bases"), dict) else {}
    for name, opt in optimizers.items():
        moments = opt.get("state", {}) if isinstance(opt, dict) else {}
        for index, entry in moments.items() if isinstance(moments, dict) else ():
            if name == "bases":
                p = bases.get({0: "rotations", 1: "translations"}.get(index, ""))
            else:
                p = params.get(name)
            for key in ("exp_avg", "exp_avg_sq"):
                m = entry.get(key) if isinstance(entry, dict) else None
                if m is None:
                    continue
                if not isinstance(m, torch.Tensor) or not isinstance(p, torch.Tensor) or m.shape != p.shape:
                    got = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
                    raise InputError(f"{path}: does not fit this run ('{name}' and its {key} differ: {got})")
