"""Resume after Ctrl-C: same run folder, counters kept, TensorBoard curves continued."""
import csv
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT
from Utils.checkpoint import load_checkpoint
from Utils.precision import native_bf16


def scalar_steps(log_dir, tag):
    steps = []
    for path in sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))):
        acc = EventAccumulator(path)
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            steps += [e.step for e in acc.Scalars(tag)]
    return steps


def test_ctrl_c_then_resume_continues_counters_and_curves(tmp_path, main_cli):
    args = ["--do_train", "--env_name", "CartPole-v1", "--n_workers", "2", "--interval", "20"]
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), *args,
                             "--entropy_coef", "0.005", "--lr", "3e-4"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not glob.glob(str(tmp_path / "Models" / "*" / "checkpoint.pth")):
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    (run,) = glob.glob(str(tmp_path / "Models" / "*"))
    first = load_checkpoint(os.path.join(run, "checkpoint.pth"))["counters"]
    log_dir = tmp_path / "Logs" / os.path.basename(run)
    episodes_before = scalar_steps(log_dir, "Running Reward")
    iterations_before = scalar_steps(log_dir, "Running PG Loss")
    assert first["global_steps"] > 0 and episodes_before and iterations_before

    result = main_cli(args + ["--resume", "--total_steps", str(first["global_steps"] + 2000),
                              "--lr", "2e-4"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resume: lr 0.0003 -> 2e-4" in result.stdout
    config = load_checkpoint(os.path.join(run, "checkpoint.pth"))["config"]
    assert config["entropy_coef"] == 0.005 and config["lr"] == 2e-4  # saved config, then the flag
    assert glob.glob(str(tmp_path / "Models" / "*")) == [run]          # same run folder
    second = load_checkpoint(os.path.join(run, "checkpoint.pth"))["counters"]
    assert second["global_steps"] >= first["global_steps"] + 2000
    assert all(b >= a for a, b in zip(first["worker_episodes"], second["worker_episodes"]))
    assert second["optimizer_steps"] == sum(second["worker_updates"]) > first["optimizer_steps"]
    episodes_after = scalar_steps(log_dir, "Running Reward")
    iterations_after = scalar_steps(log_dir, "Running PG Loss")
    # the curves continue on the same axis: new points come after the old ones, none restart at 1
    new_episodes = episodes_after[len(episodes_before):]
    new_iterations = iterations_after[len(iterations_before):]
    assert new_episodes and min(new_episodes) == max(episodes_before) + 1
    assert new_iterations and min(new_iterations) > max(iterations_before)
    assert sorted(episodes_after) == list(range(1, len(episodes_after) + 1))
    # training time continues too: the CSV's wall_time never restarts after the resume
    with open(log_dir / "episodes.csv") as fh:
        rows = list(csv.DictReader(fh))
    wall = [float(r["wall_time"]) for r in rows]
    assert len(rows) == len(episodes_after) and wall == sorted(wall)
    assert load_checkpoint(os.path.join(run, "checkpoint.pth"))["logger"]["train_seconds"] >= wall[-1]


@pytest.mark.parametrize("algo,env_name,extra", [
    ("acer", "CartPole-v1", []), ("a3c", "CartPole-v1", []),
    ("acer", "Pendulum-v1", []), ("a3c", "Pendulum-v1", []),
    ("acer", "HalfCheetah-v5", []),
    # the bf16 learner on a real Atari game (bit-identical on the same machine)
    pytest.param("acer", "PongNoFrameskip-v4", ["--precision", "bf16", "--total_memory_size", "4000"],
                 marks=pytest.mark.skipif(not native_bf16(), reason="no native bfloat16"),
                 id="acer-PongNoFrameskip-v4-bf16"),
])
def test_exact_resume_is_bit_identical(tmp_path, main_cli, algo, env_name, extra):
    """1 worker, fixed seed: N steps straight == N/2, stop, resume to N (ACER with
    --save_replay; A3C carries its LSTM state over; MuJoCo's simulator state is restored)."""
    common = ["--do_train", "--env_name", env_name, "--n_workers", "1", "--seed", "7",
              "--interval", "1000", "--lr", "1e-3", "--algo", algo, *extra]
    common += ["--save_replay"] if algo == "acer" else ["--total_update_period", "20"]
    total = 800 if env_name.startswith("Pong") else 3000   # Pong: 40 iterations, about 200 updates
    straight = main_cli(common + ["--total_steps", str(total), "--models_dir", "A", "--logs_dir", "LA"],
                        tmp_path)
    assert straight.returncode == 0, straight.stderr
    half = main_cli(common + ["--total_steps", str(total // 2), "--models_dir", "B", "--logs_dir", "LB"],
                    tmp_path)
    assert half.returncode == 0, half.stderr
    rest = main_cli(common + ["--total_steps", str(total), "--models_dir", "B", "--logs_dir", "LB",
                              "--resume"], tmp_path)
    assert rest.returncode == 0, rest.stderr
    (a,) = glob.glob(str(tmp_path / "A" / "*" / "checkpoint.pth"))
    (b,) = glob.glob(str(tmp_path / "B" / "*" / "checkpoint.pth"))
    a, b = load_checkpoint(a), load_checkpoint(b)
    assert a["counters"] == b["counters"] and a["counters"]["optimizer_steps"] > 140
    for key in ("model", "average_model") if algo == "acer" else ("model",):
        assert all(torch.equal(a[key][name], b[key][name]) for name in a[key])
    assert a["optimizer"]["step"] == b["optimizer"]["step"]
    for moment in ("exp_avg", "exp_avg_sq"):
        assert all(torch.equal(x, y) for x, y in zip(a["optimizer"][moment], b["optimizer"][moment]))


def _ray_missing() -> bool:
    import importlib.util
    return importlib.util.find_spec("ray") is None


@pytest.mark.parametrize("backend", [
    "local",
    pytest.param("ray", marks=pytest.mark.skipif(
        _ray_missing(), reason="Ray is optional: pip install -r requirements-ray.txt")),
])
def test_resume_with_a_damaged_worker_state_starts_that_worker_afresh(tmp_path, main_cli,
                                                                      monkeypatch, backend):
    """The documented rule (Agent.runtime.state.worker_resume_state; docs/commands.md, "After a crash"), the
    same on both backends: an unreadable worker_<i>.pth gives one warning naming it, that worker starts
    afresh, the run goes on to its budget and the worker writes a good file when it stops."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    common = ["--do_train", "--backend", backend, "--env_name", "CartPole-v1", "--n_workers", "1",
              "--seed", "3", "--interval", "10"]
    first = main_cli(common + ["--total_steps", "200"], tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr
    (run,) = glob.glob(str(tmp_path / "Models" / "*"))
    state_file = os.path.join(run, "worker_0.pth")
    before = load_checkpoint(os.path.join(run, "checkpoint.pth"))["counters"]
    assert load_checkpoint(state_file)["iteration"] == before["worker_iterations"][0] > 0
    with open(state_file, "r+b") as fh:                      # damaged: cut in the middle
        fh.truncate(os.path.getsize(state_file) // 2)

    resumed = main_cli(common + ["--resume", run, "--total_steps", "400"], tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if "worker_0.pth" in line]
    assert warnings == [f"warning: worker 0: {state_file} is not a readable checkpoint (not a "
                        "PyTorch zip archive); the worker starts afresh (new seed and "
                        "environment, empty replay)"], resumed.stderr
    after = load_checkpoint(os.path.join(run, "checkpoint.pth"))["counters"]
    assert after["global_steps"] >= 400 and after["worker_iterations"][0] > before["worker_iterations"][0]
    assert after["optimizer_steps"] == sum(after["worker_updates"]) > before["optimizer_steps"]
    assert load_checkpoint(state_file)["iteration"] == after["worker_iterations"][0]   # whole again
