"""`splat export`: a run folder, checkpoint or splat file written in any of the formats, with
dynamic (4D) scenes exported as the 3D scene at one time."""

from __future__ import annotations

from pathlib import Path

from splat.errors import InputError

from . import FORMATS, SUFFIXES, format_for_name, write_splats


class ExportError(InputError):
    """An export that cannot be done as asked (the message names the source)."""


def default_output(source: Path, fmt: str, time: float | None) -> Path:
    """RUN/point_cloud.<ext> for a run folder, NAME.<ext> next to a file; `_t<time>` for slices."""
    tag = "" if time is None else f"_t{time:g}"
    if source.is_dir():
        return source / f"point_cloud{tag}{SUFFIXES[fmt]}"
    stem = source.name[: -len(".compressed.ply")] if source.name.lower().endswith(".compressed.ply") else source.stem
    return source.with_name(f"{stem}{tag}{SUFFIXES[fmt]}")


def export_scene(source, out=None, format: str | None = None, time: float | None = None, **options) -> tuple[Path, int]:
    """Write the Gaussians of `source` (run folder, checkpoint or splat file), in the dataset's
    original frame, as `format` (default: from `out`'s name, else "ply"). Dynamic scenes: only
    "ply" keeps the time axis of 4D Gaussians, none the shared motions of moving ones; `time` in
    [0, 1] exports the 3D scene shown at that time.
    Returns (output path, number of Gaussians written)."""
    from splat.scene import GaussianScene, load

    source = Path(source)
    fmt = format or (format_for_name(out) if out else None) or "ply"
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: choose from {', '.join(FORMATS)}")
    scene = load(source, with_cameras=False)
    if not isinstance(scene, GaussianScene):
        raise ExportError(f"{source}: a neural-field run has no Gaussians to export (render it with `splat render`)")
    if time is not None:
        if not scene.is_dynamic:
            raise ExportError(f"--time: {source} is a static scene (3D Gaussians); leave --time out")
        if not 0.0 <= time <= 1.0:
            raise ExportError(f"--time {time:g}: expected a time in [0, 1]")
        scene = scene.at_time(time)
        if scene.num_gaussians == 0:
            raise ExportError(f"{source}: no Gaussian is visible at time {time:g}")
    elif scene.bases is not None:
        raise ExportError(
            f"{source} holds Gaussians moved by shared motions, which no splat format keeps; "
            "pass --time T to export the 3D scene at time T in [0, 1]"
        )
    elif scene.is_dynamic and fmt != "ply":
        raise ExportError(
            f"{source} is a dynamic (4D) scene: only --format ply keeps its time axis; "
            "pass --time T to export the 3D scene at time T in [0, 1]"
        )
    out = Path(out) if out else default_output(source, fmt, time)
    write_splats(out, scene.splats, fmt, **options)
    return out, scene.num_gaussians
