"""Training configuration: INRIA 3DGS / gsplat defaults, serialisable to the run folder."""

from __future__ import annotations

import dataclasses
from typing import Any

from splat.errors import InputError


@dataclasses.dataclass
class TrainConfig:
    preset: str = "inria"  # the named starting point this configuration came from (PRESETS)
    steps: int = 30_000
    max_train_seconds: float = 0.0  # > 0: stop (evaluate, checkpoint) once training time passes this
    strategy: str = "default"  # "default" (INRIA adaptive density control) or "mcmc"
    device: str = "auto"  # "auto": CUDA when available, else the CPU
    seed: int = 0

    # data
    downscale: int = 0  # 0: automatic (longer side at most MAX_IMAGE_SIDE[device] pixels)
    background: str = "auto"  # "auto" (white for Blender scenes, else black), "white", "black", "random"
    test_every: int = 8
    cache_gb: float = 4.0

    # model
    model: str = "auto"  # "3d", "4d" (dynamic: XYZT Gaussians), "field" (hash-grid NeRF), or "auto" (3d/4d)
    init_time_scale: float = 0.2  # 4d: initial temporal std. dev., in units of the [0, 1] time range
    sh_degree: int = 3
    sh_degree_interval: int = 1000  # raise the active SH degree by one every this many steps
    init_points: int = 100_000  # random initialisation when the dataset has no sparse points
    init_opacity: float | None = None  # default: 0.1 (default strategy), 0.5 (mcmc)
    init_scale: float | None = None  # times the kNN distance; default: 1.0 (default), 0.1 (mcmc)
    random_init_scale: float | None = None  # the same for random points (no sparse points); default: init_scale
    max_gaussians: int = 3_000_000

    # optimisation (Adam, eps 1e-15)
    batch_size: int = 1  # images per step (4D: frames at different times), loss averaged
    lr_means: float = 1.6e-4  # times the scene extent (1.1 x camera radius), decays exponentially to lr_means_final
    lr_means_final: float = 1.6e-6
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    ssim_lambda: float = 0.2
    appearance: bool = False  # per-image colour affine for auto-exposure captures (train/appearance.py)

    # densification (strategy parameters; see strategies.py)
    refine_start: int = 500
    refine_stop: int | None = None  # default: 15k (default strategy), 25k (mcmc)
    refine_every: int = 100
    reset_every: int = 3000
    grow_grad2d: float = 0.0002
    absgrad: bool = False
    mcmc_cap_max: int = 1_000_000

    # neural field (model "field"): Instant-NGP / nerfacc defaults (see train/field_trainer.py)
    field_samples: int = 1 << 18  # target samples per step; the number of rays adapts to it
    field_lr: float = 1e-2
    field_loss: str = "l2"  # "l2" or "huber" (delta 0.1)
    field_contract: str = "auto"  # "auto" (bounded for Blender / D-NeRF object captures), "yes", "no"
    field_bound: float = 0.0  # half-size of the scene box in the normalised frame; 0: 0.375 bounded, 1.0 contracted
    field_log2_hashmap_size: int = 19
    field_grid_resolution: int = 128  # occupancy grid cells per axis

    # resolution warm-up: [[step, downscale factor], ...] applied from each step on
    resolution_schedule: list = dataclasses.field(default_factory=list)

    # evaluation and logging
    eval_steps: list = dataclasses.field(default_factory=lambda: [7_000, 30_000])
    eval_subset: int = 0  # >0: intermediate evaluations use this many evenly spaced test images
    save_renders: bool = True
    log_every: int = 100
    checkpoint_every: int = 5000
    checkpoint_minutes: float = 10.0  # also checkpoint after this much training time (0: by steps only)
    keep_checkpoints: int = 2

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in d.items() if k in known})

    def validate(self) -> None:
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise InputError(f"device: expected auto, cpu or cuda, got {self.device!r}")
        if self.downscale < 0:
            raise InputError(f"downscale: expected a positive factor or 0 (automatic), got {self.downscale}")
        if self.steps < 1:
            raise InputError(f"steps: must be positive, got {self.steps}")
        if self.strategy not in ("default", "mcmc"):
            raise InputError(f"strategy: expected 'default' or 'mcmc', got {self.strategy!r}")
        if self.model not in ("auto", "3d", "4d", "field"):
            raise InputError(f"model: expected auto, 3d, 4d or field, got {self.model!r}")
        if self.field_loss not in ("l2", "huber"):
            raise InputError(f"field_loss: expected l2 or huber, got {self.field_loss!r}")
        if self.field_contract not in ("auto", "yes", "no"):
            raise InputError(f"field_contract: expected auto, yes or no, got {self.field_contract!r}")
        if self.field_samples < 1024 or self.field_bound < 0:
            raise InputError("field_samples: at least 1024; field_bound: >= 0")
        if self.background not in ("auto", "white", "black", "random"):
            raise InputError(f"background: expected auto, white, black or random, got {self.background!r}")
        if not 0 <= self.sh_degree <= 3:
            raise InputError(f"sh_degree: expected 0..3, got {self.sh_degree}")
        if self.batch_size < 1:
            raise InputError(f"batch_size: must be positive, got {self.batch_size}")
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


# Named starting points. "inria": the published 3DGS schedule. "fast": for CPUs and quick looks;
# the same optimiser and densification, but a resolution warm-up (1/4 size for 500 steps, 1/2
# until 2000) and a 20k-point random initialisation, which get NeRF-synthetic lego at 400x400
# past 30 dB test PSNR in under 20 minutes on a 2-core CPU (bench/train_lego.py).
# "cpu": "fast" within a time budget that ends a run in about a quarter of an hour, evaluated
# once at the end (bench/results/train_defaults_lego-cpu.json measures it); random points start at
# half their kNN distance: random points are not surfaces, and at full size their overlapping
# footprints gave the first steps 2.2x the tile pairs (bench/results/step_cost-cpu.json has the
# early / late step costs with this setting). "auto" (the CLI default)
# is "inria" on CUDA and "cpu" on a CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "inria": {},
    "fast": {"resolution_schedule": [[0, 4], [500, 2], [2000, 1]], "init_points": 20_000},
    "cpu": {
        "resolution_schedule": [[0, 4], [500, 2], [2000, 1]],
        "init_points": 20_000,
        "max_train_seconds": 780.0,
        "eval_steps": [],
        "random_init_scale": 0.5,
    },
}
AUTO_PRESET = {"cuda": "inria", "cpu": "cpu"}
# Automatic downscaling: the longer image side in pixels, at most (INRIA rescales beyond 1.6k;
# a CPU step costs about 4x less at half the size).
MAX_IMAGE_SIDE = {"cuda": 1600, "cpu": 800}


def resolve_device(name: str = "auto", cuda_available: bool | None = None) -> str:
    """ "auto" -> "cuda" where a CUDA device is available, else "cpu"; other names unchanged."""
    if name != "auto":
        return name
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    return "cuda" if cuda_available else "cpu"


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
    return TrainConfig(**{**PRESETS[name], **overrides, "device": device, "preset": name})
