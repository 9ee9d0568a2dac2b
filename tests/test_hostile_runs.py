"""Run folders and checkpoints someone else made or tampered with (issue 29): planted symbolic
links are refused rather than followed, `splat eval` takes the run's lock, crafted field
checkpoints are refused before anything is allocated, errors are classified honestly (bad input:
one line, exit 2; a bug: traceback, exit 1), and a damaged newest checkpoint does not block
--resume. One test (or table) per defect."""

from __future__ import annotations

import test_reliability
from test_reliability import _hold_lock, assert_one_line_error, copy_of, run_cli

blender_scene = test_reliability.blender_scene  # the same module-scoped fixtures
trained_run = test_reliability.trained_run


def assert_bug(rc: int, err: str, *words) -> None:
    """How the CLI reports a bug: its traceback, a line asking for a report, exit 1."""
    assert rc == 1, err
    assert "Traceback" in err and "internal error" in err, err
    for w in words:
        assert w in err, (w, err)


# ----------------------------------------------------------------------------------------------
# 1. the run folder's lock and log are not written through planted links; eval takes the lock


def test_planted_links_in_a_run_folder_are_refused(tmp_path, trained_run):
    run = copy_of(trained_run, tmp_path)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(victim)
    rc, _, err = run_cli("train", "--resume", run, "--steps", "3")
    assert_one_line_error(rc, err, run / ".lock", "symbolic link")
    assert victim.read_text() == "keep me\n", "the lock truncated the file its link points to"

    (run / ".lock").unlink()
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(victim)
    for command in (["eval", run, "--no-renders"], ["train", "--resume", run, "--steps", "3"]):
        rc, _, err = run_cli(*command)
        assert_one_line_error(rc, err, run / "metrics.jsonl", "symbolic link")
        assert victim.read_text() == "keep me\n", f"{command[0]} wrote through the link"


def test_eval_takes_the_run_lock(tmp_path, trained_run):
    run = copy_of(trained_run, tmp_path)
    holder = _hold_lock(run)
    try:
        before = (run / "metrics.jsonl").read_text()
        rc, _, err = run_cli("eval", run, "--no-renders")
        assert_one_line_error(rc, err, run, f"PID {holder.pid}")
        assert (run / "metrics.jsonl").read_text() == before
    finally:
        holder.kill()
        holder.wait()
    rc, out, err = run_cli("eval", run, "--no-renders")
    assert rc == 0 and "PSNR" in out, err


# ----------------------------------------------------------------------------------------------
# 5. a crafted field checkpoint is refused before anything is allocated


def field_bomb(path, **spec) -> None:
    """A field checkpoint whose field_spec asks for large hash tables and holds none of them."""
    import torch

    full = dict(bound=0.375, contract=False, n_levels=8, n_features_per_level=2, log2_hashmap_size=23)
    full.update(base_resolution=16, max_resolution=2048, grid_resolution=128)
    full.update(spec)
    state = {"model": "field", "field_spec": full, "field": {}, "grid": {}}
    state["normalization"] = {"center": [0.0, 0.0, 0.0], "scale": 1.0}
    torch.save(state, path)


def test_a_field_checkpoint_bomb_allocates_nothing(tmp_path):
    from memory_probe import bound, peak_memory

    evil = tmp_path / "field.pt"
    field_bomb(evil)  # 8 levels of 2^23 entries: 512 MB of tables (16 levels of 2^30 would be 137 GB)
    warm_up = """
        import splat, torch
        from splat.fields.radiance_field import FieldSpec, RadianceField
        with torch.device("meta"):  # the modules a field load imports, loaded before the measure
            RadianceField(FieldSpec(n_levels=2, log2_hashmap_size=8, base_resolution=4, max_resolution=8))
    """
    result = peak_memory(f"splat.load({str(evil)!r})", setup=warm_up)
    assert result["outcome"] == "input error" and str(evil) in result["message"], result
    assert result["peak_bytes"] < bound(evil.stat().st_size), f"peak {result['peak_bytes'] / 2**20:.0f} MiB"
    for key, value in (("n_levels", 10**6), ("log2_hashmap_size", 30), ("grid_resolution", 4096), ("bound", "x")):
        field_bomb(evil, **{key: value})
        rc, _, err = run_cli("render", evil, "--frames", "1", "--width", "8", "--height", "8", "--out", tmp_path / "r")
        assert_one_line_error(rc, err, evil, key)


# ----------------------------------------------------------------------------------------------
# 7. bugs are not shown as bad input, bad input is not shown as a bug


def test_a_failure_after_the_checks_is_a_bug_not_a_bad_checkpoint(tmp_path, trained_run, monkeypatch):
    import torch

    import splat.scene
    from splat.train.trainer import Trainer

    def broken(*args, **kwargs):
        raise KeyError("an internal invariant broke")

    monkeypatch.setattr(splat.scene, "gaussians_to_original", broken)  # a bug while building the scene
    rc, _, err = run_cli(
        "render", trained_run, "--frames", "1", "--width", "8", "--height", "8", "--out", tmp_path / "r"
    )
    assert_bug(rc, err, "an internal invariant broke")
    monkeypatch.undo()

    def out_of_memory(self, state):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(Trainer, "load_state_dict", out_of_memory)  # not "does not fit this run"
    rc, _, err = run_cli("train", "--resume", copy_of(trained_run, tmp_path), "--steps", "3")
    assert_bug(rc, err, "out of memory")


