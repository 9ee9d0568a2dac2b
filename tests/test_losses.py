"""The training loss against a float64 pure-torch twin: SSIM from its definition (a full 11x11
window, statistics per channel), forward and gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from splat.train import losses


def ssim_map_twin(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """SSIM of (H, W, C) images, written from the definition: a 2D Gaussian window (sigma 1.5,
    11x11, zero padding), statistics per channel, mean over channels."""
    r = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(r**2) / (2 * 1.5**2))
    window = torch.outer(g, g) / g.sum() ** 2
    C = img.shape[2]
    x, y = img.permute(2, 0, 1)[:, None], ref.permute(2, 0, 1)[:, None]  # (C, 1, H, W)

    def mean(t):
        return F.conv2d(t, window[None, None], padding=5)

    mx, my = mean(x), mean(y)
    vx, vy, cov = mean(x * x) - mx**2, mean(y * y) - my**2, mean(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert s.shape[0] == C
    return s[:, 0].mean(dim=0)


@pytest.mark.parametrize("shape", [(37, 52, 3), (16, 16, 1), (9, 30, 4)])
def test_ssim_matches_float64_twin_forward_and_gradients(shape):
    gen = torch.Generator().manual_seed(hash(shape) % 2**31)
    img = torch.rand(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    # a reference correlated with the image, so SSIM is far from 0 and from 1
    ref = (0.6 * img.detach() + 0.4 * torch.rand(shape, generator=gen, dtype=torch.float64)).requires_grad_()
    mask = torch.rand(shape[:2], generator=gen) > 0.3
    weights = torch.rand(shape[:2], generator=gen, dtype=torch.float64)

    ours = losses.ssim_map(img, ref)
    twin = ssim_map_twin(img, ref)
    assert torch.allclose(ours, twin, rtol=1e-10, atol=1e-12)
    assert 0.2 < float(twin.mean().detach()) < 0.95  # the comparison is not between two constants

    (g_img, g_ref) = torch.autograd.grad((ours * weights).sum(), (img, ref))
    (t_img, t_ref) = torch.autograd.grad((twin * weights).sum(), (img, ref))
    assert torch.allclose(g_img, t_img, rtol=1e-9, atol=1e-12)
    assert torch.allclose(g_ref, t_ref, rtol=1e-9, atol=1e-12)

    # the masked scalar SSIM and the training loss differentiate through the same path
    (g_loss,) = torch.autograd.grad(losses.photometric_loss(img, ref.detach(), mask), (img,))
    twin_loss = 0.8 * (img - ref.detach()).abs()[mask].mean() + 0.2 * (
        1 - ssim_map_twin(img, ref.detach())[mask].mean()
    )
    (t_loss,) = torch.autograd.grad(twin_loss, (img,))
    assert torch.allclose(g_loss, t_loss, rtol=1e-9, atol=1e-12)


def test_ssim_of_one_input_differentiates_only_that_input():
    gen = torch.Generator().manual_seed(7)
    img = torch.rand(20, 24, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    ref = torch.rand(20, 24, 3, generator=gen, dtype=torch.float64)
    (ours,) = torch.autograd.grad(losses.ssim(img, ref), (img,))
    (twin,) = torch.autograd.grad(ssim_map_twin(img, ref).mean(), (img,))
    assert torch.allclose(ours, twin, rtol=1e-9, atol=1e-12)
    assert float(ours.abs().max()) > 0


def test_ssim_float32_training_path_agrees_with_float64():
    gen = torch.Generator().manual_seed(3)
    img = torch.rand(64, 48, 3, generator=gen, requires_grad=True)
    ref = torch.rand(64, 48, 3, generator=gen)
    loss = losses.photometric_loss(img, ref)
    loss.backward()
    img64 = img.detach().double().requires_grad_()
    twin = 0.8 * (img64 - ref.double()).abs().mean() + 0.2 * (1 - ssim_map_twin(img64, ref.double()).mean())
    twin.backward()
    assert math.isclose(float(loss.detach()), float(twin.detach()), rel_tol=1e-5)
    assert torch.allclose(img.grad.double(), img64.grad, rtol=1e-3, atol=1e-8)


def test_ssim_of_identical_images_is_one():
    img = torch.rand(30, 30, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(losses.ssim_map(img, img), torch.ones(30, 30, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(37, 52, 3), (16, 16, 1), (9, 30, 4), (40, 33, 3), (5, 7, 3), (70, 17, 2)])
def test_ssim_kernels_match_float64_twin(shape):
    """The Warp SSIM kernels (float32 images, fixed reference: training and evaluation) against the
    float64 definition: forward and the image's gradient, on sizes that are not multiples of the
    kernels' 16-pixel blocks (or smaller than one window), 1 to 4 channels."""
    from splat.train import ssim as ssim_kernels

    gen = torch.Generator().manual_seed(hash(shape) % 2**31)
    img = torch.rand(shape, generator=gen, requires_grad=True)
    ref = (0.6 * img.detach() + 0.4 * torch.rand(shape, generator=gen)).contiguous()
    weights = torch.rand(shape[:2], generator=gen, dtype=torch.float64)

    ours = ssim_kernels.ssim_map(img, ref)
    img64 = img.detach().double().requires_grad_()
    twin = ssim_map_twin(img64, ref.double())
    assert ours.dtype == torch.float32 and ours.shape == shape[:2]
    assert torch.allclose(ours.double(), twin, rtol=0, atol=3e-6), float((ours.double() - twin).abs().max())
    assert 0.2 < float(twin.mean().detach()) < 0.95
    with torch.no_grad():  # the forward without the partial derivatives gives the same map
        assert torch.equal(ssim_kernels.ssim_map(img, ref), ours.detach())

    (g_ours,) = torch.autograd.grad((ours.double() * weights).sum(), (img,))
    (g_twin,) = torch.autograd.grad((twin * weights).sum(), (img64,))
    scale = float(g_twin.abs().max())
    assert scale > 0
    assert torch.allclose(g_ours.double(), g_twin, rtol=0, atol=2e-5 * scale), float((g_ours - g_twin).abs().max())


def test_training_loss_uses_the_ssim_kernels_for_float32():
    from splat.train import ssim as ssim_kernels

    img = torch.rand(20, 24, 3, generator=torch.Generator().manual_seed(5), requires_grad=True)
    ref = torch.rand(20, 24, 3, generator=torch.Generator().manual_seed(6))
    assert losses.ssim_map(img, ref).grad_fn.name() == ssim_kernels._SSIMMap.__name__ + "Backward"
    assert losses.ssim_map(img.double(), ref.double()).grad_fn.name() != ssim_kernels._SSIMMap.__name__ + "Backward"
