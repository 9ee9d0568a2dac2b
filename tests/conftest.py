"""Shared fixtures: a fresh random seed per test (printed on failure, replayable with SPLAT_TEST_SEED)."""

from __future__ import annotations

import os
import random

import pytest
import torch


@pytest.fixture
def seed(request) -> int:
    s = int(os.environ.get("SPLAT_TEST_SEED", random.SystemRandom().randrange(2**31)))
    request.node._splat_seed = s
    torch.manual_seed(s)
    return s


@pytest.fixture
def gen(seed) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    s = getattr(item, "_splat_seed", None)
    if s is not None and report.failed:
        report.sections.append(("random seed", f"seed {s}: rerun with SPLAT_TEST_SEED={s}"))


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device (none on this machine)")
    # SPLAT_TEST_DEVICE=cpu runs the CUDA tests on the CPU (`bench/gpu_check.py --dry`)
    if not torch.cuda.is_available() and os.environ.get("SPLAT_TEST_DEVICE") != "cpu":
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip_cuda)


@pytest.fixture(params=["tile", "pixel"])
def compositing_variant(request, monkeypatch):
    """Run a test with both compositing kernel sets on the CPU: "tile" (the CPU default) and
    "pixel" (the kernels CUDA runs), so the CUDA path's arithmetic is tested here too."""
    from splat.renderer import compositing

    monkeypatch.setitem(compositing.KERNEL_VARIANT, "cpu", request.param)
    return request.param
