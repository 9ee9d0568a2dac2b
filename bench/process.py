#!/usr/bin/env python
"""`splat process` measured: photos and a video posed from scratch, against known cameras.

    python bench/process.py                 # beer photos (two matchers), beer as a video, Strecha entry-P10
    python bench/process.py --cases strecha --strecha DIR...   # also other Strecha scenes (openMVG's copies)
    python bench/process.py --cases beer --train 600           # then splat train on both beer poses

Cases:
- beer: beer's 71 phone JPEGs alone (its sparse/ ignored), as `splat process` poses them; errors
  against beer's own COLMAP model, (a) after the camera path check, which undoes that model's
  fold with one fitted rigid motion, and (b) against each side of the fold alone (each side is one
  consistent reconstruction; no repair enters), after a similarity alignment.
- beer-exhaustive / beer-retrieval: the same photos matched as if their names were not in capture
  order (every pair; or sequential + bag-of-words neighbours).
- beer-video: the same 71 frames as a 10 fps H.264 video (portrait), through the video path.
- beer-mappers: incremental against global mapping on the beer case's matches.
- moving-video: the speckled moving scene filmed by one walking camera (most objects move), against
  the cameras that filmed it.
- outlier-filter: the mapper on the beer, entry-P10 and moving-video matches with and without
  dropping the points that disagree with the cameras (`sfm.drop_outlier_points`), same run.
- strecha: entry-P10's 10 photos (and --strecha scenes) against the surveyed cameras; centre
  error as a fraction of the mean camera-to-scene distance.
- --train S: `splat train --max-seconds S` on our beer poses and on beer's model, side by side.
Writes bench/results/process-cpu.json, merging with the cases it already holds.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import RESULTS, evaluations, header, run_records, shared_data, write_result

HERE = Path(__file__).resolve().parent
WORK = HERE.parent / "outputs" / "bench" / "process"


def colmap_poses(root: Path, repair: bool = True) -> tuple[dict, tuple | None]:
    """name -> camera-to-world of a COLMAP dataset (after the camera path check), and its points."""
    from splat.datasets.capture_path import check_capture_path
    from splat.datasets.colmap import load_colmap

    loaded = load_colmap(root, root / "images")
    frames, points, _ = check_capture_path(loaded.frames, loaded.points, loaded.observers, repair=repair)
    return {f.name: f.camera.c2w for f in frames}, points


def strecha_poses(folder: Path) -> dict:
    """name -> camera-to-world of Strecha's `NAME.camera` files (R camera-to-world, then C)."""
    poses = {}
    for f in sorted(folder.glob("*.camera")):
        v = np.loadtxt(f, max_rows=8)
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = v[4:7], v[7]
        poses[f.name[: -len(".camera")]] = c2w
    return poses


def process(input_path: Path, out: Path, **kwargs) -> dict:
    from splat.datasets.capture import process_capture

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = process_capture(input_path, out, quiet=True, **kwargs)
    return {
        "images": result.images,
        "registered": len(result.registered),
        "unregistered": result.unregistered,
        "matcher": result.matcher,
        "stage_seconds": {k: round(v, 1) for k, v in result.seconds.items()},
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }


def beer_case(label: str = "beer", **policy) -> dict:
    """beer's photos through splat process; `policy` overrides sfm's module settings for this run
    (WALK_SHARE=2: match as if the names were not in capture order)."""
    from splat.datasets.capture import sfm

    beer = shared_data("beer")
    saved = {k: getattr(sfm, k) for k in policy}
    for k, v in policy.items():
        setattr(sfm, k, v)
    try:
        out = WORK / label
        row = process(beer / "images", out)
    finally:
        for k, v in saved.items():
            setattr(sfm, k, v)
    ours, _ = colmap_poses(out)
    return {"case": label, **row, **beer_errors(ours, beer)}


def beer_errors(ours: dict, beer: Path, rename=None) -> dict:
    """Errors against beer's model after its repair (one rigid motion, fitted, undoes its fold),
    and against each side of the fold alone (each side is one consistent COLMAP reconstruction:
    no repair enters, each gets its own similarity alignment)."""
    from splat.datasets.capture.compare import pose_errors
    from splat.datasets.capture_path import check_path

    rename = rename or (lambda name: name)
    repaired, _ = colmap_poses(beer)
    raw, _ = colmap_poses(beer, repair=False)
    names = sorted(raw)
    folded = check_path(np.stack([raw[n] for n in names])).folded
    sides = {}
    for label, side in (("unmoved", ~folded), ("folded", folded)):
        subset = {rename(n): raw[n] for n, f in zip(names, side) if f}
        sides[label] = pose_errors({k: v for k, v in ours.items() if k in subset}, subset)
    return {
        "errors_vs_beer_model": pose_errors(ours, {rename(n): p for n, p in repaired.items()}),
        "errors_vs_each_side_of_beer_fold": sides,
    }