def test_checkpoints_that_do_not_fit_are_one_line(tmp_path, trained_run):
    import torch

    run = copy_of(trained_run, tmp_path)
    ckpt = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    good = torch.load(ckpt, weights_only=True)
    for name, edit in (
        ("means of the wrong shape", lambda s: s["params"].update(means=torch.zeros(5, 2))),
        ("shN of the wrong length", lambda s: s["params"].update(shN=torch.zeros(3, 15, 3))),
        ("normalization without a scale", lambda s: s.update(normalization={"center": [0, 0, 0]})),
        ("optimizer of another parameter", lambda s: s["optimizers"].pop("means")),
        ("step as text", lambda s: s.update(step="abc")),
    ):
        state = {**good, "params": dict(good["params"]), "optimizers": dict(good["optimizers"])}
        edit(state)
        torch.save(state, ckpt)
        for command in (["train", "--resume", run, "--steps", "5"], ["export", run, "--out", tmp_path / "x.ply"]):
            if command[0] == "export" and name in ("optimizer of another parameter", "step as text"):
                continue  # export reads the Gaussians only
            rc, _, err = run_cli(*command)
            assert rc == 2, (name, command[0], err)
            assert_one_line_error(rc, err, ckpt)


def test_run_config_without_steps_is_one_line(tmp_path, trained_run):
    import json

    run = copy_of(trained_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    for edit in (lambda c: c.pop("steps"), lambda c: c.update(steps="many"), lambda c: c.pop("eval_steps")):
        broken = json.loads(json.dumps(config))
        edit(broken["config"])
        (run / "config.json").write_text(json.dumps(broken))
        rc, _, err = run_cli("train", "--resume", run, "--steps", "5")
        assert_one_line_error(rc, err, run / "config.json", "steps")


def test_distributed_checkpoint_world_size(tmp_path, trained_run):
    import json
    import shutil

    run = copy_of(trained_run, tmp_path)
    ckpt = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    folder = run / "checkpoints" / "step_9000000"
    folder.mkdir()
    shutil.copy(ckpt, folder / "rank_0.pt")
    for info in ({"step": 9000000}, {"step": 9000000, "world_size": 0}, {"world_size": "2"}, {"world_size": 10**9}):
        (folder / "complete.json").write_text(json.dumps(info))
        rc, _, err = run_cli("export", run, "--out", tmp_path / "x.ply")
        assert_one_line_error(rc, err, folder / "complete.json", "world_size")
    (folder / "complete.json").write_text(json.dumps({"world_size": 2}))  # rank_1.pt is missing
    rc, _, err = run_cli("export", run, "--out", tmp_path / "x.ply")
    assert_one_line_error(rc, err, folder / "rank_1.pt")


def test_only_transport_errors_count_as_a_lost_peer():
    import torch
    import torch.distributed as dist

    from splat.distributed import is_peer_failure

    gloo = "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer"
    assert is_peer_failure(RuntimeError(gloo))
    assert is_peer_failure(dist.DistBackendError("NCCL communicator was aborted"))
    for bug in (
        RuntimeError("nccl: the splat kernel's launch configuration is wrong"),
        RuntimeError("the viewer's render timed out"),
        torch.OutOfMemoryError("CUDA out of memory (nccl buffers)"),
        ValueError("Connection closed by peer"),
    ):
        assert not is_peer_failure(bug), bug


# ----------------------------------------------------------------------------------------------
# 8. durability: flushed writes, and a damaged newest checkpoint does not block --resume


def test_atomic_writes_are_flushed_before_and_after_the_rename(tmp_path, monkeypatch):
    import os

    from splat.io_utils import atomic_path

    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os, "fsync", lambda fd: (calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))
    )
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(("rename", str(b))), real_replace(a, b)))
    target = tmp_path / "out.json"
    with atomic_path(target) as tmp:
        tmp.write_text("{}")
    kinds = [k for k, _ in calls]
    assert kinds == ["fsync", "rename", "fsync"], calls
    assert calls[0][1].startswith(str(tmp_path / ".out.json.")) and calls[2][1] == str(tmp_path)


def test_a_truncated_newest_checkpoint_gives_way_to_the_previous_one(tmp_path, blender_scene):
    run = tmp_path / "run"
    rc, _, err = run_cli(
        "train", blender_scene, "--out", run, "--steps", "4", "--checkpoint-every", "2",
        "--init-points", "200", "--sh-degree", "0", "--eval-every", "1000",
    )  # fmt: skip
    assert rc == 0, err
    newest = run / "checkpoints" / "step_0000004.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a power loss in the middle of the write
    rc, out, err = run_cli("export", run, "--out", tmp_path / "x.ply")
    assert rc == 0 and "step_0000004.pt" in err and "step_0000002.pt" in err, err
    assert newest.exists()  # readers change nothing
    rc, out, err = run_cli("train", "--resume", run, "--steps", "6")
    assert rc == 0 and "resuming" in out and "at step 2" in out, err
    assert (run / "checkpoints" / "damaged-step_0000004.pt").exists()
    assert [p.name for p in sorted((run / "checkpoints").glob("step_*.pt"))][-1] == "step_0000006.pt"
    for name in ("step_0000002.pt", "step_0000004.pt", "step_0000006.pt"):
        (run / "checkpoints" / name).unlink(missing_ok=True)
    (run / "checkpoints" / "damaged-step_0000004.pt").rename(run / "checkpoints" / "step_0000004.pt")
    rc, _, err = run_cli("export", run)  # nothing readable left: the damage is named
    assert_one_line_error(rc, err, "step_0000004.pt", "unreadable")
