"""The rasterizer's numerical rules, shared by the Warp kernels, their pure-torch twins
(torch_impl.py), the neural-field volume renderer and the splat file formats.

Plain Python floats: a Warp kernel reads a module-level float as a compile-time constant (what
`wp.constant` returns), and this module imports neither Warp nor torch.
"""

SH_C0 = 0.28209479177387814  # degree-0 SH basis 1 / (2 sqrt(pi)): colour = 0.5 + SH_C0 * f_dc
ALPHA_THRESHOLD = 1.0 / 255.0  # splats fainter than this at a pixel are skipped
ALPHA_MAX = 0.99  # alpha clamp (INRIA 3DGS; gsplat uses 0.999)
TRANSMITTANCE_MIN = 1e-4  # a pixel (or ray) stops before its transmittance would reach this
MAX_EXTENT_SIGMAS = 3.33  # bounding-box half-size cap, in standard deviations
