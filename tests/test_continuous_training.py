"""Continuous control end to end: real workers on Pendulum-v1 and MuJoCo, checkpoints that
resume, play with video and export."""
import glob
import os

import pytest

from conftest import only_run
from Utils.checkpoint import load_checkpoint


@pytest.mark.parametrize("algo", ["acer", "a3c"])
def test_pendulum_trains_resumes_plays_with_video_and_exports(tmp_path, main_cli, algo):
    result = main_cli(["--do_train", "--algo", algo, "--env_name", "Pendulum-v1", "--n_workers", "2",
                       "--total_steps", "2000", "--interval", "20"], tmp_path)
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path / "Models")
    state = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    assert state["network_kind"] == {"acer": "acer_mlp_sdn", "a3c": "a3c_mlp_gaussian"}[algo]
    assert state["action_low"] == [-2.0] and state["action_high"] == [2.0] and state["n_actions"] == 1
    config = state["config"]
    assert config["reward_scale"] == 0.1                        # from the <algo>_continuous section
    assert config["lr"] == (3e-4 if algo == "acer" else 2e-4)
    if algo == "a3c":
        assert config["recurrent"] is False and config["t_max"] == 10 and config["gamma"] == 0.9
    else:
        assert config["policy_std"] == 0.3 and config["sdn_samples"] == 5 and "average_model" in state
    counters = state["counters"]
    assert counters["global_steps"] >= 2000 and sum(counters["worker_skipped_updates"]) == 0
    assert counters["optimizer_steps"] == sum(counters["worker_updates"]) > 0
    assert all(u > 0 for u in counters["worker_updates"])

    result = main_cli(["--do_train", "--resume", "--total_steps", "3000", "--interval", "20"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert only_run(tmp_path / "Models") == run
    resumed = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    assert resumed["counters"]["global_steps"] >= 3000 and resumed["action_low"] == [-2.0]

    result = main_cli(["--env_name", "Pendulum-v1", "--episodes", "2"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Game 2/2: score" in result.stdout and "Mean score over 2 games" in result.stdout
    videos = glob.glob(str(tmp_path / "Vid" / "Pendulum-v1_*"))
    assert sorted(os.path.splitext(v)[1] for v in videos) == [".gif", ".mp4"]
    assert all(os.path.getsize(v) > 10_000 for v in videos)

    out = tmp_path / "pendulum.pth"
    result = main_cli(["--env_name", "Pendulum-v1", "--export", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    exported = load_checkpoint(str(out))
    assert exported["action_low"] == [-2.0] and "optimizer" not in exported
    result = main_cli(["--env_name", "Pendulum-v1", "--weights", str(out), "--episodes", "1",
                       "--greedy", "--no_video"], tmp_path)
    assert result.returncode == 0, result.stderr and "Game 1/1: score" in result.stdout


def test_continuous_weights_refuse_another_environment(tmp_path, main_cli):
    result = main_cli(["--do_train", "--algo", "a3c", "--env_name", "Pendulum-v1", "--n_workers", "1",
                       "--total_steps", "200"], tmp_path)
    assert result.returncode == 0, result.stderr
    weights = os.path.join(only_run(tmp_path / "Models"), "checkpoint.pth")
    result = main_cli(["--env_name", "MountainCarContinuous-v0", "--weights", weights, "--no_video"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: these weights were trained on Pendulum-v1, not MountainCarContinuous-v0"


@pytest.mark.parametrize("algo", ["acer", "a3c"])
def test_mujoco_trains_and_plays_with_video(tmp_path, main_cli, algo):
    # Hopper-v5: a MuJoCo task whose untrained games end in a few dozen steps (it falls), so
    # the video is short; HalfCheetah-v5's simulator state is tested in test_resume.py
    result = main_cli(["--do_train", "--algo", algo, "--env_name", "Hopper-v5", "--n_workers", "2",
                       "--total_steps", "1000", "--interval", "20"], tmp_path)
    assert result.returncode == 0, result.stderr
    state = load_checkpoint(os.path.join(only_run(tmp_path / "Models"), "checkpoint.pth"))
    assert state["n_actions"] == 3 and state["obs_shape"] == [11]
    assert state["counters"]["optimizer_steps"] == sum(state["counters"]["worker_updates"]) > 0
    result = main_cli(["--env_name", "Hopper-v5", "--episodes", "1"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Game 1/1: score" in result.stdout and "Video of game 1" in result.stdout
    videos = glob.glob(str(tmp_path / "Vid" / "Hopper-v5_*"))
    assert len(videos) == 2 and all(os.path.getsize(v) > 10_000 for v in videos)
