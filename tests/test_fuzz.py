"""Fuzzing the input paths: 200 seeded random mutations of small Blender, nerfstudio and COLMAP
datasets and of a Gaussian PLY (truncation, byte flips, type swaps, huge numbers, deletions, deep
nesting, removed files). Each mutated input goes through the CLI as a user would run it (`splat
train DATA --steps 1` for datasets: load, check every image, one training step, evaluation and a
checkpoint; `splat render PLY` for a PLY) and must end in exit 0, or exit 2 with one line: never a
traceback, a hang (the case's time limit) or more than 2 GB of resident memory.

The commands run in two long-lived worker processes (tests/fuzz_worker.py) rather than 200 fresh
interpreters, so the test takes a minute or two on two cores. A failure lists each case's seed and
mutation; FUZZ_SEED=N runs another sequence, FUZZ_CASES=N another count.
"""

from __future__ import annotations

import json
import math
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from scene_fixtures import write_blender, write_colmap, write_nerfstudio

from splat.ply import save_ply

HERE = Path(__file__).resolve().parent
SEED = int(os.environ.get("FUZZ_SEED", "15"))
CASES = int(os.environ.get("FUZZ_CASES", "200"))
WORKERS = 2
CASE_SECONDS = 60  # a case that runs longer is a hang (a good one takes about a second)
MAX_RSS_MB = 2048
ADDRESS_SPACE_LIMIT = 8 << 30  # virtual memory; an idle worker maps about 1 GB
TARGETS = ("blender", "nerfstudio", "colmap", "ply")

# values swapped into JSON: wrong types, huge and tiny numbers, non-finite numbers, hostile paths
JSON_VALUES = [
    None,
    True,
    0,
    -1,
    5,
    1e-300,
    1e308,
    10**7,
    10**30,
    -(10**19),
    math.inf,
    -math.inf,
    math.nan,
    "abc",
    "",
    "../../../../etc/passwd",
    "/dev/zero",
    [],
    [1, 2],
    [[1.0] * 4] * 4,
    {},
    {"a": 1},
]
BIG_BINARY = [
    struct.pack("<Q", 2**63 - 1),
    struct.pack("<q", -1),
    struct.pack("<d", 1e308),
    struct.pack("<d", math.nan),
    struct.pack("<I", 2**31),
    struct.pack("<f", math.inf),
    struct.pack("<d", 0.0),
]


# ----------------------------------------------------------------------------------------------
# fixtures and mutations


def write_fixtures(root: Path) -> dict[str, Path]:
    paths = {t: root / t for t in TARGETS}
    write_blender(paths["blender"], n_train=3, n_test=1)
    write_nerfstudio(paths["nerfstudio"], n=3)
    write_colmap(paths["colmap"], n=3, models=("PINHOLE", "SIMPLE_RADIAL"), n_points=60)
    paths["ply"].mkdir()
    save_ply(paths["ply"] / "splats.ply", fuzz_splats())
    return paths


def fuzz_splats(n: int = 64) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "means": torch.randn(n, 3, generator=g) * 0.3,
        "scales": torch.full((n, 3), -3.0),
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.zeros(n),
        "sh0": torch.rand(n, 1, 3, generator=g),
        "shN": torch.zeros(n, 3, 3),
    }


