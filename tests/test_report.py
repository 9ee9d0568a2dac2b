"""report.html: a run's self-contained page (charts, scores, held-out views), opened in Chromium."""

from __future__ import annotations

import json
import time

import imageio.v3 as iio
import numpy as np
import pytest

from splat.report import build_report, write_report


@pytest.fixture
def run(tmp_path):
    """A run folder as training leaves it: config, log, plan line, side-by-side renders."""
    run = tmp_path / "run"
    (run / "renders" / "step_200" / "val").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"data": "data/x", "config": {"steps": 200, "preset": "fast"}}))
    (run / "plan.txt").write_text("plan: cpu, 64x48 images (downscale 1), preset fast: 200 steps\n")
    log = [
        {"step": s, "train_seconds": s / 10, "loss": 1 / s, "psnr": 20 + s / 50, "num_gaussians": 100 + s}
        for s in (50, 100, 150, 200)
    ]
    log.append(
        {
            "step": 200,
            "train_seconds": 20.0,
            "num_gaussians": 300,
            "eval": {"psnr": 23.5, "ssim": 0.81, "lpips": None, "num_images": 2, "split": "test"},
        }
    )
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in log) + '\n{"step": 2')  # a cut last line
    rng = np.random.default_rng(0)
    for folder, names in (
        (run / "renders" / "step_200", ("r_1", "r_2")),
        (run / "renders" / "step_200" / "val", ("r_1",)),
    ):
        for name in names:
            gt = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            iio.imwrite(folder / f"{name}.png", np.concatenate([gt, gt // 2], axis=1))
    return run


def test_report_holds_scores_charts_views_and_config(run):
    page = build_report(run)
    assert "plan: cpu, 64x48 images" in page and "23.50" in page and "0.8100" in page
    assert page.count("<svg") == 4  # PSNR by step and by time, loss, Gaussians
    assert page.count("data:image/jpeg;base64,") == 3  # two test views, one val view
    assert "Validation views" in page and "preset" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # opens offline
    out = write_report(run)
    assert out == run / "report.html" and out.read_text() == page


def test_report_of_a_run_without_evaluation(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 10, "loss": 0.5, "psnr": 12.0}) + "\n")
    page = build_report(tmp_path)
    assert "No evaluation yet" in page and "<svg" not in page  # one point draws no line


@pytest.mark.skipif(
    not __import__("chromium").CHROMIUM, reason="Debian's chromium is not installed (make browser installs it)"
)
def test_report_opens_in_a_browser_with_nothing_fetched(run, tmp_path):
    from chromium import Chromium

    write_report(run)
    browser = Chromium(tmp_path)
    try:
        uri = (run / "report.html").as_uri()
        page = browser.open(uri)
        deadline = time.time() + 30
        # the report, not the blank page before it (a loaded machine navigates late), fully loaded
        loaded = f"document.location.href === {json.dumps(uri)} && document.readyState === 'complete'"
        while not page.evaluate(loaded) and time.time() < deadline:
            time.sleep(0.1)
        shown = page.evaluate(
            "[document.images.length, [...document.images].every(i => i.complete && i.naturalWidth > 0),"
            " document.querySelectorAll('svg polyline').length,"
            " performance.getEntriesByType('resource').filter(e => !e.name.startsWith('data:')).length]"
        )
        assert shown == [3, True, 4, 0], shown
        page.close()
    finally:
        browser.close()
