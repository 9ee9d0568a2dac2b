"""Running a command on several processes with torch.distributed: `--nproc N` on one machine, or
under `torchrun` (env:// rendezvous: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK).

    splat train data/ --nproc 2                       # two local processes (gloo on the CPU)
    torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m splat.cli train data/ --device cuda --out runs/city   # NCCL, one process per GPU

The backend follows the device: gloo on the CPU, NCCL on CUDA. Collectives time out after
SPLAT_DIST_TIMEOUT seconds (default 300). A rank that dies or hangs makes the others stop with a
one-line error naming it: every rank bumps a heartbeat counter in the rendezvous store each
second, and a rank whose collective fails reports the ranks whose counter stopped.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
import subprocess
import sys
import threading
import time

from splat.errors import InputError

HEARTBEAT_SECONDS = 1.0


class PeerFailure(RuntimeError):
    """Another rank died or stopped responding (message names it)."""


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless a process group is running."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_active() -> bool:
    """A process group is running (even of one rank, e.g. a one-GPU torchrun job)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def is_main() -> bool:
    return world()[0] == 0


def timeout_seconds() -> float:
    try:
        return float(os.environ.get("SPLAT_DIST_TIMEOUT", "300"))
    except ValueError:
        raise InputError(f"SPLAT_DIST_TIMEOUT: expected seconds, got {os.environ['SPLAT_DIST_TIMEOUT']!r}") from None


def backend_for(device: str) -> str:
    return "nccl" if str(device).startswith("cuda") else "gloo"


# ----------------------------------------------------------------------------------------------
# heartbeat: which rank is gone


class _Heartbeat:
    """A daemon thread adding 1 to `splat/heartbeat/RANK` in the rendezvous store every second
    (its own client connection, so it never shares a socket with the process group)."""

    def __init__(self, rank: int, world_size: int):
        import torch.distributed as dist

        self.rank, self.world_size = rank, world_size
        host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        self.store = dist.TCPStore(
            host, port, is_master=False, timeout=datetime.timedelta(seconds=5), wait_for_workers=False
        )
        self.store.add(self._key(rank), 1)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="splat-heartbeat", daemon=True)
        self.thread.start()

    @staticmethod
    def _key(rank: int) -> str:
        return f"splat/heartbeat/{rank}"

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self.store.add(self._key(self.rank), 1)
            except Exception:  # noqa: BLE001 - the store is gone with its host; the main thread reports it
                return

    def counters(self) -> dict[int, int]:
        return {r: int(self.store.add(self._key(r), 0)) for r in range(self.world_size) if r != self.rank}

    def silent_ranks(self) -> list[int] | None:
        """Ranks whose counter did not move in 3 heartbeats; None when the store itself is gone."""
        try:
            before = self.counters()
            time.sleep(3 * HEARTBEAT_SECONDS)
            after = self.counters()
        except Exception:  # noqa: BLE001
            return None
        return [r for r in before if after[r] == before[r]]

    def close(self) -> None:
        self._stop.set()


_heartbeat: _Heartbeat | None = None


def describe_failure(error: BaseException) -> str:
    """One line: which rank is gone (from the heartbeats), what failed here."""
    rank, world_size = world()
    text = re.sub(r"\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", str(error)).strip()  # gloo's source locations
    reason = text.splitlines()[0].split(". ")[0][:120] if text else error.__class__.__name__
    silent = _heartbeat.silent_ranks() if _heartbeat is not None else None
    if silent is None:
        hosted = (
            "the rendezvous store (torchrun's agent)" if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") else "rank 0"
        )
        who = f"lost contact with {hosted}"
    elif silent:
        who = f"rank{'s' if len(silent) > 1 else ''} {', '.join(map(str, silent))} of {world_size} stopped responding"
    else:
        who = "a collective failed while every rank is still alive"
    return f"{who} (seen by rank {rank}: {reason})"


# what gloo's transport says when a peer is gone or a collective timed out: gloo's own source
# location ("[.../gloo/transport/tcp/pair.cc:553] Connection closed by peer ...") or the socket error
TRANSPORT_ERRORS = ("/gloo/transport/", "connection closed by peer", "connection reset by peer", "broken pipe")