def json_nodes(value, path=()):
    """Every (container, key) position in a JSON tree."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield value, k
            yield from json_nodes(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield value, i
            yield from json_nodes(v, path + (i,))


def mutate_json(path: Path, rng: random.Random) -> str:
    text = path.read_text()
    kind = rng.choice(["swap", "swap", "swap", "delete", "nest", "bytes"])
    if kind == "bytes":
        return mutate_bytes(path, rng)
    if kind == "nest":
        depth = rng.choice([1000, 100_000])
        path.write_text(
            "[" * depth + "]" * depth if rng.random() < 0.5 else '{"frames": ' + "[" * depth + "]" * depth + "}"
        )
        return f"{path.name}: nested {depth} deep"
    data = json.loads(text)
    nodes = list(json_nodes(data))
    container, key = rng.choice(nodes)
    if kind == "delete":
        del container[key]
        what = f"deleted {key!r}"
    else:
        value = rng.choice(JSON_VALUES)
        container[key] = value
        what = f"{key!r} = {str(value)[:30]}"
    path.write_text(json.dumps(data))  # NaN / Infinity as Python's json writes them
    return f"{path.name}: {what}"


def mutate_bytes(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    kind = rng.choice(["truncate", "flip", "big", "delete_chunk", "empty"])
    if kind == "empty" or len(data) < 2:
        path.write_bytes(b"")
        return f"{path.name}: emptied"
    if kind == "truncate":
        n = rng.randrange(len(data))
        path.write_bytes(bytes(data[:n]))
        return f"{path.name}: truncated to {n} bytes"
    if kind == "flip":
        spots = [rng.randrange(len(data)) for _ in range(rng.randint(1, 8))]
        for i in spots:
            data[i] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        return f"{path.name}: bits flipped at {spots}"
    if kind == "big":
        chunk = rng.choice(BIG_BINARY)
        i = rng.randrange(max(1, len(data) - len(chunk)))
        data[i : i + len(chunk)] = chunk
        path.write_bytes(bytes(data))
        return f"{path.name}: {chunk.hex()} written at byte {i}"
    i = rng.randrange(len(data))
    n = rng.randint(1, 64)
    del data[i : i + n]
    path.write_bytes(bytes(data))
    return f"{path.name}: {n} bytes deleted at {i}"


def mutate_case(target: str, case: Path, rng: random.Random) -> str:
    files = sorted(p for p in case.rglob("*") if p.is_file())
    if target == "ply":
        return mutate_bytes(case / "splats.ply", rng)
    if rng.random() < 0.05:
        victim = rng.choice(files)
        victim.unlink()
        return f"removed {victim.relative_to(case)}"
    json_files = [p for p in files if p.suffix == ".json"]
    if json_files and rng.random() < 0.6:
        return mutate_json(rng.choice(json_files), rng)
    binary = [p for p in files if p.suffix == ".bin"]
    pool = binary if binary and rng.random() < 0.7 else [p for p in files if p.suffix == ".png"]
    return mutate_bytes(rng.choice(pool), rng)


def command(target: str, case: Path, out: Path) -> list[str]:
    if target == "ply":
        return [
            "render",
            str(case / "splats.ply"),
            "--frames",
            "1",
            "--width",
            "32",
            "--height",
            "24",
            "--out",
            str(out),
        ]
    return ["train", str(case), "--out", str(out), "--steps", "1", "--init-points", "50", "--sh-degree", "0"]


# ----------------------------------------------------------------------------------------------
# workers


def _limit_address_space() -> None:
    """A runaway allocation fails in the worker (as a MemoryError traceback, which the test
    reports) instead of taking the machine down; the 2 GB bound itself is checked on peak RSS."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


class Worker:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "fuzz_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            preexec_fn=_limit_address_space,
        )
        self.case = None
        self.deadline = 0.0

    def send(self, case_id, request, seconds):
        """`request`: a CLI argv (list), or a reader request ({"read": ..., "path": ...})."""
        self.case = case_id
        self.deadline = time.monotonic() + seconds
        payload = {"id": case_id, **request} if isinstance(request, dict) else {"id": case_id, "argv": request}
        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()

    def poll(self):
        """The result when one is ready, else None ('hang' once past the deadline)."""
        while select.select([self.proc.stdout], [], [], 0)[0]:
            line = self.proc.stdout.readline()
            if not line:
                return {
                    "id": self.case,
                    "rc": "died",
                    "err": f"worker exited with {self.proc.wait()}",
                    "peak_rss_mb": 0,
                    "peak_delta_bytes": 0,
                }
            if "RESULT:" in line:
                return json.loads(line.split("RESULT:", 1)[1])
        if time.monotonic() > self.deadline:
            return {
                "id": self.case,
                "rc": "hang",
                "err": f"no result within {CASE_SECONDS} s",
                "peak_rss_mb": 0,
                "peak_delta_bytes": 0,
            }
        return None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_all(requests: list[tuple], warm_up, fail=pytest.fail) -> list[dict]:
    """Run (id, request) requests (Worker.send) on WORKERS workers; a worker that hangs or dies is
    replaced. `warm_up(n)`: the request of an unmutated case, run first by each new worker."""
    pending = list(requests)
    results = []
    workers = []
    started = 0
    for _ in range(WORKERS):
        w = Worker()
        w.send("warm-up", warm_up(started), 900)  # the first run compiles (or loads) the Warp kernels
        started += 1
        workers.append(w)
    while workers:
        for i, w in enumerate(list(workers)):
            result = w.poll()
            if result is None:
                continue
            if result["id"] != "warm-up":
                results.append(result)
            elif result["rc"] == 0:
                print(f"fuzz: worker warmed up in {result.get('seconds')} s")
            else:
                fail(f"the unmutated warm-up case failed: {result}")
            if result["rc"] in ("hang", "died"):
                w.close()
                workers[i] = w = Worker()
                w.send("warm-up", warm_up(started), 900)
                started += 1
                continue
            if pending:
                case_id, argv = pending.pop(0)
                w.send(case_id, argv, CASE_SECONDS)
            else:
                w.close()
                workers.remove(w)
        time.sleep(0.02)
    return results


