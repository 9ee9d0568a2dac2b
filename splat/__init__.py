"""splat: neural rendering engine (Gaussian splatting and neural fields) built on NVIDIA Warp.

    import splat
    colors, alphas, meta = splat.rasterize(means, quats, scales, opacities, colors, viewmats, Ks, W, H)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("splat")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


def __getattr__(name):
    # Lazy: `import splat` (and `splat --help`) stays fast; Warp and torch load on first use.
    if name == "rasterize":
        from splat.renderer import rasterize

        return rasterize
    raise AttributeError(f"module 'splat' has no attribute {name!r}")


__all__ = ["__version__", "rasterize"]
