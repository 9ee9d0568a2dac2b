"""splat: neural rendering engine (Gaussian splatting and neural fields) built on NVIDIA Warp.

import splat
colors, alphas, meta = splat.rasterize(means, quats, scales, opacities, colors, viewmats, Ks, W, H)

scene = splat.load("runs/lego")            # a run folder, checkpoint or PLY (Gaussians or a neural field)
out = scene.render(splat.Camera.look_at((0, -4, 2), (0, 0, 0)), outputs=("rgb", "depth"))
"""

import os
from importlib.metadata import PackageNotFoundError, version

# torch's OpenMP threads spin-wait after every parallel op; they then take the cores from Warp's
# launch threads (and from any other job), which made CPU training steps up to 5x slower under
# load (bench/results/step_cost-cpu.json). Passive waiting, unless the user chose otherwise; it
# takes effect only where torch is imported after splat (the CLI, or `import splat` first).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("splat")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


_LAZY = {
    "rasterize": ("splat.renderer", "rasterize"),
    "rasterize_4d": ("splat.renderer", "rasterize_4d"),
    "load": ("splat.scene", "load"),
    "GaussianScene": ("splat.scene", "GaussianScene"),
    "FieldScene": ("splat.field_scene", "FieldScene"),
    "Scene": ("splat.scene_protocol", "Scene"),
    "Camera": ("splat.camera", "Camera"),
    "load_ply": ("splat.ply", "load_ply"),
    "save_ply": ("splat.ply", "save_ply"),
    "trajectories": ("splat.trajectories", None),
}


def __getattr__(name):
    # Lazy: `import splat` (and `splat --help`) stays fast; Warp and torch load on first use.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'splat' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