def verdict(result: dict) -> str | None:
    """None when the case ended as it should, else what went wrong."""
    rc, err = result["rc"], result["err"].strip()
    if result["peak_rss_mb"] > MAX_RSS_MB:
        return f"peak RSS {result['peak_rss_mb']:.0f} MB"
    if rc == 0:
        return None
    if rc == 2 and err.count("\n") == 0 and "Traceback" not in err and "error:" in err:
        return None
    return f"exit {rc}: {err[-1500:]}"


def test_fuzzed_inputs_end_in_exit_0_or_one_line(tmp_path):
    fixtures = write_fixtures(tmp_path / "fixtures")
    rng = random.Random(SEED)
    requests, described = [], {}
    for k in range(CASES):
        target = TARGETS[k % len(TARGETS)]
        case = tmp_path / "cases" / f"{k:03d}_{target}"
        shutil.copytree(fixtures[target], case)
        described[k] = f"case {k} ({target}, FUZZ_SEED={SEED}): {mutate_case(target, case, rng)}"
        requests.append((k, command(target, case, tmp_path / "out" / f"{k:03d}")))

    def warm_up(n):
        return command("blender", fixtures["blender"], tmp_path / "out" / f"warm-up-{n}")

    t0 = time.monotonic()
    results = run_all(requests, warm_up)
    seconds = time.monotonic() - t0
    assert sorted(r["id"] for r in results) == list(range(CASES))
    failures = [f"{described[r['id']]}\n    -> {v}" for r in results if (v := verdict(r))]
    outcomes = {rc: sum(1 for r in results if r["rc"] == rc) for rc in {r["rc"] for r in results}}
    slowest = max(results, key=lambda r: r.get("seconds", 0))
    print(f"fuzz: slowest case {slowest.get('seconds')} s: {described[slowest['id']]}")
    print(
        f"fuzz: {CASES} cases in {seconds:.0f} s, exit codes {outcomes}, peak RSS "
        f"{max(r['peak_rss_mb'] for r in results):.0f} MB"
    )
    assert not failures, f"{len(failures)} of {CASES} fuzzed inputs misbehaved:\n" + "\n".join(failures)


READ_CASES = int(os.environ.get("FUZZ_READ_CASES", "210"))  # 15 per seed kind


def test_fuzzed_files_are_read_or_refused_in_bounded_memory(tmp_path):
    """Every reader on mutated files (tests/fuzz_files.py): a result or one of splat's errors,
    never a traceback, within 64 x the mutated file + 200 MB of memory. FUZZ_READ_CASES=N runs N
    cases; bench/fuzz_readers.py runs many more on real files."""
    from fuzz_files import make_case, summary, synthetic_seeds, verdict, warm_up_request

    seeds = synthetic_seeds(tmp_path / "seeds")
    rng = random.Random(SEED)
    requests, described, sizes = [], {}, {}
    for k in range(READ_CASES):
        request, what, sizes[k] = make_case(seeds[k % len(seeds)], tmp_path / "cases" / f"{k:03d}", rng)
        described[k] = f"case {k} (FUZZ_SEED={SEED}): {what}"
        requests.append((k, request))
    t0 = time.monotonic()
    results = run_all(requests, lambda n: warm_up_request(seeds))
    numbers = summary(results, sizes)
    print(f"fuzz (readers): {time.monotonic() - t0:.0f} s, {numbers}")
    failures = [f"{described[r['id']]}\n    -> {v}" for r in results if (v := verdict(r, sizes[r["id"]]))]
    assert sorted(r["id"] for r in results) == list(range(READ_CASES))
    assert not failures, f"{len(failures)} of {READ_CASES} fuzzed files misbehaved:\n" + "\n".join(failures)
