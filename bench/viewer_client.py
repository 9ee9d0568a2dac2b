#!/usr/bin/env python
"""The viewer's browser renderer: what it costs in quality, and what it costs the server.

1. Quality (`--run NAME=RUN_FOLDER`, e.g. lego and beer): from the run's test cameras, the PSNR
   against the exact render (all SH bands, float colours) of what the browser draws: DC colours
   only; colours view-baked for that very camera (the settled camera); and colours baked
   RECOLOUR_DEGREES away around the scene centre (the worst case while moving, before re-baking).
   The browser's drawing is the same Gaussians, so splat's rasterizer renders the baked scene
   (colours and opacities rounded to uint8 as on the wire).
2. Browser (headless Chromium, software WebGL, when installed): `splat view` of a synthetic
   scene of 100k and 1M Gaussians; while a mouse drag orbits the camera for 5 s, the page's frame
   times (requestAnimationFrame) and the server process's CPU use. Peer in the same run: the exact
   server renderer (`--renderer server`) under the same orbit, at 100k.

    python bench/viewer_client.py --run lego=/tmp/viewer/lego --run beer=/tmp/viewer/beer

Writes bench/results/viewer-client-cpu.json.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import header, write_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

ORBIT_SECONDS = 5.0


def rotated_about(point, centre, degrees: float):
    """`point` turned by `degrees` about the vertical (z) axis through `centre`."""
    import numpy as np

    a = math.radians(degrees)
    R = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    return centre + R @ (np.asarray(point) - centre)


def test_cameras(run: Path):
    import json

    from splat.run_folder import run_dataset

    info = json.loads((run / "config.json").read_text())
    data = run_dataset(info)
    return [data.normalization.camera_to_original(data.camera(i)) for i in data.test_indices]


def quality(name: str, run: Path, views: int) -> dict:
    import numpy as np

    import splat
    from splat.train.losses import psnr
    from splat.viewer.app import RECOLOUR_DEGREES
    from splat.viewer.client_splats import baked_scene

    scene = splat.load(run)
    cams = test_cameras(run)
    cams = [cams[k] for k in np.linspace(0, len(cams) - 1, min(views, len(cams))).round().astype(int)]
    lo, hi = scene.bounds()
    centre = (lo + hi) / 2
    bg = (1.0, 1.0, 1.0)
    dc_scene = baked_scene(scene, None)
    rows = {"dc": [], "baked_here": [], f"baked_{RECOLOUR_DEGREES:g}deg_away": [], "baked_here_float_colours": []}
    for cam in cams:
        exact = scene.render(cam, background=bg)["rgb"]
        rows["dc"].append(psnr(dc_scene.render(cam, background=bg)["rgb"], exact))
        rows["baked_here"].append(psnr(baked_scene(scene, cam.center).render(cam, background=bg)["rgb"], exact))
        away = rotated_about(cam.center, centre, RECOLOUR_DEGREES)
        rows[f"baked_{RECOLOUR_DEGREES:g}deg_away"].append(
            psnr(baked_scene(scene, away).render(cam, background=bg)["rgb"], exact)
        )
        rows["baked_here_float_colours"].append(
            psnr(baked_scene(scene, cam.center, quantize=False).render(cam, background=bg)["rgb"], exact)
        )
    out = {
        "run": str(run),
        "gaussians": scene.num_gaussians,
        "sh_degree": scene.sh_degree,
        "views": len(cams),
        "resolution": f"{cams[0].width}x{cams[0].height}",
        "psnr_vs_exact_db": {k: float(np.mean(v)) for k, v in rows.items()},
    }
    print(
        f"{name}: {scene.num_gaussians:,} Gaussians, SH degree {scene.sh_degree}, {len(cams)} test views: "
        + ", ".join(f"{k} {v:.2f} dB" for k, v in out["psnr_vs_exact_db"].items()),
        flush=True,
    )
    return out


# ---- browser ------------------------------------------------------------------------------------

RAF_JS = """new Promise(done => {
  const times = []; let last = performance.now(); const end = last + %d;
  function frame(now) { times.push(now - last); last = now;
    if (now < end) requestAnimationFrame(frame); else done(times); }
  requestAnimationFrame(frame);
})"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def synthetic_ply(n: int, path: Path) -> Path:
    from splat.ply import save_ply
    from viewer import synthetic_scene

    scene, _, _ = synthetic_scene(n)
    save_ply(path, scene.splats)
    return path


def orbit(page, seconds: float) -> dict:
    """Drag the mouse in circles over the canvas for `seconds` while the page times its frames
    (the frame timer is sent first; its answer is read after the drag, on the same CDP socket)."""
    import json

    import numpy as np

    ask = {
        "id": 999999,
        "method": "Runtime.evaluate",
        "params": {"expression": RAF_JS % int(seconds * 1000), "awaitPromise": True, "returnByValue": True},
    }
    page.mouse("mousePressed", 300, 320)
    page.ws.send(json.dumps(ask))
    t0, k = time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        a = 2 * math.pi * k / 60
        page.mouse("mouseMoved", 300 + 120 * math.cos(a), 320 + 60 * math.sin(a))
        k += 1
        time.sleep(1 / 60)
    page.mouse("mouseReleased", 300, 320, buttons=0)
    times = page.reply(ask["id"], timeout=120).get("result", {}).get("result", {}).get("value") or []
    times = np.asarray(times[1:], dtype=float)
    if times.size == 0:
        return {"frames": 0}
    return {
        "frames": int(times.size),
        "frame_ms_median": float(np.median(times)),
        "frame_ms_p90": float(np.percentile(times, 90)),
        "fps": float(1000 / times.mean()),
    }


