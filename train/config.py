"""Training configuration: INRIA 3DGS / gsplat defaults, serialisable to the run folder.

`TrainConfig` is also the one source of the `splat train` flags: a field declared with `flag(...)`
becomes a flag (its name with dashes, unless `name=` says), typed from its annotation, with the
field's help, choices and default; `default_text()` adds what each preset (PRESETS) and model
(MODEL_DEFAULTS) change. Fields declared plainly are set from code or config.json only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from splat.errors import InputError


def flag(
    default: Any,
    help: str,
    *,
    name: str | None = None,
    choices: tuple[str, ...] | None = None,
    cli_default: Any = None,
    describe_default: str | None = None,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A TrainConfig field that `splat train` sets with --NAME (the field's name with dashes).

    `cli_default`: the flag's own default where it differs from the field's (the preset: "auto");
    `describe_default`: the default in words, for sentinel values such as 0 = automatic;
    `parse`: turns the flag's text into the field's value (raising InputError)."""
    metadata = {
        "help": help,
        "flag": name,
        "choices": choices,
        "cli_default": cli_default,
        "describe_default": describe_default,
        "parse": parse,
    }
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def parse_resolution_schedule(text: str) -> list[list[int]]:
    """ "0:2,1500:1" -> [[0, 2], [1500, 1]]."""
    try:
        return [[int(a), int(b)] for a, b in (e.split(":") for e in text.split(","))]
    except ValueError:
        raise InputError("--resolution-schedule: expected STEP:FACTOR[,STEP:FACTOR...], e.g. 0:2,1500:1") from None


DEVICES = ("auto", "cpu", "cuda")
# Automatic downscaling: the longer image side in pixels, at most (INRIA rescales beyond 1.6k;
# a CPU step costs about 4x less at half the size).
MAX_IMAGE_SIDE = {"cuda": 1600, "cpu": 800}

# Named starting points. "inria": the published 3DGS schedule. "fast": for CPUs and quick looks;
# the same optimiser and densification, but a resolution warm-up (1/4 size for 500 steps, 1/2
# until 2000) and a 20k-point random initialisation, which get NeRF-synthetic lego at 400x400
# past 30 dB test PSNR in under 20 minutes on a 2-core CPU (bench/train_lego.py).
# "cpu": "fast" within a time budget that ends a run in about a quarter of an hour, evaluated
# once at the end (bench/results/train_defaults_lego-cpu.json measures it); random points start at
# 0.35x their kNN distance: random points are not surfaces, and their overlapping, transparent
# footprints made the first steps the slowest of a run (lego at 400x400: 0.5x gave 141k tile
# pairs and 500 ms a step at step 0, 0.35x 95k and 330 ms; bench/results/step_cost-cpu.json has
# the early / late step costs with this setting). "auto" (the CLI default) is "inria" on CUDA and
# "cpu" on a CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "inria": {},
    "fast": {"resolution_schedule": [[0, 4], [500, 2], [2000, 1]], "init_points": 20_000},
    "cpu": {
        "resolution_schedule": [[0, 4], [500, 2], [2000, 1]],
        "init_points": 20_000,
        "max_train_seconds": 820.0,
        "eval_steps": [],
        "random_init_scale": 0.35,
    },
}
AUTO_PRESET = {"cuda": "inria", "cpu": "cpu"}
PRESET_NOTES = {
    "inria": "the published 3DGS schedule",
    "fast": "resolution warm-up and a lighter initialisation",
    "cpu": f"fast within a {PRESETS['cpu']['max_train_seconds'] / 60:.0f}-minute budget",
}
# Defaults that follow the model, between the preset and explicit values: by model, and by preset
# and model together. preset_config applies them when it is given the model; the trainer when it
# chooses the model from the data (apply_model_defaults), to the fields it was not given.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "field": {"steps": 20_000},  # nerfacc's Instant-NGP schedule
}
PRESET_MODEL_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    # moving 3D Gaussians on a CPU: past a few thousand steps D-NeRF lego's held-out frames get
    # worse while its training frames keep improving (bench/results/train_dnerf-cpu.json defaults@N)
    ("cpu", "motion"): {"steps": 4_000, "refine_stop": 2_000},
}


def model_defaults(preset: str, model: str | None) -> dict[str, Any]:
    """The settings that follow `model` (under `preset`), before explicit values."""
    return {**MODEL_DEFAULTS.get(model or "", {}), **PRESET_MODEL_DEFAULTS.get((preset, model or ""), {})}


