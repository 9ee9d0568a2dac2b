"""A run's `report.html`: one self-contained page (no network, no scripts) to look at a run.

Written at the end of training and by `splat eval`: the plan line and configuration, PSNR / loss /
Gaussian count against steps and against training time (inline SVG), the final scores, and the
held-out views as ground truth | render | error (JPEGs inlined as data URLs; the error is
|ground truth - render| amplified 4x).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

MAX_VIEWS = 12  # held-out views shown, evenly spaced over the split
PANEL_WIDTH = 320  # each of ground truth | render | error, in pixels


def write_report(run_dir: str | Path) -> Path:
    """Write RUN/report.html from the run folder's config.json, metrics.jsonl and newest renders."""
    from splat.io_utils import atomic_path

    run_dir = Path(run_dir)
    page = build_report(run_dir)
    out = run_dir / "report.html"
    with atomic_path(out, len(page)) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


def build_report(run_dir: Path) -> str:
    config = _read_json(run_dir / "config.json")
    records = _read_jsonl(run_dir / "metrics.jsonl")
    plan = (run_dir / "plan.txt").read_text().strip() if (run_dir / "plan.txt").exists() else ""
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval" in r]
    parts = [
        f"<h1>{html.escape(run_dir.resolve().name)}</h1>",
        f"<p class=plan>{html.escape(plan)}</p>" if plan else "",
        _scores(evals[-1]) if evals else "<p>No evaluation yet.</p>",
        "<h2>Training</h2><div class=charts>",
        _chart(train, "step", "psnr", "training PSNR (dB) by step"),
        _chart(train, "train_seconds", "psnr", "training PSNR (dB) by training time (s)"),
        _chart(train, "step", "loss", "loss by step"),
        _chart(train, "step", "num_gaussians", "Gaussians by step"),
        "</div>",
    ]
    renders = _newest_renders(run_dir)
    if renders is not None:
        for title, folder in (("Held-out views", renders), ("Validation views", renders / "val")):
            if folder.is_dir():
                parts.append(_views(folder, title))
    parts.append(_config_table(config))
    return _PAGE.format(title=html.escape(run_dir.resolve().name), body="\n".join(p for p in parts if p))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash
        if isinstance(record, dict):
            out.append(record)
    return out


def _scores(record: dict) -> str:
    rows = []
    for key in sorted(k for k in record if k.startswith("eval")):
        e = record[key]
        lpips = "n/a" if e.get("lpips") is None else f"{e['lpips']:.4f}"
        rows.append(
            f"<tr><td>{html.escape(str(e.get('split', key)))}</td><td>{e.get('num_images', '')}</td>"
            f"<td>{e.get('psnr', float('nan')):.2f}</td><td>{e.get('ssim', float('nan')):.4f}</td><td>{lpips}</td></tr>"
        )
    gaussians = record.get("num_gaussians")
    return (
        f"<h2>Scores at step {record.get('step', '?'):,} ({record.get('train_seconds', 0):.0f} s of training"
        f"{f', {gaussians:,} Gaussians' if gaussians else ''})</h2>"
        "<table><tr><th>split</th><th>images</th><th>PSNR (dB)</th><th>SSIM</th><th>LPIPS</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _chart(records: list[dict], x_key: str, y_key: str, title: str, width=420, height=220) -> str:
    points = [(r[x_key], r[y_key]) for r in records if isinstance(r.get(x_key), (int, float)) and r.get(y_key)]
    if len(points) < 2:
        return ""
    xs, ys = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    pad = 56
    px = pad + (xs - x0) / (x1 - x0) * (width - pad - 8)
    py = height - pad + (ys - y0) / (y1 - y0) * (-(height - pad - 8))
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
    label = f"{y_key} by {x_key}"
    return (
        f'<figure><svg role="img" aria-label="{html.escape(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><rect x="{pad}" y="8" width="{width - pad - 8}" '
        f'height="{height - pad - 8}" fill="#fafafa" stroke="#ccc"/>'
        f'<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="{line}"/>'
        f'<text x="{pad}" y="{height - 18}" font-size="11">{_num(x0)}</text>'
        f'<text x="{width - 8}" y="{height - 18}" font-size="11" text-anchor="end">{_num(x1)}</text>'
        f'<text x="{pad - 4}" y="{height - pad}" font-size="11" text-anchor="end">{_num(y0)}</text>'
        f'<text x="{pad - 4}" y="18" font-size="11" text-anchor="end">{_num(y1)}</text></svg>'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _newest_renders(run_dir: Path) -> Path | None:
    steps = [p for p in (run_dir / "renders").glob("step_*") if p.is_dir() and p.name[5:].isdigit()]
    return max(steps, key=lambda p: int(p.name[5:])) if steps else None


def _views(folder: Path, title: str) -> str:
    """Ground truth | render | error per saved side-by-side render (ground truth | render)."""
    import imageio.v3 as iio

    from splat.datasets.base import natural_key

    files = sorted(folder.glob("*.png"), key=lambda p: natural_key(p.name))
    if not files:
        return ""
    count = min(MAX_VIEWS, len(files))
    picked = [files[round(k * (len(files) - 1) / max(count - 1, 1))] for k in range(count)]
    rows = []
    for path in picked:
        pair = np.asarray(iio.imread(path))[..., :3].astype(np.float32)
        half = pair.shape[1] // 2
        gt, render = pair[:, :half], pair[:, half : 2 * half]
        mse = float(((gt - render) ** 2).mean()) / 255.0**2
        psnr = 10 * np.log10(1.0 / max(mse, 1e-12))
        error = np.clip(np.abs(gt - render) * 4.0, 0, 255)
        strip = np.concatenate([gt, render, error], axis=1)
        rows.append(
            f"<figure><img alt='{html.escape(path.stem)}: ground truth, render, error' src='{_jpeg(strip)}'>"
            f"<figcaption>{html.escape(path.stem)}: {psnr:.2f} dB</figcaption></figure>"
        )
    return f"<h2>{title} (ground truth | render | error x4)</h2><div class=views>{''.join(rows)}</div>"


def _jpeg(image: np.ndarray) -> str:
    from PIL import Image

    im = Image.fromarray(image.astype(np.uint8))
    scale = 3 * PANEL_WIDTH / im.width
    if scale < 1:
        im = im.resize((round(im.width * scale), max(1, round(im.height * scale))), Image.Resampling.BOX)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _config_table(config: dict) -> str:
    cfg = config.get("config", {})
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v)[:200])}</td></tr>"
        for k, v in sorted(cfg.items())
    )
    data = html.escape(str(config.get("data", "")))
    return f"<h2>Configuration</h2><p>data: {data}</p><table>{rows}</table>" if cfg else ""


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>splat run {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
.plan {{ font-family: monospace; background: #f4f4f4; padding: .6em; }}
table {{ border-collapse: collapse; margin: .5em 0; }} td, th {{ border: 1px solid #ddd; padding: 3px 8px; }}
.charts, .views {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0; }} figcaption {{ font-size: 12px; color: #555; }}
img {{ max-width: 100%; }}
</style></head>
<body>
{body}
</body></html>
"""
