"""Package layout and the command line."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import imageio.v3 as iio
import pytest

import splat

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = {
    "renderer": "renderer",
    "fields": "fields",
    "train": "train",
    "datasets": "datasets",
    "viewer": "viewer",
    "scenes": "scenes",
}


@pytest.mark.parametrize("name,folder", sorted(SUBPACKAGES.items()))
def test_subpackages_live_in_top_level_folders(name, folder):
    mod = importlib.import_module(f"splat.{name}")
    assert Path(mod.__file__).resolve().parent == ROOT / folder


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    """The files of the wheel `pip wheel .` builds from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("splat-*.whl")
    return zipfile.ZipFile(wheel).namelist()


def test_wheel_installs_only_the_splat_namespace(wheel_names):
    """Nothing may install a top-level `datasets`, `train`, ... that would shadow other packages."""
    names = wheel_names
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"splat"}, top
    for sub in SUBPACKAGES:
        assert f"splat/{sub}/__init__.py" in names


def test_wheel_holds_every_module(wheel_names):
    """Every module of every folder is in the wheel, under its `splat.*` name (setup.py finds the
    packages below each folder), and every top-level package folder is one of the mapped ones."""
    folders = {"splat": "splat", **{folder: f"splat/{name}" for name, folder in SUBPACKAGES.items()}}
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == set(folders), packages
    missing = []
    for folder, installed in folders.items():
        for path in (ROOT / folder).rglob("*.py"):
            name = f"{installed}/{path.relative_to(ROOT / folder).as_posix()}"
            if "__pycache__" not in path.parts and name not in wheel_names:
                missing.append(name)
    assert not missing, missing


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "splat.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_version_and_help():
    v = run_cli("--version")
    assert v.returncode == 0 and v.stdout.strip() == f"splat {splat.__version__}"
    h = run_cli("--help")
    assert h.returncode == 0 and "demo" in h.stdout


def test_demo_trains_on_the_procedural_scene(tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "--out", str(out), "--steps", "60", "--views", "8", "--width", "48", "--height", "36")
    assert r.returncode == 0, r.stderr
    assert "test PSNR" in r.stdout
    assert (out / "data" / "transforms_train.json").exists() and (out / "run" / "point_cloud.ply").exists()
    frames = sorted((out / "novel_views").glob("view_*.png"))
    assert len(frames) == 8
    img = iio.imread(frames[0])
    assert img.shape == (72, 96, 3) and img.std() > 10, "novel view is blank"
    again = run_cli("demo", "--out", str(out))
    assert again.returncode == 2 and "not empty" in again.stderr


def test_dynamic_demo_trains_4d_gaussians(tmp_path):
    out = tmp_path / "demo4d"
    r = run_cli(
        "demo", "--dynamic", "--out", str(out), "--steps", "60", "--views", "24", "--width", "48", "--height", "36"
    )
    assert r.returncode == 0, r.stderr
    assert "4D (XYZT)" in r.stdout and "test PSNR" in r.stdout
    assert (out / "data" / "transforms.json").exists() and (out / "data" / "cam00").is_dir()
    frames = sorted((out / "novel_views").glob("view_*.png"))
    assert len(frames) == 8
    first = iio.imread(frames[0])
    assert first.shape == (72, 96, 3) and first.std() > 10, "novel view is blank"


def test_cli_bad_input_is_one_line():
    r = run_cli("demo", "--steps", "0")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "error" in r.stderr and "Traceback" not in r.stderr
