"""The browser renderer's data (viewer/client_splats.py) and its update rules: view-baked colours
equal the rasterizer's SH colours from that viewpoint, the budget keeps the Gaussians that
matter, and live training / 4D playback re-send at bounded rates."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from chromium import free_port
from test_render_api import still_life_ply
from viser_client import ScriptedClient, wait_until

import splat
from splat.camera import Camera
from splat.scene import GaussianScene
from splat.train.live import LiveRun
from splat.train.losses import psnr
from splat.viewer import app as viewer_app
from splat.viewer.client_splats import baked_scene, browser_splats


def random_sh_scene(n=1500, seed=0) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    splats = {
        "means": torch.rand(n, 3, generator=g) * 2 - 1,
        "scales": torch.log(0.02 + 0.06 * torch.rand(n, 3, generator=g)),
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g) + 1.0,
        "sh0": 0.6 * torch.randn(n, 1, 3, generator=g),
        "shN": 0.3 * torch.randn(n, 3, 3, generator=g),
    }
    return GaussianScene(splats)


def test_view_baked_colours_match_the_sh_render_from_that_viewpoint():
    scene = random_sh_scene()
    cam = Camera.look_at((0.3, -3.5, 1.2), (0, 0, 0), width=96, height=72, fov_x=50)
    exact = scene.render(cam, background=(1, 1, 1))["rgb"]
    baked = baked_scene(scene, cam.center, quantize=False).render(cam, background=(1, 1, 1))["rgb"]
    dc = baked_scene(scene, None, quantize=False).render(cam, background=(1, 1, 1))["rgb"]
    elsewhere = baked_scene(scene, (3.0, 1.0, 0.5), quantize=False).render(cam, background=(1, 1, 1))["rgb"]
    # colours > 1 are clipped for the browser (uint8) while the rasterizer composites them unclipped
    assert psnr(baked, exact) > 35, psnr(baked, exact)
    assert psnr(dc, exact) < psnr(baked, exact) - 5 and psnr(elsewhere, exact) < psnr(baked, exact) - 5
    wire = baked_scene(scene, cam.center).render(cam, background=(1, 1, 1))["rgb"]  # uint8 colours and opacities
    assert psnr(wire, exact) > 30


def test_the_budget_keeps_the_gaussians_that_contribute_most(tmp_path):
    scene = splat.load(still_life_ply(tmp_path / "s.ply"))
    cam = Camera.look_at((0, -3.2, 1.6), (0, 0, 0.25), width=96, height=72, fov_x=55)
    scene.cameras = [cam]
    full = scene.render(cam, background=(1, 1, 1))["rgb"]
    budget = scene.num_gaussians // 2
    chosen = browser_splats(scene, budget)
    assert chosen.count == budget and chosen.total == scene.num_gaussians
    kept = baked_scene(scene, cam.center, max_splats=budget).render(cam, background=(1, 1, 1))["rgb"]
    ids = torch.randperm(scene.num_gaussians, generator=torch.Generator().manual_seed(0))[:budget]
    random_subset = GaussianScene({k: v[ids] for k, v in scene.splats.items()}).render(cam, background=(1, 1, 1))["rgb"]
    # measured: 46.9 dB against 23.2 dB for a random half
    assert psnr(kept, full) > 35 and psnr(kept, full) > psnr(random_subset, full) + 10, (
        psnr(kept, full),
        psnr(random_subset, full),
    )


@pytest.fixture
def still_life(tmp_path):
    return splat.load(still_life_ply(tmp_path / "s.ply"))


def test_a_scene_over_the_budget_opens_on_the_server_and_shows_the_count(still_life):
    v = viewer_app.Viewer(still_life, port=free_port(), max_splats=2000)
    try:
        assert v.default_renderer == "server"
        c = ScriptedClient(v.port)
        c.send_camera()
        wait_until(lambda: v._states(), what="the client")
        (state,) = v._states()
        c.set_gui(state.gui.renderer, "browser")
        wait_until(lambda: state.splats is not None, what="the Gaussians to be sent")
        assert state.splats.count == 2000
        wait_until(
            lambda: f"2,000 of {still_life.num_gaussians:,}" in state.gui.stats.content, what="the count in the GUI"
        )
        c.close()
    finally:
        v.close()


def test_colours_are_rebaked_once_the_camera_settles():
    v = viewer_app.Viewer(random_sh_scene(), port=free_port())
    try:
        c = ScriptedClient(v.port)
        c.send_camera(position=(0.0, -3.0, 1.0))
        wait_until(lambda: v._states() and v._states()[0].splats is not None, what="the first push")
        (state,) = v._states()
        first = state.splats_handle.rgbs.copy()
        pushes = v.splat_pushes
        c.send_camera(position=(3.0, 0.5, 1.0))
        wait_until(lambda: v.splat_pushes > pushes, timeout=10, what="new colours after the camera settled")
        assert np.allclose(state.colours_from, (3.0, 0.5, 1.0))
        assert np.abs(state.splats_handle.rgbs.astype(int) - first).max() > 10
        c.close()
    finally:
        v.close()


def test_live_training_pushes_at_a_bounded_rate(still_life):
    trainer = SimpleNamespace(step=0, cfg=SimpleNamespace(steps=10**6))
    v = viewer_app.Viewer(lambda: still_life, port=free_port(), live=LiveRun(trainer))
    try:
        c = ScriptedClient(v.port)
        c.send_camera()
        wait_until(lambda: v.splat_pushes >= 1, what="the first push")
        start, t0 = v.splat_pushes, time.monotonic()
        while time.monotonic() - t0 < 5:
            trainer.step += 1  # a fast trainer: a new model every 10 ms
            time.sleep(0.01)
        pushes = v.splat_pushes - start
        assert 1 <= pushes <= 5 / viewer_app.LIVE_PUSH_SECONDS + 1, pushes
        c.close()
    finally:
        v.close()


def test_4d_playback_pushes_sliced_gaussians_at_a_bounded_rate():
    n = 300
    g = torch.Generator().manual_seed(1)
    ident = torch.tensor([1.0, 0, 0, 0]).expand(n, 4).contiguous()
    scene = GaussianScene(
        {
            "means": torch.cat([torch.rand(n, 3, generator=g) - 0.5, torch.rand(n, 1, generator=g)], 1),
            "scales": torch.log(torch.tensor([0.05, 0.05, 0.05, 0.2])).expand(n, 4).contiguous(),
            "quats": ident,
            "quats_right": ident.clone(),
            "opacities": torch.full((n,), 2.0),
            "sh0": torch.randn(n, 1, 3, generator=g),
        }
    )
    v = viewer_app.Viewer(scene, port=free_port())
    try:
        c = ScriptedClient(v.port)
        c.send_camera()
        wait_until(lambda: v.splat_pushes >= 1, what="the first push")
        (state,) = v._states()
        start = v.splat_pushes
        c.set_gui(state.gui.playing, True)
        time.sleep(3)
        c.set_gui(state.gui.playing, False)
        pushes = v.splat_pushes - start
        assert 1 <= pushes <= 3 / viewer_app.PLAY_PUSH_SECONDS + 2, pushes
        assert state.gui.settings().time > 0.1  # the slider moved
        c.close()
    finally:
        v.close()