# Defaults that follow the densification strategy (INRIA 3DGS; gsplat's MCMC), for the fields left
# None (TrainConfig.__post_init__); the strategies' own parameters are in strategies.py.
STRATEGY_DEFAULTS: dict[str, dict[str, Any]] = {
    "default": {"init_opacity": 0.1, "init_scale": 1.0, "refine_stop": 15_000},
    "mcmc": {"init_opacity": 0.5, "init_scale": 0.1, "refine_stop": 25_000},
}


@dataclasses.dataclass
class TrainConfig:
    preset: str = flag(
        "inria",
        f"auto: {AUTO_PRESET['cuda']} on CUDA, {AUTO_PRESET['cpu']} on a CPU. "
        + "; ".join(f"{k}: {v}" for k, v in PRESET_NOTES.items()),
        choices=("auto", *PRESETS),
        cli_default="auto",
    )  # the named starting point this configuration came from (PRESETS)
    steps: int = flag(30_000, "training steps")
    max_train_seconds: float = flag(
        0.0,
        "stop after this much training time, then evaluate and save",
        name="max-seconds",
        describe_default="0: no limit",
    )
    strategy: str = flag(
        "default",
        "densification strategy: default (INRIA adaptive density control) or mcmc",
        choices=("default", "mcmc"),
    )
    device: str = flag(
        "auto", "where to train; auto: CUDA when available, else the CPU", choices=DEVICES, cli_default="auto"
    )
    seed: int = flag(0, "random seed")

    # data
    downscale: int = flag(
        0,
        "image downscale factor, 1 keeps the full size; uses images_N/ when present",
        describe_default=f"0: automatic, the longer side at most {MAX_IMAGE_SIDE['cuda']} px on CUDA, "
        f"{MAX_IMAGE_SIDE['cpu']} px on a CPU",
    )
    background: str = flag(
        "auto",
        "training background; auto: white for images with alpha (NeRF-synthetic, D-NeRF), for RGB Blender "
        "scenes the colour of the images' borders, else black",
        choices=("auto", "white", "black", "random"),
    )
    pose_repair: str = flag(
        "auto",
        "a capture path that jumps is reported; auto: undo a fold (a symmetric object registered "
        "half a turn round) when one rigid motion closes every jump; off: the poses as given",
        choices=("auto", "off"),
    )
    test_every: int = 8
    cache_gb: float = 4.0

    # model
    model: str = flag(
        "auto",
        "3d Gaussians; for dynamic scenes motion (3D Gaussians moved by a few motions they share) or 4d "
        "(XYZT Gaussians, each with its own motion); or field (Instant-NGP hash-grid NeRF); auto: 3d for "
        "static scenes, motion when one camera films a dynamic scene (D-NeRF), 4d when several do",
        choices=("auto", "3d", "motion", "4d", "field"),
    )
    rasterize_mode: str = flag(
        "auto",
        "Gaussian rasterization; antialiased: Mip-Splatting's 2D filter with opacity compensation; "
        "auto: antialiased for moving 3D Gaussians (motion), else classic",
        choices=("auto", "classic", "antialiased"),
    )
    eps2d: float = flag(
        0.0,
        "rasterizer's low-pass filter: the variance (px^2) added to each Gaussian's screen footprint",
        describe_default="0: automatic, 0.1 for still 3D Gaussians (about what a pixel integrates over), "
        "0.3 for moving ones (as in 3DGS)",
    )
    motion_bases: int = 32  # motion: rigid motions shared by the Gaussians (splat/motion.py)
    motion_knots: int = 8  # motion: knots over [0, 1] per motion (fewer: smoother motion between frames)
    lr_motion: float = 3e-4  # motion: learning rate of the motions (translations x scene extent)
    lr_motion_final: float = 3e-5  # motion: ... decaying to this over the second half of the run (steps
    # that stay at lr_motion leave the motions jittering: bench/results/dnerf_explorations-cpu.json)
    lr_motion_weights: float = 1e-2  # motion: learning rate of each Gaussian's blend logits
    motion_smoothness: float = 1.0  # motion: weight of the motions' second differences over time
    init_time_scale: float = 0.2  # 4d: initial temporal std. dev., in units of the [0, 1] time range
    velocity_consistency: float = 0.2  # 4d: weight of 4D-Rotor's neighbours' velocity term (train/dynamic.py)
    sh_degree: int = flag(3, "maximum spherical-harmonics degree")
    sh_degree_interval: int = 1000  # raise the active SH degree by one every this many steps
    init_points: int = flag(100_000, "random initial points when the data has none")
    background_points: float = flag(
        0.25,
        "with sparse points: add this fraction of their number as points in image regions no "
        "sparse point covers (distant background), coloured from the images",
    )
    init_opacity: float | None = None  # None: the strategy's (STRATEGY_DEFAULTS)
    init_scale: float | None = None  # times the kNN distance; None: the strategy's
    random_init_scale: float | None = None  # the same for random points (no sparse points); None: init_scale
    max_gaussians: int = flag(3_000_000, "hard cap on the number of Gaussians")

    # optimisation (Adam, eps 1e-15)
    batch_size: int = flag(1, "images per step, loss averaged; 4D: frames at several times")
    lr_means: float = 1.6e-4  # times the scene extent (1.1 x camera radius), decays exponentially to lr_means_final
    lr_means_final: float = 1.6e-6
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    ssim_lambda: float = 0.2
    appearance: bool = flag(
        False,
        "per-image exposure / colour compensation for phone captures with auto-exposure; off for evaluation",
    )  # a per-image colour affine (train/appearance.py)

    # densification (strategy parameters; see strategies.py)
    refine_start: int = 500
    refine_stop: int | None = None  # None: the strategy's (STRATEGY_DEFAULTS)
    refine_every: int = 100
    reset_every: int = 3000
    grow_grad2d: float = 0.0002
    absgrad: bool = False
    mcmc_cap_max: int = 1_000_000

    # neural field (model "field"): Instant-NGP / nerfacc defaults (see train/field_trainer.py)
    field_samples: int = flag(
        1 << 18, "field: target ray samples per step; the number of rays adapts to it", name="samples-per-step"
    )
    field_lr: float = 1e-2
    field_loss: str = flag("l2", "field: colour loss; huber: delta 0.1", choices=("l2", "huber"))
    field_contract: str = flag(
        "auto",
        "field: contract space for unbounded scenes; auto: no for Blender / D-NeRF object captures",
        name="contract",
        choices=("auto", "yes", "no"),
    )
    field_bound: float = 0.0  # half-size of the scene box in the normalised frame; 0: 0.375 bounded, 1.0 contracted
    field_log2_hashmap_size: int = flag(19, "field: log2 of the hash table size per level", name="log2-hashmap-size")
    field_grid_resolution: int = flag(128, "field: occupancy grid cells per axis", name="grid-resolution")

    # resolution warm-up: [[step, downscale factor], ...] applied from each step on
    resolution_schedule: list[list[int]] = flag(
        [],
        "resolution warm-up as STEP:DOWNSCALE,..., e.g. 0:2,2000:1",
        parse=parse_resolution_schedule,
    )

    # evaluation and logging
    eval_steps: list[int] = dataclasses.field(default_factory=lambda: [7_000, 30_000])
    eval_subset: int = flag(0, "intermediate evaluations use N evenly spaced test images", describe_default="0: all")
    save_renders: bool = True
    log_every: int = 100
    checkpoint_every: int = flag(5000, "save a checkpoint every N steps")
    checkpoint_minutes: float = flag(
        10.0, "also save one after this many minutes of training", describe_default="10; 0: by steps only"
    )
    keep_checkpoints: int = 2
    # the fields preset_config was given (flags, a config file, the API's overrides), which the
    # model's defaults leave alone once the data chose the model; None: not made by preset_config
    given: list[str] | None = None

    def __post_init__(self) -> None:
        for name, value in STRATEGY_DEFAULTS.get(self.strategy, {}).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.random_init_scale is None:
            self.random_init_scale = self.init_scale

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        d = {"pose_repair": "off", **d}  # runs saved before the repair existed trained on the poses as given
        return TrainConfig(**{k: v for k, v in d.items() if k in known})

    def validate(self) -> None:
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise InputError(f"device: expected auto, cpu or cuda, got {self.device!r}")
        if self.downscale < 0:
            raise InputError(f"downscale: expected a positive factor or 0 (automatic), got {self.downscale}")
        if self.steps < 1:
            raise InputError(f"steps: must be positive, got {self.steps}")
        for f in dataclasses.fields(self):  # strategy, model, background, field_loss, field_contract
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices and f.name not in ("preset", "device") and value not in choices:
                raise InputError(f"{f.name}: expected {_alternatives(choices)}, got {value!r}")
        if self.field_samples < 1024 or self.field_bound < 0:
            raise InputError("field_samples: at least 1024; field_bound: >= 0")
        if not 0 <= self.sh_degree <= 3:
            raise InputError(f"sh_degree: expected 0..3, got {self.sh_degree}")
        if self.eps2d != 0 and not is_filter_variance(self.eps2d):
            raise InputError(f"eps2d: expected 0 (automatic) or a variance up to {MAX_EPS2D:g} px^2, got {self.eps2d}")
        if self.batch_size < 1:
            raise InputError(f"batch_size: must be positive, got {self.batch_size}")
        if not 0.0 <= self.background_points <= 10.0:
            raise InputError(f"background_points: must be in [0, 10], got {self.background_points}")
        if self.init_points < 1:
            raise InputError(f"init_points: must be positive, got {self.init_points}")
        if self.checkpoint_every < 1 or self.checkpoint_minutes < 0:
            raise InputError(
                f"checkpoint_every: must be positive, got {self.checkpoint_every}; checkpoint_minutes: >= 0"
            )
        if not 1 <= self.field_grid_resolution <= 1024 or self.field_grid_resolution % 4:
            raise InputError(f"field_grid_resolution: a multiple of 4 in 4..1024, got {self.field_grid_resolution}")
        if not 4 <= self.field_log2_hashmap_size <= 26:
            raise InputError(f"field_log2_hashmap_size: expected 4..26, got {self.field_log2_hashmap_size}")
        if self.max_gaussians < 1:
            raise InputError(f"max_gaussians: must be positive, got {self.max_gaussians}")
        for entry in self.resolution_schedule:
            if len(entry) != 2 or int(entry[1]) < 1:
                raise InputError(f"resolution_schedule: entries are [step, factor >= 1], got {entry!r}")


