"""Fast unit tests of pieces the end-to-end tests only reach through a run: the config (round
trip, every range error), the parameter store, the logger's running averages and CSV, play's
scoring and seeding, and the Ray helpers that need no cluster."""
import csv
import dataclasses
import os

import numpy as np
import pytest
import torch
import yaml

from Agent.interface import N_COUNTERS, SKIPPED, UPDATES, apply_gradients

from Agent.runtime.parameters import SharedParameters
from NN.networks import acer_network
from Utils.network_spec import NetworkSpec
from NN.shared_adam import SharedAdam
from Utils.checkpoint import load_checkpoint
from Agent.algorithms import check_config
from Utils.config import Config, ConfigError, load_config, save_config
from Utils.logger import RunLogger, running_average
from Utils.play import play

from conftest import ROOT

YAML = os.path.join(ROOT, "training_configs.yml")


# -- config --
def test_config_round_trips_through_its_yaml(tmp_path):
    cfg = load_config(YAML, "acer", {"lr": "3e-4", "n_workers": "3", "trust_region": "no",
                                     "precision": "bf16"})
    save_config(cfg, str(tmp_path / "config.yml"))
    saved = yaml.safe_load(open(tmp_path / "config.yml"))
    assert Config(**saved) == cfg and saved["lr"] == 3e-4 and saved["trust_region"] is False


RANGE_ERRORS = [
    ("algo", "ppo", "--algo must be one of acer, a3c"), ("backend", "mpi", "--backend must be one of"),
    ("precision", "fp16", "--precision must be one of fp32, bf16"), ("n_workers", 0, "--n_workers"),
    ("interval", -1, "--interval must be >= 0"), ("checkpoint_minutes", 0, "--checkpoint_minutes"),
    ("total_steps", -1, "--total_steps"), ("max_episodes", -1, "--max_episodes"),
    ("max_bad_updates", -1, "--max_bad_updates"), ("lr", 0, "--lr"), ("adam_eps", 0, "--adam_eps"),
    ("entropy_coef", -1, "--entropy_coef"), ("gamma", 1.5, "--gamma"), ("k", 0, "--k"),
    ("c", 0, "--c must"), ("delta", 0, "--delta"), ("replay_ratio", -1, "--replay_ratio"),
    ("polyak", 0, "--polyak"), ("critic_coef", -1, "--critic_coef"),
    ("max_grad_norm", 0, "--max_grad_norm"), ("frame_stack", 0, "--frame_stack"),
    ("mlp_hidden", 0, "--mlp_hidden"), ("total_update_period", 0, "--total_update_period"),
    ("t_max", 0, "--t_max"), ("hidden_size", 0, "--hidden_size"),
    ("reward_scale", 0, "--reward_scale"), ("policy_std", 0, "--policy_std"),
    ("sdn_samples", 0, "--sdn_samples"),
]


@pytest.mark.parametrize("key,value,message", RANGE_ERRORS, ids=[r[0] for r in RANGE_ERRORS])
def test_every_range_error(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("-", r"\-").replace("+", r"\+")):
        dataclasses.replace(Config(), **{key: value}).validate()


def test_a3c_refuses_bf16_and_empty_rollouts():
    with pytest.raises(ConfigError, match="--precision bf16 is for --algo acer only"):
        check_config(Config(algo="a3c", precision="bf16"))
    with pytest.raises(ConfigError, match="each worker's rollout would be empty"):
        check_config(Config(algo="a3c", n_workers=8, total_update_period=4))


# -- the parameter store --
def test_shared_parameters_pull_step_and_polyak():
    torch.manual_seed(0)
    global_net = acer_network(NetworkSpec.of((4,), 2, {"mlp_hidden": 8}))
    average_net = acer_network(NetworkSpec.of((4,), 2, {"mlp_hidden": 8}))
    local_net = acer_network(NetworkSpec.of((4,), 2, {"mlp_hidden": 8}))
    store = SharedParameters(global_net, average_net, SharedAdam(global_net.parameters(), lr=0.1), 0.25)
    local = list(local_net.parameters())
    store.pull(local)
    assert all(torch.equal(a, b) for a, b in zip(local, global_net.parameters()))
    before_avg = [p.detach().clone() for p in average_net.parameters()]
    grads = [torch.ones_like(p) for p in local]
    assert store.step(grads) == 1
    for g, l in zip(global_net.parameters(), local):   # Adam's first step moves each weight by lr
        torch.testing.assert_close(g, l - 0.1, atol=1e-5, rtol=0)
    for a, old, g in zip(average_net.parameters(), before_avg, global_net.parameters()):
        torch.testing.assert_close(a, 0.25 * g + 0.75 * old)


def test_apply_gradients_skips_and_counts_a_non_finite_loss():
    net = acer_network(NetworkSpec.of((4,), 2, {"mlp_hidden": 8}))
    adam = SharedAdam(net.parameters())
    counters = torch.zeros(1, N_COUNTERS, dtype=torch.int64)
    params = list(net.parameters())
    before = [p.detach().clone() for p in params]
    logits, _ = net(torch.ones(1, 4))
    assert apply_gradients(logits.sum() * float("inf"), params, adam, 40.0, counters, 0) is None
    assert counters[0, SKIPPED] == 1 and counters[0, UPDATES] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, params))


