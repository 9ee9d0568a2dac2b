"""`warp_runtime.launch` on the CPU: a launch split into chunks over worker threads (arguments
packed once per worker, then only the offset and size move) covers every thread exactly once,
with sharded kernels told their worker."""

from __future__ import annotations

import pytest
import torch
import warp as wp

from splat.renderer import warp_runtime


@wp.kernel
def _write_index(offset: int, out: wp.array(dtype=int), hits: wp.array(dtype=int)):
    i = wp.tid() + offset
    out[i] = i
    wp.atomic_add(hits, i, 1)


@wp.kernel
def _write_shard(offset: int, shard: int, out: wp.array(dtype=int)):
    out[wp.tid() + offset] = shard


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_chunked_launch_covers_every_thread_once(gen, monkeypatch, workers):
    monkeypatch.setattr(warp_runtime, "cpu_workers", lambda: workers)
    for dim in (1, 5, int(torch.randint(9000, 80_000, (1,), generator=gen))):
        out = torch.full((dim,), -1, dtype=torch.int32)
        hits = torch.zeros(dim, dtype=torch.int32)
        warp_runtime.launch(
            _write_index,
            dim,
            [],
            [warp_runtime.array(out, wp.int32), warp_runtime.array(hits, wp.int32)],
            device=torch.device("cpu"),
            grain=1000,
        )
        assert torch.equal(out, torch.arange(dim, dtype=torch.int32)) and bool((hits == 1).all())
        shards = torch.full((dim,), -1, dtype=torch.int32)
        warp_runtime.launch(
            _write_shard,
            dim,
            [],
            [warp_runtime.array(shards, wp.int32)],
            device=torch.device("cpu"),
            sharded=True,
            grain=1000,
        )
        assert bool((shards >= 0).all()) and bool((shards < workers).all())
        if dim >= 2 * 1000 and workers > 1:
            assert len(torch.unique(shards)) == workers  # the chunks went round the workers
