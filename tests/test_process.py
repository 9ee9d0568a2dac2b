"""`splat process` and `splat train PHOTOS`: photos and videos posed by structure from motion.

The speckled still life is photographed from known cameras with the render API; the poses that
structure from motion recovers must match them after a similarity alignment."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import splat
from splat.datasets import load_dataset
from splat.datasets.capture import default_output, find_capture, is_capture, process_capture, sfm
from splat.datasets.capture.compare import pose_errors, similarity
from splat.datasets.capture.video import sharpness
from splat.datasets.colmap import load_colmap
from splat.scenes import film_dynamic_video, look_at, still_life

pycolmap = pytest.importorskip("pycolmap", reason="pycolmap (pip install 'splat[capture]') poses photos")

WIDTH, HEIGHT, VIEWS = 320, 240, 24
# at 320x240 the renders are soft: measured 0.46 deg / 0.4% median, 0.63 deg / 0.8% at worst
MAX_ROTATION_MEDIAN, MAX_ROTATION, MAX_CENTRE_MEDIAN, MAX_CENTRE = 1.5, 3.0, 0.02, 0.05


def orbit_views(n: int) -> np.ndarray:
    """World-to-camera matrices (n, 4, 4) on three quarters of a circle round the still life,
    rising and falling (a walk, not a turntable)."""
    views = []
    for k in range(n):
        a = 1.5 * math.pi * k / n
        eye = (3.0 * math.cos(a), 3.0 * math.sin(a), 1.5 + 0.3 * math.sin(3 * a))
        views.append(look_at(eye, (0.0, 0.0, 0.25), dtype=torch.float64).numpy())
    return np.stack(views)


def render(views: np.ndarray) -> np.ndarray:
    n = len(views)
    f = 0.9 * WIDTH
    K = torch.tensor([[f, 0, WIDTH / 2], [0, f, HEIGHT / 2], [0, 0, 1.0]]).expand(n, 3, 3).contiguous()
    rgb, _, _ = splat.rasterize(
        **still_life(speckled=True),
        viewmats=torch.from_numpy(views).float(),
        Ks=K,
        width=WIDTH,
        height=HEIGHT,
        backgrounds=torch.full((n, 3), 0.5),
    )
    return (rgb.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """(folder of PNG photos, their world-to-camera matrices)."""
    folder = tmp_path_factory.mktemp("capture") / "photos"
    folder.mkdir()
    views = orbit_views(VIEWS)
    for k, img in enumerate(render(views)):
        iio.imwrite(folder / f"view_{k:03d}.png", img)
    return folder, views


@pytest.fixture(scope="module")
def posed(photos, tmp_path_factory):
    folder, _ = photos
    out = tmp_path_factory.mktemp("posed") / "data"
    return process_capture(folder, out, quiet=True), out


def recovered(out: Path) -> dict:
    frames = load_colmap(out, out / "images").frames
    return {f.name: f.camera.c2w for f in frames}


def assert_poses_match(estimate: dict, reference: dict) -> None:
    e = pose_errors(estimate, reference)
    assert e["cameras"] == len(reference)
    assert e["rotation_deg_median"] < MAX_ROTATION_MEDIAN and e["rotation_deg_max"] < MAX_ROTATION, e
    assert e["centre_median"] < MAX_CENTRE_MEDIAN and e["centre_max"] < MAX_CENTRE, e


def test_photos_are_posed_as_they_were_taken(photos, posed):
    folder, views = photos
    result, out = posed
    assert result.images == VIEWS and not result.unregistered
    assert result.summary() == f"registered {VIEWS} of {VIEWS} images"
    reference = {f"view_{k:03d}.png": np.linalg.inv(v) for k, v in enumerate(views)}
    assert_poses_match(recovered(out), reference)
    # a COLMAP dataset: names kept, one shared camera, images_2/ at half size, loadable as any other
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(reference)
    assert (out / "images" / "view_000.png").read_bytes() == (folder / "view_000.png").read_bytes()
    assert iio.imread(out / "images_2" / "view_000.png").shape[:2] == (HEIGHT // 2, WIDTH // 2)
    assert len(pycolmap.Reconstruction(out / "sparse" / "0").cameras) == 1
    data = load_dataset(out)
    assert data.format == "colmap" and len(data.frames) == VIEWS and data.points is not None


def test_pose_errors_see_a_wrong_pose(photos, posed):
    """The comparison itself: one camera turned by 5 degrees is seen."""
    _, views = photos
    reference = {f"view_{k:03d}.png": np.linalg.inv(v) for k, v in enumerate(views)}
    bad = dict(reference)
    turn = np.eye(4)
    turn[:3, :3] = [[math.cos(0.0873), -math.sin(0.0873), 0], [math.sin(0.0873), math.cos(0.0873), 0], [0, 0, 1]]
    bad["view_005.png"] = bad["view_005.png"] @ turn
    assert pose_errors(bad, reference)["rotation_deg_max"] == pytest.approx(5.0, abs=0.01)
    s, R, t = similarity(np.random.default_rng(0).normal(size=(10, 3)), np.random.default_rng(0).normal(size=(10, 3)))
    assert s == pytest.approx(1.0) and np.allclose(R, np.eye(3)) and np.allclose(t, 0)


def write_video(path: Path, frames: np.ndarray, fps: int = 10, display_rotation: int | None = None) -> None:
    import imageio_ffmpeg

    raw = path.with_suffix(".raw.mp4") if display_rotation else path
    writer = imageio_ffmpeg.write_frames(str(raw), (frames.shape[2], frames.shape[1]), fps=fps, quality=10)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    if display_rotation:
        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        cmd = [ffmpeg, "-y", "-loglevel", "error", "-display_rotation", str(display_rotation), "-i", str(raw)]
        subprocess.run([*cmd, "-c", "copy", str(path)], check=True)
        raw.unlink()


def test_phone_video_stored_sideways_is_posed_upright(photos, tmp_path):
    """A video stored sideways with a rotation in its metadata (as phones record portrait) comes out
    upright, named by frame number, and posed like the photos."""
    folder, views = photos
    frames = np.stack([iio.imread(folder / f"view_{k:03d}.png") for k in range(VIEWS)])
    video = tmp_path / "walk.mp4"
    write_video(video, np.rot90(frames, k=-1, axes=(1, 2)), display_rotation=90)  # stored 240x320
    assert is_capture(video) and find_capture(video).kind == "video"
    out = tmp_path / "data"
    result = process_capture(video, out, quiet=True)
    assert result.images == VIEWS and not result.unregistered
    first = iio.imread(out / "images" / "frame_000000.jpg")
    assert first.shape[:2] == (HEIGHT, WIDTH)  # upright, as displayed
    assert np.abs(first.astype(float) - frames[0]).mean() < 8.0  # the same picture, not a mirrored one
    reference = {f"frame_{k:06d}.jpg": np.linalg.inv(v) for k, v in enumerate(views)}
    assert_poses_match(recovered(out), reference)


def test_the_sharpest_frame_of_each_window_is_kept(photos, tmp_path):
    """48 frames, every odd one blurred: --num-frames 24 keeps the 24 sharp ones."""
    from PIL import Image, ImageFilter

    folder, _ = photos
    frames = []
    for k in range(24):
        img = Image.open(folder / f"view_{k:03d}.png").convert("RGB")
        frames += [np.asarray(img), np.asarray(img.filter(ImageFilter.GaussianBlur(3)))]
    assert sharpness(frames[0]) > 2 * sharpness(frames[1])
    video = tmp_path / "blurry.mp4"
    write_video(video, np.stack(frames))
    out = tmp_path / "data"
    result = process_capture(video, out, num_frames=24, quiet=True)
    kept = sorted(p.name for p in (out / "images").iterdir())
    assert kept == [f"frame_{2 * k:06d}.jpg" for k in range(24)]
    assert result.images == 24


def test_an_interrupted_run_resumes_where_it_stopped(photos, tmp_path, monkeypatch):
    """Ctrl-C in matching; the same call again skips frames and features and finishes; nothing
    half-written is left under the final names."""
    folder, views = photos
    out = tmp_path / "data"
    real_match = sfm.match_pairs

    def interrupted(database, pairs, progress=None):
        real_match(database, pairs[:10], progress=None)  # some pairs written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(sfm, "match_pairs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        process_capture(folder, out, quiet=True)
    assert (out / ".process" / "features.json").exists() and not (out / ".process" / "matching.json").exists()
    assert not (out / ".process" / "matches.db").exists() and not (out / "sparse").exists()
    features_mtime = (out / ".process" / "features.db").stat().st_mtime_ns

    monkeypatch.setattr(sfm, "match_pairs", real_match)
    monkeypatch.setattr(sfm, "extract_features", lambda *a, **k: pytest.fail("features were extracted again"))
    result = process_capture(folder, out, quiet=True)
    assert result.seconds["features"] < 1.0 and not result.unregistered
    assert (out / ".process" / "features.db").stat().st_mtime_ns == features_mtime
    reference = {f"view_{k:03d}.png": np.linalg.inv(v) for k, v in enumerate(views)}
    assert_poses_match(recovered(out), reference)


def splat_cli(*args, cwd=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "splat.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, **kwargs
    )


def test_kill_9_during_features_then_the_same_command_finishes(photos, tmp_path):
    folder, _ = photos
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "splat.cli", "process", str(folder), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / ".process" / "features.db.tmp").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / ".process" / "features.json").exists()
    done = splat_cli("process", folder, "--out", out)
    assert done.returncode == 0, done.stderr
    assert f"registered {VIEWS} of {VIEWS} images" in done.stdout
    assert not list(out.glob("*.tmp")) and not list((out / ".process").glob("*.tmp"))


def test_train_on_photos_poses_them_once_and_says_so(photos, tmp_path):
    folder, _ = photos
    first = splat_cli("train", folder, "--steps", "20", "--out", tmp_path / "run1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    plan = [line for line in first.stdout.splitlines() if line.startswith("plan: pose")]
    assert plan and "24 photos" in plan[0] and "sequential matching" in plan[0] and "min on" in plan[0], first.stdout
    data = tmp_path / default_output(folder)
    assert (data / "sparse" / "0" / "images.bin").exists()
    config = json.loads((tmp_path / "run1" / "config.json").read_text())
    assert Path(config["data"]).resolve() == data.resolve()
    marker = (data / ".process" / "mapping.json").stat().st_mtime_ns
    second = splat_cli("train", folder, "--steps", "10", "--out", tmp_path / "run2", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert (data / ".process" / "mapping.json").stat().st_mtime_ns == marker  # nothing redone
    assert "mapping:" not in second.stderr


def test_video_of_a_moving_scene_trains_moving_with_model_4d(tmp_path):
    """A phone video of a scene that moves: posed despite the moving objects, each frame keeps the
    time it was filmed at, and `--model 4d` trains (and `splat.load` renders) a moving scene."""
    fps, n = 8.0, 32
    views = film_dynamic_video(tmp_path / "clip.mp4", n_frames=n, width=WIDTH, height=HEIGHT, fps=fps)
    run = splat_cli("train", "clip.mp4", "--model", "4d", "--steps", "20", "--out", "run", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"{n} frames over time [0, 1]" in run.stdout and "4D Gaussians" in run.stdout, run.stdout
    assert "bundle_adjustment" not in run.stderr, run.stderr[-1000:]  # COLMAP's log stays in its file
    data = tmp_path / default_output(tmp_path / "clip.mp4")
    seconds = json.loads((data / "times.json").read_text())["frames"]
    assert seconds == pytest.approx({f"frame_{k:06d}.jpg": k / fps for k in range(n)})
    assert_poses_match(recovered(data), {f"frame_{k:06d}.jpg": np.linalg.inv(v) for k, v in enumerate(views)})
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["model"] == "4d"
    scene = splat.load(tmp_path / "run")
    assert scene.is_dynamic
    cam = scene.cameras[0]
    a, b = scene.render([cam, cam], time=[0.0, 1.0])["rgb"]
    assert (a - b).abs().max() > 0.05  # Gaussians alive at one end of the video and not the other


def test_bad_captures_are_one_line_errors(tmp_path, photos):
    folder, _ = photos

    def fails(path, *words):
        r = splat_cli("process", path, "--out", tmp_path / f"out-{path.name}")
        assert r.returncode == 2, (r.stdout, r.stderr)
        line = r.stderr.strip().splitlines()[-1]  # after any progress lines: one line, no traceback
        assert "Traceback" not in r.stderr and line.startswith("splat process: error: ") and str(path) in line, line
        for w in words:
            assert w in line, line

    empty = tmp_path / "empty"
    empty.mkdir()
    fails(empty, "no photos or videos")
    notes = tmp_path / "notes"
    notes.mkdir()
    for k in range(3):
        (notes / f"n{k}.txt").write_text("hello")
    fails(notes, "no photos or videos", "3 other file(s)")
    same = tmp_path / "same"
    same.mkdir()
    for k in range(30):
        (same / f"img_{k:02d}.png").write_bytes((folder / "view_000.png").read_bytes())
    fails(same, "copies of 1 picture")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for k in range(4):
        (corrupt / f"v{k}.png").write_bytes((folder / f"view_{k:03d}.png").read_bytes())
    (corrupt / "v4.png").write_bytes((folder / "view_004.png").read_bytes()[:3000])
    r = splat_cli("process", corrupt, "--out", tmp_path / "out-corrupt")
    assert r.returncode == 2 and "v4.png" in r.stderr and "Traceback" not in r.stderr, r.stderr
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    fails(bad_video, "video")
    noise = tmp_path / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for k in range(6):
        iio.imwrite(noise / f"n{k}.png", rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    fails(noise, "placed only", "overlap")


def test_mixed_folder_skips_other_files_and_counts_them(photos, tmp_path):
    folder, _ = photos
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for k in range(5):
        (mixed / f"view_{k:03d}.png").write_bytes((folder / f"view_{k:03d}.png").read_bytes())
    (mixed / "notes.txt").write_text("x")
    (mixed / "meta.xml").write_text("<x/>")
    capture = find_capture(mixed)
    assert len(capture.photos) == 5 and capture.skipped == 2
    assert "(2 other file(s) skipped)" in capture.describe()
    assert not is_capture(mixed.parent / "nothing-here")


def test_auto_downscale_prefers_only_true_downscaled_folders(tmp_path, posed):
    """images_N/ is preferred only where the loader reads it (COLMAP, LLFF) and only when its
    images are 1/N of the cameras' size; otherwise the images would be shrunk twice (a nerfstudio
    capture whose file_paths point into images_4/ trained at a quarter of the size meant)."""
    import shutil

    from PIL import Image
    from scene_fixtures import write_nerfstudio

    _, out = posed
    data = tmp_path / "data"
    shutil.copytree(out / "images", data / "images")
    shutil.copytree(out / "sparse", data / "sparse")
    (data / "images_4").mkdir()
    for p in (out / "images").iterdir():  # full-size images in a folder that claims a quarter
        shutil.copyfile(p, data / "images_4" / p.name)
    loaded = load_dataset(data, downscale=0, max_side=200)  # needs 2; a true images_4/ would be taken
    assert loaded.downscale == 2 and loaded.camera(0).width == WIDTH // 2
    for p in (out / "images").iterdir():
        Image.open(p).resize((WIDTH // 4, HEIGHT // 4), Image.Resampling.BOX).save(data / "images_4" / p.name)
    assert load_dataset(data, downscale=0, max_side=200).downscale == 4  # a true one is

    ns = tmp_path / "ns"
    write_nerfstudio(ns, n=4)  # 64x48 frames under images/, named by file_path
    (ns / "images_4").mkdir()
    shutil.copyfile(ns / "images" / "frame_000.png", ns / "images_4" / "frame_000.png")
    loaded = load_dataset(ns, downscale=0, max_side=40)
    assert loaded.downscale == 2 and loaded.image(0)[0].shape[:2] == (24, 32)


def test_plan_line_counts_what_will_be_done(tmp_path):
    """Photos: their number and size; a video: the frames kept and the decoding of all of them;
    larger photos (more SIFT features, dearer pairs) take longer per image."""
    from splat.datasets.capture import plan_text
    from splat.datasets.capture.inputs import find_capture

    rng = np.random.default_rng(0)
    for name, (w, h) in (("small", (320, 240)), ("large", (2400, 1600))):
        (tmp_path / name).mkdir()
        for i in range(12):
            noise = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
            iio.imwrite(tmp_path / name / f"{i:03d}.jpg", np.kron(noise, np.ones((8, 8, 1), dtype=np.uint8)))
    small, large = (plan_text(find_capture(tmp_path / n)) for n in ("small", "large"))
    assert "12 photos (320x240)" in small and "~66 pairs" in small and "about 1 min" in small
    minutes = int(large.split("about ")[1].split(" min")[0])
    assert "12 photos (2400x1600)" in large and minutes >= 2, large
    write_video(tmp_path / "clip.mp4", rng.integers(0, 255, (40, 48, 64, 3), dtype=np.uint8))
    clip = plan_text(find_capture(tmp_path / "clip.mp4"), num_frames=20)
    assert clip.startswith("pose 20 frames of") and "(64x48)" in clip, clip
