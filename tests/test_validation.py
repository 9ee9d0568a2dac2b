"""Bad input gives a ValueError naming the argument, never a crash inside a kernel."""

from __future__ import annotations

import math

import pytest
import torch

import splat
from splat.scenes import intrinsics, look_at


def good_inputs(N=20, C=2, W=32, H=24):
    g = torch.Generator().manual_seed(0)
    return dict(
        means=torch.randn(N, 3, generator=g) * 0.3,
        quats=torch.randn(N, 4, generator=g),
        scales=torch.rand(N, 3, generator=g) * 0.1 + 0.01,
        opacities=torch.rand(N, generator=g),
        colors=torch.rand(N, 3, generator=g),
        viewmats=torch.stack([look_at((0, -3, 0.5), (0, 0, 0))] * C),
        Ks=torch.stack([intrinsics(W, H)] * C),
        width=W,
        height=H,
    )


def test_good_inputs_render():
    out, alpha, _ = splat.rasterize(**good_inputs())
    assert out.shape == (2, 24, 32, 3) and alpha.max() > 0


def nan_at(t, idx=0):
    t = t.clone()
    t.view(-1)[idx] = math.nan
    return t


CASES = [
    ("means", lambda a: a.update(means=a["means"][:, :2]), "means"),
    ("means_3d", lambda a: a.update(means=a["means"][None]), "means"),
    ("empty", lambda a: a.update(means=a["means"][:0]), "means"),
    ("means_int", lambda a: a.update(means=a["means"].long()), "means"),
    ("means_list", lambda a: a.update(means=a["means"].tolist()), "means"),
    ("quats_shape", lambda a: a.update(quats=a["quats"][:, :3]), "quats"),
    ("quats_zero", lambda a: a["quats"].__setitem__(3, 0.0), "quats"),
    ("scales_rows", lambda a: a.update(scales=a["scales"][:-1]), "scales"),
    ("opacities_shape", lambda a: a.update(opacities=a["opacities"][:, None]), "opacities"),
    ("colors_rows", lambda a: a.update(colors=a["colors"][:-1]), "colors"),
    ("colors_zero_channels", lambda a: a.update(colors=a["colors"][:, :0]), "colors"),
    ("sh_too_few_coeffs", lambda a: a.update(colors=torch.zeros(20, 4, 3), sh_degree=2), "colors"),
    ("sh_degree_range", lambda a: a.update(colors=torch.zeros(20, 25, 3), sh_degree=4), "sh_degree"),
    ("viewmats_shape", lambda a: a.update(viewmats=a["viewmats"][:, :3]), "viewmats"),
    ("no_cameras", lambda a: a.update(viewmats=a["viewmats"][:0], Ks=a["Ks"][:0]), "viewmats"),
    ("Ks_count", lambda a: a.update(Ks=a["Ks"][:1]), "Ks"),
    ("width_zero", lambda a: a.update(width=0), "width"),
    ("height_zero", lambda a: a.update(height=0), "height"),
    ("width_float", lambda a: a.update(width=32.5), "width"),
    ("tile_size", lambda a: a.update(tile_size=64), "tile_size"),
    ("near_far", lambda a: a.update(near_plane=5.0, far_plane=1.0), "near_plane"),
    ("eps2d", lambda a: a.update(eps2d=-1.0), "eps2d"),
    ("render_mode", lambda a: a.update(render_mode="RGBD"), "render_mode"),
    ("rasterize_mode", lambda a: a.update(rasterize_mode="fast"), "rasterize_mode"),
    ("camera_model", lambda a: a.update(camera_model="fisheye"), "camera_model"),
    ("backgrounds_shape", lambda a: a.update(backgrounds=torch.zeros(2, 4)), "backgrounds"),
    ("covars_shape", lambda a: a.update(covars=torch.zeros(20, 3)), "covars"),
    ("quats_missing", lambda a: a.update(quats=None), "quats"),
    ("nan_means", lambda a: a.update(means=nan_at(a["means"], 7)), "means"),
    ("inf_scales", lambda a: a["scales"].__setitem__((4, 1), math.inf), "scales"),
    ("nan_opacity", lambda a: a.update(opacities=nan_at(a["opacities"])), "opacities"),
    ("nan_colors", lambda a: a.update(colors=nan_at(a["colors"], 5)), "colors"),
    ("nan_viewmat", lambda a: a.update(viewmats=nan_at(a["viewmats"], 3)), "viewmats"),
    ("nan_K", lambda a: a.update(Ks=nan_at(a["Ks"])), "Ks"),
    ("nan_background", lambda a: a.update(backgrounds=nan_at(torch.zeros(2, 3))), "backgrounds"),
    ("packed", lambda a: a.update(packed=True), "packed"),
]


def test_finite_values_whose_sum_overflows_are_accepted():
    """Finiteness is decided by one sum per tensor; a finite tensor whose float32 sum overflows
    must still pass (the exact per-element check decides then)."""
    args = good_inputs()
    args["colors"] = torch.full_like(args["colors"], 3e38)
    out, _, _ = splat.rasterize(**args)
    assert out.shape == (2, 24, 32, 3)


@pytest.mark.parametrize("name,mutate,argument", CASES, ids=[c[0] for c in CASES])
def test_bad_input_names_the_argument(name, mutate, argument):
    args = good_inputs()
    mutate(args)
    with pytest.raises(ValueError) as info:
        splat.rasterize(**args)
    message = str(info.value)
    assert message.startswith(argument + ":") or message.startswith(argument + ","), message
    assert "\n" not in message


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to mix devices")
def test_mismatched_devices():
    args = good_inputs()
    args["colors"] = args["colors"].cuda()
    with pytest.raises(ValueError, match="^colors: on device"):
        splat.rasterize(**args)


def test_mismatched_devices_meta():
    """Without a GPU, a tensor on the 'meta' device stands in for 'another device'."""
    args = good_inputs()
    args["opacities"] = torch.empty(20, device="meta")
    with pytest.raises(ValueError, match="^opacities: on device meta"):
        splat.rasterize(**args)


def test_scene_entirely_out_of_view_renders_background():
    args = good_inputs()
    args["means"] = args["means"] + torch.tensor([0.0, -10.0, 0.0])  # behind the cameras
    out, alpha, meta = splat.rasterize(**args, backgrounds=torch.tensor([[0.2, 0.4, 0.6]] * 2))
    assert alpha.max() == 0 and meta["isect_ids"].numel() == 0
    assert torch.allclose(out, torch.tensor([0.2, 0.4, 0.6]).expand_as(out))


def test_one_pixel_image():
    args = good_inputs()
    args.update(width=1, height=1, Ks=torch.stack([intrinsics(1, 1)] * 2))
    out, alpha, _ = splat.rasterize(**args)
    assert out.shape == (2, 1, 1, 3) and torch.isfinite(out).all()
