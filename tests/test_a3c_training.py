"""A3C end to end: real workers on real games, checkpoints that resume and play."""
import os

import pytest

from conftest import only_run
from Utils.checkpoint import load_checkpoint


@pytest.mark.parametrize("variant", ["recurrent", "feed_forward"])
def test_pong_a3c_trains_resumes_and_plays(tmp_path, main_cli, variant):
    flags = [] if variant == "recurrent" else ["--no_recurrent"]
    result = main_cli(["--do_train", "--algo", "a3c", "--env_name", "PongNoFrameskip-v4",
                       "--n_workers", "2", "--total_steps", "2000", "--interval", "20", *flags],
                      tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Replay len" not in result.stdout and "steps/s" in result.stdout
    run = only_run(tmp_path / "Models")
    state = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    assert state["algo"] == "a3c" and "average_model" not in state
    assert state["network_kind"] == ("a3c_cnn_lstm" if variant == "recurrent" else "a3c_cnn_ff")
    assert state["config"]["entropy_coef"] == 0.01 and state["config"]["lr"] == 1e-4
    counters = state["counters"]
    assert counters["global_steps"] >= 2000
    # rollouts: 80 // 2 = 40 steps (recurrent) or t_max = 5 (feed-forward), one update each
    rollout = 40 if variant == "recurrent" else 5
    assert counters["optimizer_steps"] == sum(counters["worker_updates"]) == sum(counters["worker_iterations"])
    assert all(s == i * rollout for s, i in zip(counters["worker_steps"], counters["worker_iterations"]))
    worker_state = load_checkpoint(os.path.join(run, "worker_0.pth"))
    if variant == "recurrent":
        h, c = worker_state["agent"]["hidden"]
        assert h.shape == c.shape == (1, 256)

    result = main_cli(["--do_train", "--resume", "--total_steps", "3000", "--interval", "20"],
                      tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert only_run(tmp_path / "Models") == run
    resumed = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    assert resumed["counters"]["global_steps"] >= 3000
    assert resumed["config"]["recurrent"] == (variant == "recurrent")   # kept from the run
    assert resumed["counters"]["optimizer_steps"] == sum(resumed["counters"]["worker_updates"])

    result = main_cli(["--episodes", "1", "--no_video"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Game 1/1: score" in result.stdout and "Mean score over 1 games" in result.stdout


def test_cartpole_a3c_shared_optimizer_counts_every_worker_update(tmp_path, main_cli):
    result = main_cli(["--do_train", "--algo", "a3c", "--env_name", "CartPole-v1", "--n_workers", "2",
                       "--total_steps", "8000", "--interval", "50", "--seed", "3"], tmp_path)
    assert result.returncode == 0, result.stderr
    counters = load_checkpoint(os.path.join(only_run(tmp_path / "Models"), "checkpoint.pth"))["counters"]
    # both workers pushed updates (how the 8,000 steps split between them depends on how the
    # OS schedules them), one per 40-step rollout in all (a worker may stop inside one)
    assert all(n >= 1 for n in counters["worker_updates"])
    assert sum(counters["worker_updates"]) >= 8000 // 40 - 2
    assert sum(counters["worker_skipped_updates"]) == 0
    assert counters["optimizer_steps"] == sum(counters["worker_updates"])


def test_resume_refuses_a_run_of_the_other_algorithm(tmp_path, main_cli):
    result = main_cli(["--do_train", "--algo", "a3c", "--env_name", "CartPole-v1", "--n_workers", "1",
                       "--total_steps", "200"], tmp_path)
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path / "Models")
    before = open(os.path.join(run, "checkpoint.pth"), "rb").read()
    result = main_cli(["--do_train", "--resume", run, "--algo", "acer"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --resume: {run} is an a3c run, not acer"
    result = main_cli(["--do_train", "--resume", "--algo", "acer", "--env_name", "CartPole-v1"], tmp_path)
    assert result.returncode == 2 and "no run with a checkpoint" in result.stderr
    assert open(os.path.join(run, "checkpoint.pth"), "rb").read() == before