# -- the logger --
def test_running_average_and_episode_csv(tmp_path):
    assert running_average(None, 5.0) == 5.0 and running_average(5.0, 15.0) == pytest.approx(5.1)
    logger = RunLogger(str(tmp_path), interval=2)
    for i, reward in enumerate([-21.0, -19.0, -20.0]):
        logger.episode(i % 2, reward, 800 + i, 1000 * (i + 1))
    assert logger.iteration({"entropy": 1.0}) is False and logger.iteration({"entropy": 0.0}) is True
    assert logger.running["entropy"] == pytest.approx(0.99)
    state = logger.state()
    logger.close()
    rows = list(csv.DictReader(open(tmp_path / "episodes.csv")))
    expected = running_average(running_average(-21.0, -19.0), -20.0)
    assert [r["reward"] for r in rows] == ["-21.0", "-19.0", "-20.0"]
    assert float(rows[-1]["running_reward"]) == round(expected, 4)
    assert state["episodes"] == 3 and state["running_reward"] == expected and state["max_reward"] == -19.0


def test_a_resumed_run_reports_its_last_game_not_nan(tmp_path, capsys):
    logger = RunLogger(str(tmp_path / "a"), interval=1)
    logger.episode(0, -17.0, 1700, 1000)
    state = logger.state()
    logger.close()
    resumed = RunLogger(str(tmp_path / "b"), interval=1, start=state)
    resumed.report(2000, None)
    older = {k: v for k, v in state.items() if k != "last_game"}   # a checkpoint before it was kept
    old_resumed = RunLogger(str(tmp_path / "c"), interval=1, start=older)
    old_resumed.report(2000, None)
    for run in (resumed, old_resumed):
        run.close()
    first, second = capsys.readouterr().out.strip().splitlines()
    assert "Ep reward: -17.0" in first and "Ep len: 1700" in first
    assert "no game finished since the resume" in second and "Running reward: -17.00" in second
    assert "nan" not in first + second


# -- play --
def test_play_scores_are_raw_and_seeded():
    state = load_checkpoint(os.path.join(ROOT, "Pre-Trained Weights", "CartPole_acer.pth"))
    first = play(state, "CartPole-v1", episodes=2, seed=5, verbose=False, build_network=acer_network)
    again = play(state, "CartPole-v1", episodes=2, seed=5, verbose=False, build_network=acer_network)
    assert list(first) == list(again) and first.truncated == again.truncated
    assert all(s == 500.0 for s, t in zip(first, first.truncated) if t)   # the 500-step limit
    greedy = play(state, "CartPole-v1", episodes=1, seed=5, greedy=True, verbose=False,
                  build_network=acer_network)
    assert list(greedy) == [500.0] and greedy.truncated == [True]


# -- Ray helpers (no cluster) --
def test_ray_helpers_round_trip():
    pytest.importorskip("ray")
    from Agent.backends.transport import flatten, numpy_adam, numpy_state, torch_adam, torch_state, unflatten_into
    net = acer_network(NetworkSpec.of((4,), 3, {"mlp_hidden": 8}))
    vector = flatten(net.parameters())
    assert vector.dtype == np.float32 and vector.size == sum(p.numel() for p in net.parameters())
    other = acer_network(NetworkSpec.of((4,), 3, {"mlp_hidden": 8}))
    unflatten_into(vector, list(other.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), other.parameters()))
    state = torch_state(numpy_state(net.state_dict()))
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    adam = SharedAdam(net.parameters())
    adam.step([torch.ones_like(p) for p in net.parameters()])
    back = torch_adam(numpy_adam(adam.state_dict()))
    assert back["step"] == 1
    assert all(torch.equal(a, b) for a, b in zip(back["exp_avg"], adam.state_dict()["exp_avg"]))


def test_replay_stats_and_updates_csv(tmp_path):
    from Agent.acer.agent import replay_stats
    from Utils.logger import UPDATE_FIELDS, RunLogger
    assert replay_stats([]) == {}
    stats = replay_stats([{"value_loss": 1.0, "age_steps": 20}, {"value_loss": 3.0, "age_steps": 60}])
    assert stats == {"replay_value_loss": 2.0, "replay_age_steps": 40.0}
    logger = RunLogger(str(tmp_path), interval=2)
    logger.iteration({"entropy": 1.0, **stats})
    assert logger.iteration({"entropy": 2.0, "replay_age_steps": 140.0})  # a report is due
    logger.report(global_step=80, replay_len=4)
    logger.close()
    with open(tmp_path / "updates.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == UPDATE_FIELDS and len(rows) == 1
    assert float(rows[0]["entropy"]) == pytest.approx(0.99 * 1.0 + 0.01 * 2.0)
    assert float(rows[0]["replay_age_steps"]) == pytest.approx(0.99 * 40 + 0.01 * 140)
    assert rows[0]["pg_loss"] == "" and rows[0]["global_step"] == "80"
