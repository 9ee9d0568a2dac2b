#!/usr/bin/env python
"""The docs' pictures, made from the demo scene by the commands the docs show (never by hand).

    python docs/make_figures.py                       # runs the three demos, writes docs/images/*.png
    python docs/make_figures.py --work outputs/figs   # where the demo runs go (default outputs/figures)
    python docs/make_figures.py --skip-field          # without the neural-field demo (the longest)

It runs `splat demo`, `splat demo --dynamic` and `splat demo --field` into the work folder (a
folder that already holds a finished run is reused), then writes:

- demo_novel_views.png: four of the demo's novel views (`outputs/demo/novel_views`);
- demo_heldout.png: ground truth | render of held-out views (the run's `renders/step_N`);
- demo_depth.png: colour, depth and alpha from `scene.render` (the Rendering page's snippet);
- training_curve.png: training and test PSNR against steps, from the run's `metrics.jsonl`;
- demo4d_time.png: the 4D demo's novel views at four times;
- field_views.png: the field demo's novel views;
- viewer.png: `splat view` on the demo run, in headless Chromium (tests/chromium.py; skipped
  with a message where Debian's chromium is not installed).

On a 2-core CPU the three demos take about 15 minutes together.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"


def demo(folder: Path, *flags: str) -> Path:
    """`splat demo [flags] --out folder`, unless folder already holds a finished demo."""
    if not (folder / "novel_views" / "view_07.png").exists():
        if folder.exists():
            raise SystemExit(f"{folder}: an unfinished demo; delete it first")
        cmd = [sys.executable, "-m", "splat.cli", "demo", *flags, "--out", str(folder)]
        print("+", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)
    return folder


def save(img: Image.Image, name: str) -> None:
    """A small PNG: palette-quantised (the renders have few distinct colours)."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    out = IMAGES / name
    img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out.relative_to(ROOT)} ({img.width}x{img.height}, {out.stat().st_size // 1024} KB)")


def row(images: list[Image.Image], gap: int = 4) -> Image.Image:
    w = sum(im.width for im in images) + gap * (len(images) - 1)
    h = max(im.height for im in images)
    out = Image.new("RGB", (w, h), "white")
    x = 0
    for im in images:
        out.paste(im.convert("RGB"), (x, 0))
        x += im.width + gap
    return out


def column(images: list[Image.Image], gap: int = 4) -> Image.Image:
    w = max(im.width for im in images)
    out = Image.new("RGB", (w, sum(im.height for im in images) + gap * (len(images) - 1)), "white")
    y = 0
    for im in images:
        out.paste(im.convert("RGB"), (0, y))
        y += im.height + gap
    return out


def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def labelled(img: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 22), "white")
    out.paste(img.convert("RGB"), (0, 22))
    ImageDraw.Draw(out).text((4, 3), text, fill="black", font=font(15))
    return out


def newest_renders(run: Path) -> Path:
    steps = sorted((run / "renders").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return steps[-1]


def novel_views(folder: Path, picks: list[int], labels: list[str] | None = None) -> Image.Image:
    views = [Image.open(folder / "novel_views" / f"view_{k:02d}.png") for k in picks]
    if labels:
        views = [labelled(v, t) for v, t in zip(views, labels)]
    return row(views)


def heldout(run: Path, n: int = 3) -> Image.Image:
    """The run's own ground truth | render images of n held-out views, side by side."""
    files = sorted(newest_renders(run).glob("*.png"))[:n]
    return row([labelled(Image.open(f), "ground truth | render") for f in files], gap=12)


def depth_figure(run: Path) -> Image.Image:
    import splat

    scene = splat.load(run)
    cam = splat.Camera.look_at(eye=(0, -3.2, 1.6), target=(0, 0, 0.25), up=(0, 0, 1), width=320, height=240, fov_x=50)
    out = scene.render(cam, outputs=("rgb", "depth", "alpha"), background=(1, 1, 1))
    rgb = out["rgb"].clamp(0, 1).numpy()
    depth = out["depth"][..., 0].numpy()
    alpha = out["alpha"][..., 0].clamp(0, 1).numpy()
    near, far = np.percentile(depth[alpha > 0.5], [2, 98]) if (alpha > 0.5).any() else (0.0, 1.0)
    d = np.clip((depth - near) / max(far - near, 1e-6), 0, 1)
    d = np.where(alpha > 0.5, 1 - d, 0)  # near bright; empty and faint black
    tiles = [
        labelled(Image.fromarray((rgb * 255).astype(np.uint8)), "rgb"),
        labelled(Image.fromarray((np.stack([d] * 3, -1) * 255).astype(np.uint8)), "depth (near = bright)"),
        labelled(Image.fromarray((np.stack([alpha] * 3, -1) * 255).astype(np.uint8)), "alpha"),
    ]
    return row(tiles)


def training_curve(run: Path) -> Image.Image:
    """Training PSNR (each log line) and test PSNR (each evaluation) against steps, drawn here."""
    train, test = [], []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "eval" in rec and rec["eval"].get("psnr") is not None:
            test.append((rec["step"], rec["eval"]["psnr"]))
        elif rec.get("psnr") is not None:
            train.append((rec["step"], rec["psnr"]))
    W, H, left, right, top, bottom = 640, 320, 56, 28, 16, 44
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    points = train + test
    x_max = max(s for s, _ in points)
    y_lo = 5 * np.floor(min(p for _, p in points) / 5)
    y_hi = 5 * np.ceil(max(p for _, p in points) / 5)

    def xy(step, psnr):
        return (
            left + (W - left - right) * step / x_max,
            top + (H - top - bottom) * (1 - (psnr - y_lo) / (y_hi - y_lo)),
        )

    f = font(13)
    for y in np.arange(y_lo, y_hi + 0.1, 5):
        _, py = xy(0, y)
        draw.line([(left, py), (W - right, py)], fill=(225, 225, 225))
        draw.text((8, py - 7), f"{y:.0f} dB", fill="black", font=f)
    for k in range(0, 6):
        step = x_max * k / 5
        px, _ = xy(step, y_lo)
        draw.text((px - 14, H - bottom + 6), f"{step:.0f}", fill="black", font=f)
    draw.text((W // 2 - 20, H - 20), "step", fill="black", font=f)
    draw.rectangle([left, top, W - right, H - bottom], outline="black")
    if len(train) > 1:
        draw.line([xy(*p) for p in train], fill=(40, 90, 200), width=2)
    for p in test:
        cx, cy = xy(*p)
        draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=(220, 60, 40))
    draw.line([(left + 12, top + 14), (left + 36, top + 14)], fill=(40, 90, 200), width=2)
    draw.text((left + 42, top + 7), "training PSNR (one training image a step)", fill="black", font=f)
    draw.ellipse([left + 20, top + 30, left + 28, top + 38], fill=(220, 60, 40))
    draw.text((left + 42, top + 27), "test PSNR (held-out views)", fill="black", font=f)
    return img


def viewer_screenshot(run: Path) -> Image.Image | None:
    sys.path.insert(0, str(ROOT / "tests"))
    from chromium import CHROMIUM, Chromium, free_port

    if CHROMIUM is None:
        print("viewer.png skipped: Debian's chromium is not installed")
        return None
    import tempfile

    import splat
    from splat.viewer.app import Viewer

    v = Viewer(splat.load(run), port=free_port())
    with tempfile.TemporaryDirectory() as tmp:
        browser = Chromium(Path(tmp))
        try:
            page = browser.open(v.url)
            img, deadline = None, time.time() + 120
            while time.time() < deadline:  # until the browser has drawn the scene and stopped changing
                time.sleep(2)
                shot = page.screenshot()
                f = shot.astype(np.float32) / 255
                drawn = ((f.max(-1) - f.min(-1)) > 0.4).mean() > 0.01
                if drawn and img is not None and np.abs(shot.astype(int) - img.astype(int)).mean() < 0.5:
                    break
                img = shot
            # the page's notice that Chromium draws without a GPU here is not part of the viewer
            page.evaluate("document.querySelectorAll('[role=alert]').forEach(e => e.style.display = 'none')")
            time.sleep(1)
            img = page.screenshot()
            page.close()
        finally:
            browser.close()
            v.close()
    return Image.fromarray(img)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "outputs" / "figures")
    p.add_argument("--skip-field", action="store_true", help="no neural-field demo (field_views.png kept as is)")
    p.add_argument("--skip-viewer", action="store_true", help="no browser screenshot (viewer.png kept as is)")
    args = p.parse_args()

    d3 = demo(args.work / "demo")
    run = d3 / "run"
    save(novel_views(d3, [0, 2, 4, 6]), "demo_novel_views.png")
    save(heldout(run), "demo_heldout.png")
    save(depth_figure(run), "demo_depth.png")
    save(training_curve(run), "training_curve.png")
    d4 = demo(args.work / "demo4d", "--dynamic")
    save(novel_views(d4, [0, 2, 5, 7], [f"t = {k / 7:.2f}" for k in (0, 2, 5, 7)]), "demo4d_time.png")
    if not args.skip_field:
        save(novel_views(demo(args.work / "demofield", "--field"), [0, 2, 4, 6]), "field_views.png")
    if not args.skip_viewer and (shot := viewer_screenshot(run)) is not None:
        save(shot, "viewer.png")


if __name__ == "__main__":
    main()