def shows_something(img) -> bool:
    """Non-white pixels in the 3D view (left of the GUI panel): the splats arrived and are drawn."""
    view = img[60:, : img.shape[1] - 360].astype(float) / 255
    return (view.max(-1) < 0.85).mean() > 0.02


def browser(n: int, renderer: str, tmp: Path) -> dict:
    from chromium import CHROMIUM, Chromium, free_port, wait_for_http

    if CHROMIUM is None:
        return {"skipped": "Debian's chromium is not installed"}
    ply = tmp / f"synthetic_{n}.ply"
    if not ply.exists():
        synthetic_ply(n, ply)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "splat.cli", "view", str(ply), "--port", str(port), "--renderer", renderer],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    chrome = None
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", 180, server)
        chrome = Chromium(tmp)
        page = chrome.open(f"http://127.0.0.1:{port}/")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300 and not shows_something(page.screenshot()):
            time.sleep(1)
        loaded_s = time.monotonic() - t0
        time.sleep(3)  # let the first sort and colour pass finish
        idle0, w0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(3)
        idle_cpu = (cpu_seconds(server.pid) - idle0) / (time.monotonic() - w0)
        c0, w0 = cpu_seconds(server.pid), time.monotonic()
        frames = orbit(page, ORBIT_SECONDS)
        orbit_cpu = (cpu_seconds(server.pid) - c0) / (time.monotonic() - w0)
        c0, w0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(3)  # the camera settles: colours are re-baked (browser) / a sharp frame (server)
        settle_cpu = (cpu_seconds(server.pid) - c0) / (time.monotonic() - w0)
        out = {
            "gaussians": n,
            "renderer": renderer,
            "first_picture_s": loaded_s,
            **frames,
            "load_average": os.getloadavg()[0],
            "server_cpu_cores_idle": idle_cpu,
            "server_cpu_cores_orbiting": orbit_cpu,
            "server_cpu_cores_after_settling": settle_cpu,
        }
        print(
            f"{renderer} renderer, {n:,} Gaussians: first picture after {loaded_s:.1f} s; orbiting: "
            f"{out.get('frame_ms_median', float('nan')):.1f} ms/frame median in the page, server CPU "
            f"{orbit_cpu:.2f} cores (idle {idle_cpu:.2f}, settling {settle_cpu:.2f})",
            flush=True,
        )
        page.close()
        return out
    finally:
        if chrome is not None:
            chrome.close()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", default=[], help="NAME=RUN_FOLDER of a trained run (repeatable)")
    p.add_argument("--views", type=int, default=20, help="test views per run (evenly spaced)")
    p.add_argument("--sizes", default="100000,1000000", help="Gaussians in the browser scenes")
    p.add_argument("--no-browser", action="store_true", help="quality only (keeps the browser figures already written)")
    args = p.parse_args(argv)
    result = header("viewer_client", "cpu")
    result["quality"] = {}
    for spec in args.run:
        name, _, folder = spec.partition("=")
        result["quality"][name] = quality(name, Path(folder), args.views)
    if not args.no_browser:
        tmp = Path(tempfile.mkdtemp(prefix="splat-viewer-client-"))
        sizes = [int(s) for s in args.sizes.split(",")]
        runs = [browser(n, "browser", tmp) for n in sizes]
        peer = browser(sizes[0], "server", tmp)
        result["browser"] = {
            "orbit_seconds": ORBIT_SECONDS,
            "runs": runs,
            "peer_server_renderer": peer,
            "cpu_cores": os.cpu_count(),
            "note": "headless Chromium, software WebGL (SwiftShader) on the benchmark machine's CPU, shared "
            "with the server (see load_average): page frame times measure SwiftShader, not a GPU",
        }
        if "server_cpu_cores_orbiting" in runs[0] and "server_cpu_cores_orbiting" in peer:
            ratio = peer["server_cpu_cores_orbiting"] / max(runs[0]["server_cpu_cores_orbiting"], 1e-3)
            result["browser"]["server_cpu_ratio_server_over_browser"] = ratio
            print(f"server CPU while orbiting: server renderer / browser renderer = {ratio:.1f}x")
    path = HERE / "results" / "viewer-client-cpu.json"
    if path.exists():  # a partial run (--no-browser, or no --run) keeps the other part's figures
        import json

        previous = json.loads(path.read_text())
        if args.no_browser and "browser" in previous:
            result["browser"] = previous["browser"]
        if not args.run and previous.get("quality"):
            result["quality"] = previous["quality"]
    out = write_result(path, result)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