def mapper_case() -> dict:
    """Incremental against global mapping (GLOMAP in pycolmap) on the beer case's matches, same run."""
    import pycolmap

    from splat.datasets.capture import sfm

    beer = shared_data("beer")
    matches = WORK / "beer" / ".process" / "matches.db"
    if not matches.exists():
        beer_case()
    rows = {}
    for mapper in ("incremental", "global"):
        out = WORK / f"beer-{mapper}"
        shutil.rmtree(out, ignore_errors=True)
        (out / "models").mkdir(parents=True)
        t0 = time.perf_counter()
        if mapper == "incremental":
            model = sfm.map_images(matches, beer / "images", out / "models", 71)
        else:
            options = pycolmap.GlobalPipelineOptions()
            options.num_threads = sfm._threads()
            models = pycolmap.global_mapping(matches, beer / "images", out / "models", options=options)
            model = max(models.values(), key=lambda m: m.num_reg_images())
            sfm.refine(model)
        seconds = time.perf_counter() - t0
        (out / "sparse" / "0").mkdir(parents=True)
        model.write(out / "sparse" / "0")
        (out / "images").symlink_to(beer / "images")
        ours, _ = colmap_poses(out)
        rows[mapper] = {"seconds": round(seconds, 1), "registered": model.num_reg_images(), **beer_errors(ours, beer)}
    return {"case": "beer-mappers", "mappers": rows}


def beer_video_case() -> dict:
    import imageio.v3 as iio
    import imageio_ffmpeg

    beer = shared_data("beer")
    names = sorted(p.name for p in (beer / "images").glob("*.jpg"))
    video = WORK / "beer.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    first = iio.imread(beer / "images" / names[0])
    writer = imageio_ffmpeg.write_frames(str(video), (first.shape[1], first.shape[0]), fps=10, quality=9)
    writer.send(None)
    for name in names:
        writer.send(np.ascontiguousarray(iio.imread(beer / "images" / name)[..., :3]))
    writer.close()
    out = WORK / "beer-video"
    row = process(video, out)
    ours, _ = colmap_poses(out)
    frame_name = {n: f"frame_{k:06d}.jpg" for k, n in enumerate(names)}
    return {"case": "beer-video", **row, **beer_errors(ours, beer, rename=frame_name.get)}


def strecha_case(data: Path | None = None) -> dict:
    """A Strecha scene (images/, gt_dense_cameras/): entry-P10 from the shared datasets, or another
    from openMVG's SfM_quality_evaluation repository (--strecha DIR)."""
    data = data or shared_data("strecha_entry_p10")
    name = "entry-P10" if data.name == "strecha_entry_p10" else data.name
    out = WORK / f"strecha-{name}"
    row = process(data / "images", out)
    ours, points = colmap_poses(out)
    return {"case": f"strecha-{name}", **row, "errors_vs_survey": strecha_errors(ours, points, data)}


def strecha_errors(ours: dict, points, data: Path) -> dict:
    """Pose errors against the survey; centre errors as a fraction of the camera-to-scene distance."""
    from splat.datasets.capture.compare import pose_errors, similarity

    truth = strecha_poses(data / "gt_dense_cameras")
    names = sorted(set(ours) & set(truth))
    s, R, t = similarity(np.stack([ours[n][:3, 3] for n in names]), np.stack([truth[n][:3, 3] for n in names]))
    scene = np.median(s * points[0] @ R.T + t, axis=0)  # the sparse points' median, in surveyed metres
    distance = float(np.mean([np.linalg.norm(truth[n][:3, 3] - scene) for n in names]))
    return pose_errors(ours, truth, length=distance)


MOVING_FRAMES = 96


def walk_truth(n_frames: int) -> dict:
    """name -> camera-to-world of the cameras that filmed `film_dynamic_video(n_frames=...)`, under
    the names its posed frames get (`frame_NNNNNN.jpg`: every frame is kept up to --num-frames)."""
    from splat.scenes import walk_views

    return {f"frame_{k:06d}.jpg": np.linalg.inv(v) for k, v in enumerate(walk_views(n_frames))}


def moving_video_case() -> dict:
    """The speckled moving scene filmed by one walking camera (`splat.scenes.film_dynamic_video`),
    a video in which most objects move: through the video path, against the cameras that filmed it."""
    from splat.datasets.capture.compare import pose_errors
    from splat.scenes import film_dynamic_video

    video = WORK / "moving.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    film_dynamic_video(video, n_frames=MOVING_FRAMES)
    out = WORK / "moving-video"
    row = process(video, out)
    ours, _ = colmap_poses(out)
    return {"case": "moving-video", **row, "errors_vs_truth": pose_errors(ours, walk_truth(MOVING_FRAMES))}


