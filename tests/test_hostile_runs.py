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
