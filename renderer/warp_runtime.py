"""Warp runtime glue shared by every kernel module.

- `init()` starts Warp once, quietly (no banner, no "CUDA driver not found" noise on CPU machines).
- `array(t, dtype)` views a contiguous torch tensor as a Warp array, zero-copy. All memory is allocated
  by torch, so torch's allocator statistics (and `torch.cuda.max_memory_allocated`) see all of it.
- `launch(kernel, dim, inputs, outputs, device=...)` runs a kernel on a torch device, like
  `wp.launch`: `inputs` are the parameters the kernel reads, `outputs` the trailing ones it writes
  (in that order in its signature). On the CPU Warp runs a launch on one thread;
  we split large launches into chunks and run them from a small thread pool (Warp releases the GIL
  inside a CPU launch), which uses every core. Every kernel launched this way takes `offset: int` as
  its first parameter and adds it to `wp.tid()`. Kernels that accumulate into shared buffers take
  `shard: int` second and write into a per-worker slice of their output, summed afterwards, because
  Warp's CPU atomics are plain (non-atomic) adds.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
import warp as wp

_init_lock = threading.Lock()
_initialized = False

# Warp compiles and caches each module once; our kernels have hand-written backward passes,
# so Warp's own adjoint code generation is switched off (halves compile time).
KERNEL_OPTIONS = {"enable_backward": False}


def vector_kernel_options(fuse_multiply_add: bool = False) -> dict:
    """Module options for kernels written for the CPU's vector unit (16-lane `while` loops):
    prefer 512-bit registers where the CPU has them (elsewhere the compiler picks the widest it
    has). `fuse_multiply_add` lets the compiler contract a * b + c into one rounding, which Warp
    otherwise never does; only for kernels whose results need not match another kernel's bit
    for bit."""
    flags = f"{wp.config.cpu_compiler_flags} -mprefer-vector-width=512"
    if fuse_multiply_add:
        flags += " -ffp-contract=fast"
    return {**KERNEL_OPTIONS, "cpu_compiler_flags": flags}


def init() -> None:
    """Initialise Warp once per process, filtering its CUDA-driver warning on machines without one."""
    global _initialized
    if _initialized:
        return
    with _init_lock:
        if _initialized:
            return
        wp.config.log_level = wp.LOG_WARNING
        if "WARP_CACHE_PATH" in os.environ:
            wp.config.kernel_cache_dir = os.environ["WARP_CACHE_PATH"]
        # The native library prints a driver warning straight to fd 2; capture it and re-emit the rest.
        captured = _run_capturing_stderr(wp.init)
        expected_noise = "Could not find or load the NVIDIA CUDA driver"
        for line in captured.splitlines():
            if expected_noise in line and not torch.cuda.is_available():
                continue
            print(line, file=sys.stderr)
        _initialized = True


def _run_capturing_stderr(fn) -> str:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        return sink.read().decode(errors="replace")


def device_of(t: torch.Tensor) -> wp.context.Device:
    init()
    return wp.device_from_torch(t.device)


def array(t: torch.Tensor, dtype=None, dims: int = 1) -> wp.array:
    """Zero-copy Warp view of a contiguous torch tensor as a `dims`-dimensional array of `dtype`.

    Vector dtypes absorb the last torch dimension, matrix dtypes the last two; leading torch
    dimensions are flattened into the first array dimension.
    """
    if not t.is_contiguous():
        raise RuntimeError("internal error: Warp views need contiguous tensors")
    init()
    element_dims = 0
    if dtype is not None and wp.types.type_is_matrix(dtype):
        element_dims = 2
    elif dtype is not None and wp.types.type_is_vector(dtype):
        element_dims = 1
    lead = t.shape[: t.dim() - element_dims]
    keep = lead[len(lead) - dims + 1 :] if dims > 1 else ()
    flat = t.reshape((-1, *keep, *t.shape[t.dim() - element_dims :]))
    return wp.from_torch(flat, dtype=dtype, requires_grad=False)


def grad_or_zeros(g: torch.Tensor | None, shape, device) -> torch.Tensor:
    """An incoming gradient as a contiguous float32 tensor, or zeros when autograd passed None
    (the output did not reach the loss): backward kernels always read a full buffer."""
    return torch.zeros(shape, dtype=torch.float32, device=device) if g is None else g.contiguous().float()


# ----------------------------------------------------------------------------------------------
# Launching
# ----------------------------------------------------------------------------------------------

DEFAULT_GRAIN = 4096  # threads; below this a CPU launch is not worth splitting
_CHUNKS_PER_WORKER = 8  # several chunks per worker balance uneven work (e.g. busy vs empty tiles)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_warm: set = set()


def cpu_workers() -> int:
    """CPU worker threads for kernel launches: $SPLAT_NUM_THREADS, else torch's intra-op thread count."""
    env = os.environ.get("SPLAT_NUM_THREADS")
    if env:
        return max(1, int(env))
    return max(1, torch.get_num_threads())


