"""INRIA 3DGS PLY: exact layout, round trip, readers for other tools' files, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from splat.ply import PlyError, load_ply, save_ply


def random_splats(gen, n=50, degree=3):
    return {
        "means": torch.randn(n, 3, generator=gen),
        "scales": torch.randn(n, 3, generator=gen) - 3,
        "quats": torch.randn(n, 4, generator=gen),
        "opacities": torch.randn(n, generator=gen),
        "sh0": torch.randn(n, 1, 3, generator=gen),
        "shN": torch.randn(n, (degree + 1) ** 2 - 1, 3, generator=gen),
    }


def test_layout_is_inria(tmp_path, gen):
    s = random_splats(gen)
    save_ply(tmp_path / "a.ply", s)
    v = PlyData.read(str(tmp_path / "a.ply"))["vertex"]
    names = list(v.data.dtype.names)
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(45)]
    expected += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert names == expected
    assert all(v.data.dtype[n] == np.float32 for n in names)
    # f_rest is channel-major: f_rest_0..14 are red's 15 coefficients, then green, then blue
    k = 7
    assert v["f_rest_0"][k] == pytest.approx(float(s["shN"][k, 0, 0]))
    assert v["f_rest_1"][k] == pytest.approx(float(s["shN"][k, 1, 0]))
    assert v["f_rest_15"][k] == pytest.approx(float(s["shN"][k, 0, 1]))
    assert v["f_rest_44"][k] == pytest.approx(float(s["shN"][k, 14, 2]))
    assert v["rot_0"][k] == pytest.approx(float(s["quats"][k, 0]))  # w first
    assert (v["nx"] == 0).all()


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_round_trip(tmp_path, gen, degree):
    s = random_splats(gen, degree=degree)
    save_ply(tmp_path / "a.ply", s)
    back = load_ply(tmp_path / "a.ply")
    for key in s:
        assert torch.equal(back[key], s[key].float()), key


def test_reads_files_from_other_tools(tmp_path, gen):
    """nerfstudio / gsplat-style files: properties in another order, extra ones, no f_rest."""
    n = 10
    cols = {
        name: np.random.default_rng(0).standard_normal(n).astype(np.float32)
        for name in [
            "opacity",
            "rot_0",
            "rot_1",
            "rot_2",
            "rot_3",
            "scale_0",
            "scale_1",
            "scale_2",
            "x",
            "y",
            "z",
            "f_dc_0",
            "f_dc_1",
            "f_dc_2",
            "extra_feature",
        ]
    }
    arr = np.empty(n, dtype=[(k, "f4") for k in cols])
    for k, v in cols.items():
        arr[k] = v
    PlyData([PlyElement.describe(arr, "vertex")], text=True).write(str(tmp_path / "ns.ply"))
    s = load_ply(tmp_path / "ns.ply")
    assert s["shN"].shape == (n, 0, 3)
    assert np.allclose(s["means"][:, 1].numpy(), cols["y"]) and np.allclose(s["quats"][:, 0].numpy(), cols["rot_0"])


def test_bad_files_name_the_file(tmp_path):
    missing = tmp_path / "missing.ply"
    with pytest.raises(PlyError, match=str(missing)):
        load_ply(missing)
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"this is not a ply file")
    with pytest.raises(PlyError, match=str(garbage)):
        load_ply(garbage)
    mesh = tmp_path / "points.ply"
    arr = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(mesh))
    with pytest.raises(PlyError, match="not a Gaussian splat PLY"):
        load_ply(mesh)
