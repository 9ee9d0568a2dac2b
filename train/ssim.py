"""SSIM of a rendered image against a fixed reference as a Warp kernel pair (forward, hand-written
backward): the training loss's structural term and the evaluation metric, in float32.

The 11x11 Gaussian window (sigma 1.5, zero padding, as INRIA 3DGS) is separable. One thread
takes a block of 16 x 16 output pixels of one channel: it blurs the block's 26 input rows along x
into local memory, then along y. Images are planar, (C, H, W/16) arrays of 16-float vectors
(W padded with zeros to a multiple of 16), so every global access moves 16 contiguous floats and
every inner loop runs over 16 lanes of local memory, which a CPU vectorises (the lane loops are
`while` loops: Warp's `range` loops do not vectorise). Torch's grouped convolutions and a dozen
element-wise passes took ~35 ms forward + backward at 400x400x3 on a 2-core CPU.

Forward: per pixel the window means of x, y, x^2, y^2 and xy, SSIM, and the partial
derivatives of SSIM in the means of x, x^2 and xy (y is the fixed reference).
Backward: the blur is its own adjoint (symmetric window, zero padding) and its x and y passes
commute, so d loss / d x = blur(g dS/dmu_x) + 2 x blur(g dS/dE[x^2]) + y blur(g dS/dE[xy]),
the same two passes over three maps. `losses.ssim_map` uses this for float32 images whose
reference needs no gradient; the general torch path (float64, gradients for both) stays there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import warp as wp

from splat.renderer import warp_runtime

wp.set_module_options(warp_runtime.vector_kernel_options(fuse_multiply_add=True))

RADIUS = 5
TAPS = 2 * RADIUS + 1  # the window's width, 11
SIGMA = 1.5
C1 = 0.01**2
C2 = 0.03**2
LANES = 16  # pixels per vector along x
BLOCK_ROWS = 16  # output rows per thread
_g = [math.exp(-(k**2) / (2 * SIGMA**2)) for k in range(-RADIUS, RADIUS + 1)]
WINDOW = tuple(v / sum(_g) for v in _g)

vec11 = wp.types.vector(length=TAPS, dtype=wp.float32)
vec5 = wp.types.vector(length=5, dtype=wp.float32)
_W = wp.constant(vec11(*WINDOW))
_C1 = wp.constant(C1)
_C2 = wp.constant(C2)
lanes_t = wp.types.vector(length=LANES, dtype=wp.float32)
window_t = wp.types.vector(length=3 * LANES, dtype=wp.float32)  # a chunk and its two neighbours
IN_ROWS = BLOCK_ROWS + 2 * RADIUS
stats5_t = wp.types.matrix(shape=(IN_ROWS * 5, LANES), dtype=wp.float32)  # [row * 5 + statistic, lane]
stats3_t = wp.types.matrix(shape=(IN_ROWS * 3, LANES), dtype=wp.float32)


@wp.func
def load_window(img: wp.array3d(dtype=lanes_t), c: int, y: int, k: int) -> window_t:
    """Pixels 16 (k - 1) .. 16 (k + 2) - 1 of row y, zero outside the image."""
    out = window_t()
    if y >= 0 and y < img.shape[1]:
        for part in range(3):
            kk = k + part - 1
            if kk >= 0 and kk < img.shape[2]:
                v = img[c, y, kk]
                for lane in range(LANES):
                    out[part * LANES + lane] = v[lane]
    return out


@wp.func
def block_of(tid: int, height: int, chunks: int) -> wp.vec3i:
    """Thread -> (channel, first output row, chunk along x)."""
    blocks_y = (height + BLOCK_ROWS - 1) // BLOCK_ROWS
    k = tid % chunks
    rest = tid // chunks
    return wp.vec3i(rest // blocks_y, (rest % blocks_y) * BLOCK_ROWS, k)


@wp.kernel
def ssim_fwd(
    offset: int,
    lanes: int,  # = LANES, passed at run time so that the lane loops are vectorised, not unrolled
    img: wp.array3d(dtype=lanes_t),  # (C, H, W / 16)
    ref: wp.array3d(dtype=lanes_t),
    with_partials: int,  # 0: SSIM only (no gradient wanted)
    ssim: wp.array3d(dtype=lanes_t),  # out
    partials: wp.array4d(dtype=lanes_t),  # (3, C, H, W / 16) out: dS / d(mu_x, E[x^2], E[xy])
):
    b = block_of(wp.tid() + offset, img.shape[1], img.shape[2])
    c = b[0]
    y0 = b[1]
    k = b[2]
    rows = stats5_t()
    for r in range(IN_ROWS):
        a = load_window(img, c, y0 + r - RADIUS, k)
        e = load_window(ref, c, y0 + r - RADIUS, k)
        lane = int(0)
        while lane < lanes:
            m = vec5()
            for t in range(TAPS):  # unrolled
                u = a[LANES - RADIUS + lane + t]
                v = e[LANES - RADIUS + lane + t]
                m[0] = m[0] + _W[t] * u
                m[1] = m[1] + _W[t] * v
                m[2] = m[2] + _W[t] * (u * u)
                m[3] = m[3] + _W[t] * (v * v)
                m[4] = m[4] + _W[t] * (u * v)
            for s in range(5):
                rows[r * 5 + s, lane] = m[s]
            lane += 1
    o = int(0)
    while o < BLOCK_ROWS and y0 + o < img.shape[1]:
        y = y0 + o
        s_out = lanes_t()
        d_mu = lanes_t()
        d_xx = lanes_t()
        d_xy = lanes_t()
        lane = int(0)
        while lane < lanes:
            m = vec5()
            for t in range(TAPS):
                for s in range(5):
                    m[s] = m[s] + _W[t] * rows[(o + t) * 5 + s, lane]
            mx = m[0]
            my = m[1]
            a1 = 2.0 * mx * my + _C1
            a2 = 2.0 * (m[4] - mx * my) + _C2
            b1 = mx * mx + my * my + _C1
            b2 = (m[2] - mx * mx) + (m[3] - my * my) + _C2
            inv = 1.0 / (b1 * b2)
            sv = a1 * a2 * inv
            s_out[lane] = sv
            d_mu[lane] = 2.0 * my * (a2 - a1) * inv - 2.0 * mx * sv * (1.0 / b1 - 1.0 / b2)
            d_xx[lane] = -sv / b2
            d_xy[lane] = 2.0 * a1 * inv
            lane += 1
        ssim[c, y, k] = s_out
        if with_partials != 0:  # three maps of writes: a large part of this kernel's time
            partials[0, c, y, k] = d_mu
            partials[1, c, y, k] = d_xx
            partials[2, c, y, k] = d_xy
        o += 1


@wp.kernel
def ssim_bwd(
    offset: int,
    lanes: int,  # = LANES
    v_map: wp.array3d(dtype=lanes_t),  # (1, H, W / 16): d loss / d SSIM of each channel (zero past W)
    partials: wp.array4d(dtype=lanes_t),
    img: wp.array3d(dtype=lanes_t),
    ref: wp.array3d(dtype=lanes_t),
    v_img: wp.array3d(dtype=lanes_t),  # out
):
    b = block_of(wp.tid() + offset, img.shape[1], img.shape[2])
    c = b[0]
    y0 = b[1]
    k = b[2]
    rows = stats3_t()
    for r in range(IN_ROWS):
        y = y0 + r - RADIUS
        g = load_window(v_map, 0, y, k)
        for s in range(3):
            p = load_window(partials[s], c, y, k)
            lane = int(0)
            while lane < lanes:
                acc = float(0.0)
                for t in range(TAPS):  # unrolled
                    i = LANES - RADIUS + lane + t
                    acc += _W[t] * (p[i] * g[i])
                rows[r * 3 + s, lane] = acc
                lane += 1
    o = int(0)
    while o < BLOCK_ROWS and y0 + o < img.shape[1]:
        y = y0 + o
        x = img[c, y, k]
        e = ref[c, y, k]
        out = lanes_t()
        lane = int(0)
        while lane < lanes:
            m0 = float(0.0)
            m1 = float(0.0)
            m2 = float(0.0)
            for t in range(TAPS):
                m0 += _W[t] * rows[(o + t) * 3 + 0, lane]
                m1 += _W[t] * rows[(o + t) * 3 + 1, lane]
                m2 += _W[t] * rows[(o + t) * 3 + 2, lane]
            out[lane] = m0 + 2.0 * x[lane] * m1 + e[lane] * m2
            lane += 1
        v_img[c, y, k] = out
        o += 1


def _planar(t: torch.Tensor, width16: int) -> torch.Tensor:
    """(H, W, C) -> (C, H, W16) float32, zero columns past W."""
    p = t.detach().permute(2, 0, 1).float()
    return F.pad(p, (0, width16 - p.shape[-1])).contiguous()


def _lanes(t: torch.Tensor, dims: int):
    """A (..., W16) float tensor as a Warp array of 16-float vectors with `dims` dimensions."""
    return warp_runtime.array(t.view(*t.shape[:-1], t.shape[-1] // LANES, LANES), lanes_t, dims)


def _threads(C: int, H: int, chunks: int) -> int:
    return C * ((H + BLOCK_ROWS - 1) // BLOCK_ROWS) * chunks


class _SSIMMap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        H, W, C = img.shape
        W16 = -(-W // LANES) * LANES
        dev = img.device
        x, y = _planar(img, W16), _planar(ref, W16)
        ssim = torch.empty((C, H, W16), dtype=torch.float32, device=dev)
        with_partials = ctx.needs_input_grad[0]
        partials = torch.empty((3, C, H, W16) if with_partials else (3, 1, 1, LANES), dtype=torch.float32, device=dev)
        warp_runtime.launch(
            ssim_fwd,
            _threads(C, H, W16 // LANES),
            [LANES, _lanes(x, 3), _lanes(y, 3), int(with_partials)],
            [_lanes(ssim, 3), _lanes(partials, 4)],
            device=dev,
            grain=4,
        )
        ctx.save_for_backward(x, y, partials)
        ctx.width = W
        return ssim[..., :W].mean(dim=0)

    @staticmethod
    def backward(ctx, v_map: torch.Tensor):
        x, y, partials = ctx.saved_tensors
        C, H, W16 = x.shape
        W = ctx.width
        dev = x.device
        v = warp_runtime.grad_or_zeros(v_map, (H, W), dev) / C  # the map is the mean over channels
        v = F.pad(v, (0, W16 - W)).contiguous()[None]
        v_img = torch.empty((C, H, W16), dtype=torch.float32, device=dev)
        warp_runtime.launch(
            ssim_bwd,
            _threads(C, H, W16 // LANES),
            [LANES, _lanes(v, 3), _lanes(partials, 4), _lanes(x, 3), _lanes(y, 3)],
            [_lanes(v_img, 3)],
            device=dev,
            grain=4,
        )
        return v_img[..., :W].permute(1, 2, 0), None


def ssim_map(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (H, W) of float32 (H, W, C) images, mean over channels; differentiable
    w.r.t. `img` only."""
    return _SSIMMap.apply(img, ref)
