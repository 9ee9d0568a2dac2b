#!/usr/bin/env python
"""Do files written by splat open in independent readers? Two steps, two interpreters:

    .venv/bin/python bench/formats_interop.py write DIR            # splat writes every format + expected.npz
    OTHER_VENV/bin/python bench/formats_interop.py check DIR       # gsply / spz reference read them back
                                                                   # (and the reference writes SPZ v2/v3/v4)
    .venv/bin/python bench/formats_interop.py read DIR             # splat reads the reference's files

The check step needs only numpy plus the readers it finds (gsply: `pip install gsply zstandard`
in a throwaway venv; Niantic's `spz` bindings if built from nianticlabs/spz), never splat or
torch. It compares the values each reader returns with what splat wrote, within each format's
quantisation, and writes bench/results/formats-interop.json.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

import numpy as np

from splat.formats.spz import RDF_TO_RUB as SPZ_RDF_TO_RUB
from splat.renderer.constants import SH_C0

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RDF_TO_RUB = np.array(SPZ_RDF_TO_RUB)


def write(folder: Path) -> None:
    import torch

    from splat.formats import write_splats
    from splat.formats.common import sh_axis_signs

    g = torch.Generator().manual_seed(0)
    N = 5000
    s = {
        "means": torch.randn(N, 3, generator=g),
        "scales": -4 + 2 * torch.rand(N, 3, generator=g),
        "quats": torch.randn(N, 4, generator=g),
        "opacities": 6 * torch.rand(N, generator=g) - 3,
        "sh0": 3 * torch.rand(N, 1, 3, generator=g) - 1.5,
        "shN": 0.6 * torch.rand(N, 15, 3, generator=g) - 0.3,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, fmt, opts in [
        ("scene.ply", "ply", {}),
        ("scene.compressed.ply", "compressed-ply", {}),
        ("scene.splat", "splat", {}),
        ("scene_v3.spz", "spz", {}),
        ("scene_v4.spz", "spz", {"version": 4}),
    ]:
        write_splats(folder / name, s, fmt, **opts)
    arrays = {k: v.numpy() for k, v in s.items()}
    np.savez(folder / "expected.npz", **arrays, sh_signs_rub=sh_axis_signs(3, RDF_TO_RUB))
    print(f"wrote {N} Gaussians in every format to {folder}")


def _unit(q):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return np.where(q[:, :1] < 0, -q, q)


def _match(means_read, means_ref):
    """Index into the reference for each read Gaussian (readers and writers may reorder)."""
    from numpy.linalg import norm

    order_read, order_ref = np.lexsort(means_read.T[::-1]), np.lexsort(means_ref.T[::-1])
    idx = np.empty(len(means_read), dtype=np.int64)
    idx[order_read] = order_ref
    if norm(means_read - means_ref[idx], axis=1).max() > 1e-2:  # quantised positions: nearest neighbour
        idx = np.array([int(np.argmin(((means_ref - m) ** 2).sum(1))) for m in means_read])
    return idx


def _errors(read: dict, ref: dict) -> dict:
    idx = _match(read["means"], ref["means"])
    r = {k: ref[k][idx] for k in ref}
    q_read, q_ref = _unit(read["quats"]), _unit(r["quats"])
    q_ref = np.where((q_read * q_ref).sum(1, keepdims=True) < 0, -q_ref, q_ref)
    out = {
        "count": int(len(read["means"])),
        "means": float(np.abs(read["means"] - r["means"]).max()),
        "log_scales": float(np.abs(read["scales"] - r["scales"]).max()),
        "quats": float(np.abs(q_read - q_ref).max()),
        "alpha": float(np.abs(1 / (1 + np.exp(-read["opacities"])) - 1 / (1 + np.exp(-r["opacities"]))).max()),
        "dc_colour": float(np.abs(SH_C0 * (read["sh0"].reshape(-1, 3) - r["sh0"].reshape(-1, 3))).max()),
    }
    if read.get("shN") is not None and np.size(read["shN"]):
        out["sh_rest"] = float(np.abs(read["shN"].reshape(len(idx), -1, 3) - r["shN"]).max())
    return out


def _gsdata(d) -> dict:
    return {
        "means": np.asarray(d.means, np.float64),
        "scales": np.asarray(d.scales, np.float64),
        "quats": np.asarray(d.quats, np.float64),
        "opacities": np.asarray(d.opacities, np.float64),
        "sh0": np.asarray(d.sh0, np.float64),
        "shN": None if d.shN is None else np.asarray(d.shN, np.float64),
    }


def check(folder: Path) -> None:
    ref = dict(np.load(folder / "expected.npz"))
    signs = ref.pop("sh_signs_rub")
    ref_rub = {
        **ref,
        "means": ref["means"] * RDF_TO_RUB,
        "quats": ref["quats"] * np.concatenate([[1.0], RDF_TO_RUB]),
        "shN": ref["shN"] * signs[None, :, None],
    }
    result = {
        "benchmark": "formats-interop",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "readers": {},
    }
    try:
        import gsply

        res = {"version": gsply.__version__}
        for name in ("scene.ply", "scene.compressed.ply"):
            res[name] = _errors(_gsdata(gsply.plyread(str(folder / name))), ref)
        for name in ("scene_v3.spz", "scene_v4.spz"):  # gsply returns SPZ's stored (RUB) frame as is
            res[name + " (vs RUB)"] = _errors(_gsdata(gsply.read_spz(str(folder / name))), ref_rub)
        result["readers"]["gsply"] = res
    except ImportError as e:
        result["readers"]["gsply"] = f"not available: {e}"
    try:
        import spz as niantic

        res = {}
        for name in ("scene_v3.spz", "scene_v4.spz"):
            opts = niantic.UnpackOptions()
            opts.to_coord = niantic.CoordinateSystem.RDF  # the PLY frame splat works in
            c = niantic.load_spz(str(folder / name), opts)
            xyzw = np.asarray(c.rotations, np.float64).reshape(-1, 4)
            d = {
                "means": np.asarray(c.positions, np.float64).reshape(-1, 3),
                "scales": np.asarray(c.scales, np.float64).reshape(-1, 3),
                "quats": xyzw[:, [3, 0, 1, 2]],
                "opacities": np.asarray(c.alphas, np.float64).reshape(-1),
                "sh0": np.asarray(c.colors, np.float64).reshape(-1, 3),
                "shN": np.asarray(c.sh, np.float64).reshape(len(xyzw), -1, 3),
            }
            res[name + " (to RDF)"] = _errors(d, ref)
        result["readers"]["niantic spz"] = res
    except ImportError as e:
        result["readers"]["niantic spz"] = f"not available: {e}"
    try:  # the reference writes SPZ v2, v3, v4 from the same Gaussians (given in RDF) for `read`
        import spz as niantic

        def cloud(n):
            c = niantic.GaussianCloud()
            c.sh_degree = 3  # num_points follows from the positions
            f32 = lambda a: a[:n].reshape(-1).astype(np.float32)  # noqa: E731
            c.positions, c.scales, c.rotations = (
                f32(ref["means"]),
                f32(ref["scales"]),
                f32(ref["quats"][:, [1, 2, 3, 0]]),
            )
            c.alphas, c.colors, c.sh = f32(ref["opacities"]), f32(ref["sh0"]), f32(ref["shN"])
            return c

        # the small copies (64 Gaussians) are the test suite's fixtures, tests/data/spz_reference
        for prefix, n in (("reference", len(ref["means"])), ("fixture", 64)):
            for version in (2, 3, 4):
                opts = niantic.PackOptions()
                opts.from_coord, opts.version = niantic.CoordinateSystem.RDF, version
                assert niantic.save_spz(cloud(n), opts, str(folder / f"{prefix}_v{version}.spz"))
    except ImportError:
        pass
    print(json.dumps(result["readers"], indent=1))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "formats-interop.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


def read(folder: Path) -> None:
    from splat.formats import read_splats

    ref = dict(np.load(folder / "expected.npz"))
    ref.pop("sh_signs_rub")
    out = {}
    for version in (2, 3, 4):
        path = folder / f"reference_v{version}.spz"
        if path.is_file():
            out[path.name] = _errors({k: v.double().numpy() for k, v in read_splats(path).items()}, ref)
    print(json.dumps(out, indent=1))
    result_path = RESULTS / "formats-interop.json"
    result = json.loads(result_path.read_text())
    result["splat reads the reference's files"] = out
    result_path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    steps = {"write": write, "check": check, "read": read}
    if len(sys.argv) != 3 or sys.argv[1] not in steps:
        sys.exit(__doc__)
    steps[sys.argv[1]](Path(sys.argv[2]))