def is_peer_failure(error: BaseException) -> bool:
    """Errors of the transport (a peer closed its connection, a collective timed out), not bugs:
    torch.distributed's own error types (NCCL failures and timeouts included), and the plain
    RuntimeErrors gloo raises, recognised by their source location or socket error. Any other
    error that merely mentions "nccl" or "timed out" (a subclass such as CUDA out of memory, or
    splat's own) is not one: it keeps its traceback."""
    import torch.distributed as dist

    if isinstance(error, (dist.DistError, PeerFailure)):
        return True
    text = str(error).lower()
    return type(error) is RuntimeError and any(s in text for s in TRANSPORT_ERRORS)


# ----------------------------------------------------------------------------------------------
# process group


def init_from_env(device: str) -> None:
    """Join the process group described by the environment (torchrun or `launch_local`)."""
    global _heartbeat
    import torch
    import torch.distributed as dist

    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    elif "OMP_NUM_THREADS" not in os.environ and "SPLAT_NUM_THREADS" not in os.environ:
        # ranks on one machine share its cores (as torchrun's OMP_NUM_THREADS=1, but all of them used)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_seconds()),
    )
    _heartbeat = _Heartbeat(rank, world_size)
    if rank != 0:  # one voice: the other ranks print errors only
        sys.stdout = open(os.devnull, "w")


def shutdown() -> None:
    import torch.distributed as dist

    if _heartbeat is not None:
        _heartbeat.close()
    if dist.is_initialized():
        dist.destroy_process_group()


def same_everywhere(value):
    """Rank 0's `value` on every rank (e.g. a run folder named after the clock)."""
    import torch.distributed as dist

    if world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    import torch.distributed as dist

    if world()[1] > 1:
        dist.barrier()


def gather_objects(value) -> list:
    """`value` of every rank, in rank order (a one-element list without a process group)."""
    import torch.distributed as dist

    if world()[1] == 1:
        return [value]
    out = [None] * world()[1]
    dist.all_gather_object(out, value)
    return out


# ----------------------------------------------------------------------------------------------
# entry point


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch_local(argv: list[str], nproc: int, command: str) -> int:
    """Run `splat ARGV` as `nproc` ranks on this machine (env:// on a free local port) and wait.
    When a rank fails, the others get the collective timeout plus a grace period to stop on their
    own (they print which rank is gone), then are terminated; the exit code is the first failure's."""
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "WORLD_SIZE": str(nproc),
        "LOCAL_WORLD_SIZE": str(nproc),
    }
    cmd = [sys.executable, "-m", "splat.cli", *_without_nproc(argv)]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(nproc)]
    failed: tuple[int, int] | None = None
    deadline = None
    while True:
        try:
            codes = [p.poll() for p in procs]
            if failed is None:
                bad = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
                if bad:
                    failed = bad[0]
                    deadline = time.monotonic() + timeout_seconds() + 15
            if all(c is not None for c in codes):
                break
            if deadline is not None and time.monotonic() > deadline:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.2)
        except KeyboardInterrupt:  # the ranks got the same Ctrl-C: let them checkpoint and stop
            continue
    if failed is None:
        return 0
    rank, code = failed
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    if code != 130:
        print(f"splat {command}: error: rank {rank} of {nproc} {how}", file=sys.stderr)
    return 130 if code == 130 else (code if code > 0 else 1)


def run(args, fn, command: str) -> int:
    """Run `fn(args)` here, as `args.nproc` local ranks, or as one rank of a torchrun job."""
    nproc = getattr(args, "nproc", None) or 1
    if nproc < 1:
        raise InputError(f"--nproc: expected a positive number of processes, got {nproc}")
    under_launcher = "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ
    if not under_launcher:
        if nproc == 1:
            return fn(args)
        return launch_local(args.argv, nproc, command)
    # c10d logs a multi-line warning for every store read after a peer is gone; our one line says it
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    from splat.train.config import resolve_device

    init_from_env(resolve_device(getattr(args, "device", None) or "auto"))
    try:
        return fn(args)
    except Exception as e:
        if not is_peer_failure(e):
            raise
        print(f"splat {command}: error: {describe_failure(e)}", file=sys.stderr, flush=True)
        os._exit(3)  # the process group cannot be torn down cleanly with a peer gone
    finally:
        shutdown()
