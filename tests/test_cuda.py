"""The CUDA path.

On a machine with a GPU (the tests marked `cuda`): every kernel against its float64 twin on CPU,
run on CUDA tensors (3D rasterizer, 4D slicing and rasterizer, hash encoding, fused MLP, volume
rendering, ray marching), and CUDA == CPU. `SPLAT_TEST_DEVICE=cpu` runs those same tests on the
CPU instead (`bench/gpu_check.py --dry`), so they cannot rot where CI has no GPU. Everywhere (no GPU needed):
every Warp kernel module compiles to PTX for Ampere (sm_80) and Hopper (sm_90) through Warp's
bundled NVRTC, so a CUDA-only compile error cannot hide behind CPU-only CI.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import test_4d
import test_fields
import test_marching
import test_volume_rendering
import torch
import warp as wp
from test_rasterize import check, make_inputs

import splat
from splat.renderer import binning, compositing_pixel, projection, spherical_harmonics

cuda = pytest.mark.cuda
DEVICE = os.environ.get("SPLAT_TEST_DEVICE", "cuda")


@cuda
@pytest.mark.parametrize("sh_degree", [None, 3])
@pytest.mark.parametrize("rasterize_mode", ["classic", "antialiased"])
def test_cuda_matches_reference(gen, sh_degree, rasterize_mode):
    inputs, views, Ks = make_inputs(gen, C=3, N=300, width=48, height=36, sh_degree=sh_degree)
    check(gen, inputs, views, Ks, 48, 36, device=DEVICE, sh_degree=sh_degree, rasterize_mode=rasterize_mode)


@cuda
@pytest.mark.parametrize("D", [1, 32])
def test_cuda_feature_channels_and_depth(gen, D):
    inputs, views, Ks = make_inputs(gen, C=2, N=200, width=40, height=30, D=D)
    check(gen, inputs, views, Ks, 40, 30, device=DEVICE, render_mode="RGB+ED")


@cuda
def test_cuda_equals_cpu(gen):
    inputs, views, Ks = make_inputs(gen, C=2, N=400, width=64, height=48, sh_degree=2)
    kw = {k: v.float() for k, v in inputs.items()}
    cpu = splat.rasterize(**kw, viewmats=views.float(), Ks=Ks.float(), width=64, height=48, sh_degree=2)
    gpu = splat.rasterize(
        **{k: v.to(DEVICE) for k, v in kw.items()},
        viewmats=views.float().to(DEVICE),
        Ks=Ks.float().to(DEVICE),
        width=64,
        height=48,
        sh_degree=2,
    )
    for a, b in zip(cpu[:2], gpu[:2]):
        assert b.device.type == DEVICE
        assert (a - b.cpu()).abs().max() < 1e-5
    assert torch.equal(cpu[2]["radii"], gpu[2]["radii"].cpu())


@cuda
def test_cuda_covariance_4d_matches_twin(gen):
    test_4d.test_covariance_4d_kernel_matches_twin(gen, device=DEVICE)


@cuda
def test_cuda_slice_at_times_matches_twin(gen):
    test_4d.test_slice_at_times_kernel_matches_twin(gen, device=DEVICE)


@cuda
def test_cuda_rasterize_4d_matches_reference(gen):
    test_4d.test_rasterize_4d_matches_reference(gen, "pixel", device=DEVICE)


@cuda
@pytest.mark.parametrize("dims", [2, 3])
def test_cuda_hash_encoding_matches_twin(gen, dims):
    test_fields.test_encoding_matches_twin(gen, dims, device=DEVICE)


@cuda
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("dims, hidden, outputs", [(3, 1, 16), (2, 2, 3)])
def test_cuda_fused_mlp_matches_twin(gen, dims, hidden, outputs, fused):
    test_fields.test_fused_mlp_matches_twin(gen, dims, hidden, outputs, fused, device=DEVICE)


@cuda
def test_cuda_volume_rendering_matches_twin(gen):
    test_volume_rendering.test_composite_rays_matches_twin(gen, device=DEVICE)


@cuda
@pytest.mark.parametrize("contract", [False, True])
def test_cuda_ray_marching_matches_twin(gen, contract):
    test_marching.test_march_matches_twin(gen, contract, device=DEVICE)


@pytest.mark.parametrize("arch", [80, 90])
def test_kernels_compile_for_cuda(arch):
    """PTX generation of every kernel module CUDA runs (D = 3 and 32 for the generated compositing
    kernels; the tile kernels are the CPU's, compiled by every CPU test that composites)."""
    modules = [projection, spherical_harmonics, binning]
    for D in (3, 32):
        modules += [k.module for k in compositing_pixel.pixel_kernels(D)]
    with tempfile.TemporaryDirectory() as tmp:
        for m in modules:
            try:
                paths = wp.compile_aot_module(m, arch=arch, module_dir=tmp, use_ptx=True)
            except RuntimeError as e:
                if "NVRTC" in str(e) or "nvrtc" in str(e):
                    pytest.skip(f"Warp's NVRTC is unavailable here: {e}")
                raise
            assert paths and all(p.exists() and p.stat().st_size > 1000 for p in paths)