def num_shards(device: torch.device) -> int:
    """How many private output slices a `shard`-taking kernel needs on this device."""
    return cpu_workers() if device.type == "cpu" else 1


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < workers:  # noqa: SLF001 - sizing check only
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="splat-warp")
        return _pool


def launch(
    kernel: wp.Kernel,
    dim: int,
    inputs: Sequence,
    outputs: Sequence = (),
    *,
    device: torch.device,
    sharded: bool = False,
    grain: int = DEFAULT_GRAIN,
) -> None:
    """Launch `kernel` over `dim` threads on `device` (a torch device): `inputs` are the arguments
    after `offset` (and `shard`) that the kernel reads, `outputs` the arrays (or structs of arrays)
    it writes, which are the last parameters of its signature.

    On CUDA this is one launch on torch's current stream. On the CPU the range is split into chunks
    run by `cpu_workers()` threads; with `sharded=True` the kernel receives the worker index as its
    second argument so it can accumulate into a private slice of its output buffers. `grain` is the
    smallest chunk worth a task (lower it for kernels whose threads each do a lot of work).
    """
    if dim <= 0:
        return
    init()
    wdev = wp.device_from_torch(device)
    inputs, outputs = list(inputs), list(outputs)
    if device.type != "cpu":
        head = [0, 0] if sharded else [0]
        with wp.ScopedStream(wp.stream_from_torch(device)):
            wp.launch(kernel, dim=dim, inputs=head + inputs, outputs=outputs, device=wdev)
        return

    workers = cpu_workers()
    key = (kernel.module, wdev.alias)
    if key not in _warm:
        # compile/load the module here, once, before worker threads launch from it
        wp.load_module(kernel.module, device=wdev)
        _warm.add(key)
    if workers == 1 or dim < 2 * grain:
        head = [0, 0] if sharded else [0]
        wp.launch(kernel, dim=dim, inputs=head + inputs, outputs=outputs, device=wdev)
        return

    n_chunks = min(workers * _CHUNKS_PER_WORKER, max(1, dim // grain))
    bounds = [dim * k // n_chunks for k in range(n_chunks + 1)]
    next_chunk = iter(range(n_chunks))
    lock = threading.Lock()

    def chunks_of(shard: int):
        if sharded:
            # fixed chunks per worker, in order: each private slice sums the same terms in the same
            # order every run, so accumulated gradients are bit-for-bit reproducible
            yield from range(shard, n_chunks, workers)
            return
        while True:  # otherwise first come, first served: better balance
            with lock:
                k = next(next_chunk, None)
            if k is None:
                return
            yield k

    def worker(shard: int) -> None:
        # the arguments are packed once per worker (a recorded launch): later chunks only move
        # the offset and the size, which costs ~1/10 of a launch (packing holds the GIL)
        command = None
        for k in chunks_of(shard):
            start, stop = bounds[k], bounds[k + 1]
            if command is None:
                head = [start, shard] if sharded else [start]
                command = wp.launch(
                    kernel, dim=stop - start, inputs=head + inputs, outputs=outputs, device=wdev, record_cmd=True
                )
            else:
                command.set_param_at_index(0, start)
                command.set_dim(stop - start)
            command.launch()

    futures = [_get_pool(workers).submit(worker, s) for s in range(workers)]
    for f in futures:
        f.result()


def launch_side_by_side(launches: list[tuple], device: torch.device) -> None:
    """Run independent launches [(kernel, dim, inputs, outputs, sharded), ...] that write disjoint
    outputs: on the CPU each whole launch on one worker thread, several at once (e.g. one hash-grid
    level each, so scatters into a level's table need no private copies); on CUDA one after
    another. `sharded` kernels get shard 0."""
    if device.type != "cpu" or cpu_workers() == 1:
        for kernel, dim, inputs, outputs, sharded in launches:
            launch(kernel, dim, inputs, outputs, device=device, sharded=sharded)
        return
    init()
    wdev = wp.device_from_torch(device)
    for kernel, *_ in launches:
        key = (kernel.module, wdev.alias)
        if key not in _warm:
            wp.load_module(kernel.module, device=wdev)
            _warm.add(key)

    def run(item) -> None:
        kernel, dim, inputs, outputs, sharded = item
        if dim > 0:
            head = [0, 0] if sharded else [0]
            wp.launch(kernel, dim=dim, inputs=head + list(inputs), outputs=list(outputs), device=wdev)

    for f in [_get_pool(cpu_workers()).submit(run, item) for item in launches]:
        f.result()
