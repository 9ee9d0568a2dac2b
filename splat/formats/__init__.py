"""Splat file formats: read and write Gaussians as INRIA PLY, antimatter15 `.splat`, Niantic SPZ
and SuperSplat / PlayCanvas compressed PLY.

    splats = read_splats("scene.spz")               # format from the file's magic / extension
    write_splats("scene.compressed.ply", splats)    # format from the name, or format="spz", ...

Splats are the pre-activation tensors `GaussianScene` holds: means (N, 3), log-scales (N, 3),
wxyz quaternions (N, 4), opacity logits (N,), sh0 (N, 1, 3), shN (N, K-1, 3), in the PLY's frame.
What each format keeps: see the module docstrings and the docs' Formats page (docs/formats.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import InputError
from ..io_utils import atomic_path
from .common import FormatError, fail, read_bytes, to_numpy_splats, to_tensors

FORMATS = ("ply", "splat", "spz", "compressed-ply")
SUFFIXES = {"ply": ".ply", "splat": ".splat", "spz": ".spz", "compressed-ply": ".compressed.ply"}

__all__ = ["FORMATS", "SUFFIXES", "FormatError", "detect_format", "format_for_name", "read_splats", "write_splats"]


def format_for_name(path: str | os.PathLike) -> str | None:
    """The format a file name asks for when writing (None when the suffix names none)."""
    name = Path(path).name.lower()
    if name.endswith(".compressed.ply"):
        return "compressed-ply"
    return {".ply": "ply", ".splat": "splat", ".spz": "spz"}.get(Path(name).suffix)


def detect_format(path: str | os.PathLike) -> str:
    """Which of FORMATS a file is, from its first bytes (PLY header, gzip / NGSP magic) or, for
    `.splat` (which has no header), its extension. Raises FormatError naming the file."""
    from . import compressed_ply, ply_header, spz

    path = Path(path)
    head = read_bytes(path, 4)
    if ply_header.is_ply(path):
        return "compressed-ply" if compressed_ply.is_compressed(ply_header.read_header(path)) else "ply"
    if spz.is_spz(head):
        return "spz"
    if path.suffix.lower() == ".splat":
        return "splat"
    raise fail(path, "not a PLY, SPZ or .splat file")


def read_splats(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Gaussians from any of FORMATS (float32 CPU tensors, pre-activation; see module docstring).
    4D PLY files keep their time axis (means and scales (N, 4), quats_right)."""
    from . import antimatter, compressed_ply, ply_header, spz

    path = Path(path)
    fmt = detect_format(path)
    if fmt == "ply":
        from splat.ply import load_ply

        ply_header.check_body_size(path, ply_header.read_header(path))
        return load_ply(path)
    reader = {"splat": antimatter.read, "spz": spz.read, "compressed-ply": compressed_ply.read}[fmt]
    return to_tensors(path, reader(path))


def write_splats(path: str | os.PathLike, splats: dict, format: str | None = None, **options) -> Path:
    """Write 3D Gaussians (4D ones: only as "ply") atomically in `format` (default: from the name).
    options: SPZ `version` (3, gzip, the default; or 4, ZSTD), `sh1_bits`, `sh_rest_bits`."""
    from . import antimatter, compressed_ply, spz

    path = Path(path)
    fmt = format or format_for_name(path)
    if fmt not in FORMATS:
        raise InputError(
            f"format: choose from {', '.join(FORMATS)} (or name the file *.ply, *.splat, *.spz, "
            f"*.compressed.ply), got {fmt!r} for {path}"
        )
    if fmt == "ply":
        from splat.ply import save_ply

        save_ply(path, splats)
        return path
    arrays = to_numpy_splats(splats)
    if len(arrays["means"]) == 0:
        raise InputError("no Gaussians to export")
    encoders = {"splat": antimatter.encode, "spz": spz.encode, "compressed-ply": compressed_ply.encode}
    data = encoders[fmt](arrays, **options)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
