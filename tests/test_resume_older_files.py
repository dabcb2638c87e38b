"""Runs written by an earlier version of the code still resume exactly.

``tests/data/runs_f7f7f20/`` holds two CartPole runs written by main at f7f7f20 (before the
packages were regrouped): ACER with 2 workers and ``--save_replay`` (a 2,000-transition
replay), and recurrent A3C with 2 workers (small widths), each stopped at its 400-step
budget with its checkpoint and the workers' own states. Today's code must continue them from
there: the checkpoint's weights, Adam state and counters, and each worker's environment,
RNGs and agent state (ACER's replay, A3C's LSTM state), not a fresh start.
"""
import os
import shutil

import pytest

from Utils.checkpoint import load_checkpoint
from conftest import ROOT, run_main

DATA = os.path.join(ROOT, "tests", "data", "runs_f7f7f20")


def copy_run(tmp_path, name: str) -> str:
    run = str(tmp_path / "Models" / name)
    shutil.copytree(os.path.join(DATA, name), run)
    return run


def worker_iteration(run: str, i: int) -> int:
    return int(load_checkpoint(os.path.join(run, f"worker_{i}.pth"))["iteration"])


@pytest.mark.parametrize("name", ["cartpole_acer_f7f7f20", "cartpole_a3c_f7f7f20"])
def test_a_run_written_by_the_earlier_code_resumes_exactly(tmp_path, name):
    run = copy_run(tmp_path, name)
    before = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    saved_iterations = before["counters"]["worker_iterations"]
    assert [worker_iteration(run, i) for i in range(2)] == saved_iterations
    replay_before = None
    if before["algo"] == "acer":
        replay_before = load_checkpoint(os.path.join(run, "worker_0.pth"))["agent"]["replay"]
    result = run_main(["--do_train", "--resume", run, "--total_steps", "800",
                       "--models_dir", str(tmp_path / "Models"), "--logs_dir", str(tmp_path / "Logs")],
                      cwd=str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming {run} from step {before['counters']['global_steps']:,}" in result.stdout
    assert "starts afresh" not in result.stderr, result.stderr   # every worker state was used
    after = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    assert after["counters"]["global_steps"] >= 800
    assert after["optimizer"]["step"] > before["optimizer"]["step"]
    # the workers went on from their saved iteration counts, not from 0 (one that started late
    # on a loaded machine may find the budget spent by the other)
    iterations = after["counters"]["worker_iterations"]
    assert all(a >= b for a, b in zip(iterations, saved_iterations)) and sum(iterations) > sum(saved_iterations)
    if replay_before is not None:   # ACER: the saved replay was continued, not emptied
        replay_after = load_checkpoint(os.path.join(run, "worker_0.pth"))["agent"]["replay"]
        new_steps = (after["counters"]["worker_steps"][0] - before["counters"]["worker_steps"][0])
        assert replay_after["n_transitions"] == replay_before["n_transitions"] + new_steps
        kept = int(replay_before["n_transitions"])
        assert (replay_after["actions"][:kept] == replay_before["actions"][:kept]).all()