def resolve_device(name: str = "auto", cuda_available: bool | None = None) -> str:
    """ "auto" -> "cuda" where a CUDA device is available, else "cpu"; other names unchanged."""
    if name != "auto":
        return name
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    return "cuda" if cuda_available else "cpu"


MOVING_MODELS = ("motion", "4d")  # the models whose scenes change with time


def resolve_model(name: str, dynamic: bool, monocular: bool = False) -> str:
    """ "auto" -> for frames that carry a time, "motion" when one camera films them (no two
    training frames at one time: one view per instant, where Gaussians that each move on their own
    reproduce the frames and smear between them), else "4d"; for static frames "3d". Other names
    unchanged."""
    if name != "auto":
        return name
    if not dynamic:
        return "3d"
    return "motion" if monocular else "4d"


DEFAULT_EPS2D = 0.3  # the rasterizer's low-pass filter (px^2), as in 3DGS
STILL_EPS2D = 0.1  # the low-pass filter of still 3D Gaussians (px^2)
MAX_EPS2D = 10.0


def is_filter_variance(value) -> bool:
    """A low-pass filter the rasterizer takes: a number in (0, MAX_EPS2D] px^2."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 < value <= MAX_EPS2D


def resolve_eps2d(eps2d: float, model: str) -> float:
    """0 (automatic) -> 0.1 px^2 for still 3D Gaussians: close to the variance of a pixel's box
    (1/12), it leaves their edges sharper than 3DGS's 0.3 (lego and beer gain 0.6-0.8 dB in 5
    minutes: bench/results/rasterize_filter-cpu.json; about 2 dB at 100 px: aliasing-cpu.json);
    0.3 for moving and 4D Gaussians, whose held-out frames lose with a smaller filter
    (dnerf_explorations-cpu.json). Values given stay."""
    if eps2d > 0:
        return eps2d
    return STILL_EPS2D if model == "3d" else DEFAULT_EPS2D


def resolve_rasterize_mode(mode: str, model: str) -> str:
    """ "auto" -> "antialiased" for moving 3D Gaussians (on D-NeRF lego it gains 1.2-1.5 dB on
    held-out frames: bench/results/train_dnerf-cpu.json), else "classic". Other modes unchanged."""
    if mode != "auto":
        return mode
    return "antialiased" if model == "motion" else "classic"


def device_kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def preset_config(name: str = "auto", **overrides) -> TrainConfig:
    """The preset's configuration with `overrides` on top; "auto" picks the preset (and "auto"
    the device) for this machine."""
    device = resolve_device(overrides.get("device", "auto"))
    if name == "auto":
        name = AUTO_PRESET[device_kind(device)]
    if name not in PRESETS:
        raise InputError(f"preset: expected auto or one of {', '.join(PRESETS)}, got {name!r}")
    follows_model = model_defaults(name, overrides.get("model"))
    return TrainConfig(
        **{
            **PRESETS[name],
            **follows_model,
            **overrides,
            "device": device,
            "preset": name,
            "given": sorted(set(overrides) - {"device"}),
        }
    )


def apply_model_defaults(config: TrainConfig) -> None:
    """Once the model is chosen from the data: its defaults (model_defaults) for the fields that
    preset_config was not given. A configuration not made by preset_config is left as it is."""
    if config.given is None:
        return
    for name, value in model_defaults(config.preset, config.model).items():
        if name not in config.given:
            setattr(config, name, value)


def _alternatives(choices: tuple[str, ...]) -> str:
    return f"{', '.join(choices[:-1])} or {choices[-1]}"


def cli_fields() -> list[dataclasses.Field]:
    """The TrainConfig fields `splat train` has a flag for, in declaration order."""
    return [f for f in dataclasses.fields(TrainConfig) if "help" in f.metadata]


def flag_name(f: dataclasses.Field) -> str:
    return "--" + (f.metadata["flag"] or f.name.replace("_", "-"))


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(f"{a}:{b}" for a, b in value) if value else "none"
    return str(value)


def default_text(f: dataclasses.Field) -> str:
    """A flag's default in words: the field's (or the flag's own), then what presets and models change."""
    m = f.metadata
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    parts = [m["describe_default"] or _value_text(default if m["cli_default"] is None else m["cli_default"])]
    by_value: dict[str, list[str]] = {}
    for preset, values in PRESETS.items():
        if f.name in values:
            by_value.setdefault(_value_text(values[f.name]), []).append(preset)
    for text, presets in by_value.items():
        parts.append(f"preset{'s' if len(presets) > 1 else ''} {', '.join(presets)}: {text}")
    parts += [f"model {model}: {_value_text(v[f.name])}" for model, v in MODEL_DEFAULTS.items() if f.name in v]
    parts += [
        f"preset {preset} with model {model}: {_value_text(v[f.name])}"
        for (preset, model), v in PRESET_MODEL_DEFAULTS.items()
        if f.name in v
    ]
    return "; ".join(parts)


# the type names of a config file's errors: (one, several)
_TYPE_NAMES = {
    bool: ("true or false", "true or false values"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("text", "texts"),
    type(None): ("null", "nulls"),
}


def read_config_file(path) -> dict[str, Any]:
    """TrainConfig fields from a JSON object (`splat train --config FILE`): name -> value, for the
    settings without a flag as well as those with one. An unknown name, a value of the wrong type
    or outside a field's choices is a one-line error naming the file (`TrainConfig.validate`
    checks the ranges and the choices again, but cannot say which file a value came from)."""
    import difflib
    import json
    import typing

    from splat.io_utils import read_json_object

    types = typing.get_type_hints(TrainConfig)
    choices = {f.name: f.metadata["choices"] for f in dataclasses.fields(TrainConfig) if f.metadata.get("choices")}
    settings = read_json_object(path)
    for name, value in settings.items():
        if name not in types:
            close = difflib.get_close_matches(name, types, n=1)
            maybe = f" (did you mean {close[0]}?)" if close else ""
            raise InputError(f"{path}: unknown setting {name[:60]!r}{maybe}")
        if name in choices and value not in choices[name]:
            raise InputError(f"{path}: {name} expects {_alternatives(choices[name])}, got {str(value)[:40]!r}")
        if not _is_of_type(value, types[name]):
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise InputError(f"{path}: {name} expects {_type_text(types[name])}, got {shown}")
    return settings


def _is_of_type(value: Any, tp: Any) -> bool:
    """A JSON value against a TrainConfig annotation (bool is no number; unions and lists looked into)."""
    import types as pytypes
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, pytypes.UnionType):
        return any(_is_of_type(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and (not args or all(_is_of_type(v, args[0]) for v in value))
    if tp is type(None):
        return value is None
    if tp in (int, float) and isinstance(value, bool):
        return False
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp) if isinstance(tp, type) else True


def _type_text(tp: Any, plural: bool = False) -> str:
    """ "an integer", "a number or null", "a list of lists of integers"... (plural: "integers")."""
    import typing

    args = typing.get_args(tp)
    if typing.get_origin(tp) is list:
        inner = _type_text(args[0], plural=True) if args else "values"
        return f"lists of {inner}" if plural else f"a list of {inner}"
    if args:
        return " or ".join(_type_text(a, plural) for a in args)
    names = _TYPE_NAMES.get(tp)
    return names[plural] if names else getattr(tp, "__name__", str(tp))