def outliers_case() -> dict:
    """The mapper on the same matches with and without `sfm.drop_outlier_points`, same run: beer
    (against its model), Strecha entry-P10 (against the survey) and the moving video (against the
    cameras that filmed it). Runs the cases whose matches are missing first."""
    from splat.datasets.capture import sfm
    from splat.datasets.capture.compare import pose_errors

    rows = {}
    for label, make in (("beer", beer_case), ("strecha-entry-P10", strecha_case), ("moving-video", moving_video_case)):
        source = WORK / label
        if not (source / ".process" / "matches.db").exists():
            make()
        n = len(list((source / "images").iterdir()))
        rows[label] = {}
        for setting, drop in (("mapper_only", False), ("with_outlier_filter", True)):
            out = WORK / f"outliers-{label}-{'on' if drop else 'off'}"
            shutil.rmtree(out, ignore_errors=True)
            (out / "models").mkdir(parents=True)
            t0 = time.perf_counter()
            model = sfm.map_images(
                source / ".process" / "matches.db", source / "images", out / "models", n, drop_outliers=drop
            )
            seconds = time.perf_counter() - t0
            (out / "sparse" / "0").mkdir(parents=True)
            model.write(out / "sparse" / "0")
            (out / "images").symlink_to(source / "images")
            ours, points = colmap_poses(out)
            if label == "beer":
                errors = beer_errors(ours, shared_data("beer"))
            elif label == "moving-video":
                errors = {"errors_vs_truth": pose_errors(ours, walk_truth(MOVING_FRAMES))}
            else:
                errors = {"errors_vs_survey": strecha_errors(ours, points, shared_data("strecha_entry_p10"))}
            rows[label][setting] = {"seconds": round(seconds, 1), "points": model.num_points3D(), **errors}
    return {"case": "outlier-filter", "scenes": rows}


def train_case(seconds: float) -> list[dict]:
    """splat train on our beer poses and on beer's model, same budget, run side by side (at the same
    time, so that a machine shared with other work slows both alike)."""

    beer = shared_data("beer")
    runs = {}
    for label, data in (("beer model", beer), ("splat process", WORK / "beer")):
        run = WORK / f"train-{label.replace(' ', '-')}"
        shutil.rmtree(run, ignore_errors=True)
        command = [str(Path(sys.executable).with_name("splat")), "train", str(data), "--out", str(run)]
        command += ["--max-seconds", str(seconds)]
        runs[label] = (run, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    t0 = time.perf_counter()
    rows = []
    for label, (run, proc) in runs.items():
        out, err = proc.communicate()
        if proc.returncode != 0:
            print(out[-2000:], err[-2000:], file=sys.stderr)
            raise SystemExit(1)
        final = evaluations(run_records(run))[-1]
        rows.append(
            {
                "poses": label,
                "wall_seconds": round(time.perf_counter() - t0, 1),
                "step": final["step"],
                "num_gaussians": final.get("num_gaussians"),
                **{k: final["eval"][k] for k in ("psnr", "ssim", "lpips", "num_images", "split")},
            }
        )
        print(rows[-1], flush=True)
    return rows


def merged(path: Path, result: dict) -> dict:
    """`result` with the file's cases that this run did not measure (each keeps its own date), and
    its training comparison when this run made none."""
    import json

    if not path.exists():
        return result
    previous = json.loads(path.read_text())
    measured = {row["case"] for row in result["cases"]}
    kept = [{"date": previous.get("date"), **row} for row in previous.get("cases", []) if row["case"] not in measured]
    result["cases"] = [{"date": result.get("date"), **row} for row in result["cases"]] + kept
    for key in ("train_seconds", "train"):
        if key not in result and key in previous:
            result[key] = previous[key]
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--cases", default="beer,beer-exhaustive,beer-retrieval,beer-video,strecha,moving-video,outlier-filter"
    )
    p.add_argument("--strecha", nargs="*", default=[], help="more Strecha scene folders (openMVG's copies)")
    p.add_argument("--train", type=float, help="also train on both beer poses for this many seconds each")
    args = p.parse_args(argv)
    cases = {
        "beer": beer_case,
        "beer-exhaustive": lambda: beer_case("beer-exhaustive", WALK_SHARE=2.0),
        "beer-retrieval": lambda: beer_case("beer-sequential-retrieval", WALK_SHARE=2.0, EXHAUSTIVE_MAX=0),
        "beer-video": beer_video_case,
        "beer-mappers": mapper_case,
        "strecha": strecha_case,
        "moving-video": moving_video_case,
        "outlier-filter": outliers_case,
    }
    rows = []
    jobs = [cases[name] for name in args.cases.split(",") if name] + [
        lambda d=Path(d): strecha_case(d) for d in args.strecha
    ]
    for job in jobs:
        rows.append(job())
        print(rows[-1], flush=True)
    path = RESULTS / "process-cpu.json"
    result = {**header("process", "cpu"), "cases": rows}
    if args.train:
        result["train_seconds"] = args.train
        result["train"] = train_case(args.train)
    out = write_result(path, merged(path, result))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
