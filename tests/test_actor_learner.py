"""The Ray backend's actor-learner mode (``--backend ray --ray_mode actor_learner``).

Without Ray: the learner's update on an actor's rollout is ``ACERAgent.update`` on the same
trajectory (bit-identical weights, average weights and Adam moments), its replay rebuilds the
actor's trajectories (frame stacks included), a restarted actor's cut episode is stored as a
truncation, and the combinations the mode refuses get a one-line error.
With Ray (a loopback cluster of two nodes, one CPU each, shared by the tests): a CartPole run
through the real command line that resumes on the local backend and plays, an actor
killed mid-run that is restarted, a learner that raises mid-run (the run stops, exit 1, the last
checkpoint byte for byte as it was) and an actor that hangs (the run stops after
``--stall_minutes``, naming it). Slow (``-m slow``): CartPole to 475 on the same cluster, then
resumed in the Hogwild mode."""
import copy
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch

from Agent.backends.actor_learner import Learner, RolloutActor, pull_due
from Agent.backends.ray_hogwild import flatten
from Agent.acer.agent import ACERAgent
from Agent.acer.algorithm import ACER
from Agent.interface import ITERATIONS, N_COUNTERS, STEPS, UPDATES
from Agent.runtime.messages import Iteration
from Agent.runtime.parameters import SharedParameters
from Agent.acer.replay import ReplayMemory
from NN.networks import acer_network
from Utils.network_spec import NetworkSpec
from NN.shared_adam import SharedAdam
from Utils.atari_wrappers import make_env
from Utils.checkpoint import load_checkpoint
from Agent.algorithms import check_config
from Utils.config import Config, ConfigError

from conftest import ROOT, only_run


def shared_state(cfg, obs_shape, n_actions, seed=0):
    torch.manual_seed(seed)
    net = acer_network(NetworkSpec.of(obs_shape, n_actions, cfg.to_dict()))
    average = acer_network(NetworkSpec.of(obs_shape, n_actions, cfg.to_dict()))
    average.load_state_dict(net.state_dict())
    adam = SharedAdam(net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    counters = torch.zeros(cfg.n_workers, N_COUNTERS, dtype=torch.int64)
    return net, average, adam, counters


@pytest.mark.parametrize("env_name,k", [("CartPole-v1", 20), ("PongNoFrameskip-v4", 5)])
def test_the_learners_update_on_a_rollout_is_acer_agents_update_on_that_trajectory(env_name, k):
    cfg = Config(env_name=env_name, n_workers=2, k=k, total_memory_size=2 * k * 8,
                 replay_ratio=0.0, seed=3)
    env = make_env(env_name, training=True, frame_stack=cfg.frame_stack)
    obs_shape, n_actions = env.observation_space.shape, int(env.action_space.n)
    net, average, adam, counters = shared_state(cfg, obs_shape, n_actions)
    ref_net, ref_average = copy.deepcopy(net), copy.deepcopy(average)
    ref_adam = SharedAdam(ref_net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    ref_counters = counters.clone()
    learner = Learner(cfg, ACER, NetworkSpec.of(obs_shape, n_actions, cfg), net, average, adam, counters)
    reference = ACERAgent(cfg, SharedParameters(ref_net, ref_average, ref_adam, cfg.polyak),
                          ref_counters, 1, env, np.random.default_rng(0))
    env.close()
    actor = RolloutActor(ACER, 1, cfg, obs_shape, n_actions, counters.numpy().copy(), None,
                         flatten(net.parameters()), 0)
    for n in range(3):
        message = actor.rollout(None, None, counters.numpy().copy())
        trajectory = actor.agent.replay.latest()     # what a local worker would learn from
        first = learner.ingest(message)[0]
        assert isinstance(first, Iteration) and first.worker_id == 1
        reference.update(trajectory)
        stored = learner.replay_learner.replays[1].trajectory(n)
        for key, value in trajectory.items():
            assert np.array_equal(stored[key], value), key
    assert message["rollout"]["frames"].shape == (k, *learner.replay_learner.replays[1].frame_shape)  # one frame per step
    for a, b in zip(list(net.parameters()) + list(average.parameters()),
                    list(ref_net.parameters()) + list(ref_average.parameters())):
        assert torch.equal(a, b)
    for a, b in zip(adam.exp_avg + adam.exp_avg_sq, ref_adam.exp_avg + ref_adam.exp_avg_sq):
        assert torch.equal(a, b)
    assert int(adam.step_count) == int(ref_adam.step_count) == 3
    assert counters[1, UPDATES] == ref_counters[1, UPDATES] == 3 and counters[0, UPDATES] == 0
    assert counters[1, ITERATIONS] == 3 and counters[1, STEPS] == 3 * k


def test_the_learner_makes_poisson_replayed_updates_from_that_actors_replay():
    cfg = Config(env_name="CartPole-v1", n_workers=1, k=10, total_memory_size=200, seed=4)
    env = make_env(cfg.env_name, training=True)
    obs_shape, n_actions = env.observation_space.shape, int(env.action_space.n)
    env.close()
    net, average, adam, counters = shared_state(cfg, obs_shape, n_actions)
    learner = Learner(cfg, ACER, NetworkSpec.of(obs_shape, n_actions, cfg), net, average, adam, counters)
    expected = copy.deepcopy(learner.rng)
    actor = RolloutActor(ACER, 0, cfg, obs_shape, n_actions, counters.numpy().copy(), None,
                         flatten(net.parameters()), 0)
    for _ in range(5):
        learner.ingest(actor.rollout(None, None, counters.numpy().copy()))
    draws = 0
    for n in range(5):
        count = expected.poisson(cfg.replay_ratio)
        draws += count
        for _ in range(count):
            expected.integers(0, n + 1)
    assert int(adam.step_count) == int(counters[0, UPDATES]) == 5 + draws == learner.updates


@pytest.mark.parametrize("env_name", ["CartPole-v1", "PongNoFrameskip-v4"])
def test_a_batched_loss_is_the_mean_of_the_trajectories_losses(env_name):
    # --learner_batch: one forward pass over B trajectories; the loss (and so its gradient) is
    # the mean of the B single-trajectory losses (to rounding: the batched convolutions sum in
    # another order).
    cfg = Config(env_name=env_name, n_workers=1, k=5, total_memory_size=200, seed=5)
    env = make_env(env_name, training=True, frame_stack=cfg.frame_stack)
    obs_shape, n_actions = env.observation_space.shape, int(env.action_space.n)
    net, average, adam, counters = shared_state(cfg, obs_shape, n_actions)
    with torch.no_grad():   # an average network apart from the policy: the trust region acts
        for p in average.parameters():
            p.add_(0.05 * torch.randn_like(p))
    agent = ACERAgent(cfg, SharedParameters(net, average, adam, cfg.polyak), counters, 0, env,
                      np.random.default_rng(0))
    env.close()
    actor = RolloutActor(ACER, 0, cfg, obs_shape, n_actions, counters.numpy().copy(), None,
                         flatten(net.parameters()), 0)
    trajectories = []
    for _ in range(3):
        actor.rollout(None, None, counters.numpy().copy())
        trajectory = actor.agent.replay.latest()
        trajectory["rewards"][::2] = -1.0     # advantages of both signs: the trust region binds
        trajectories.append(trajectory)
    agent.sync()
    params = agent.local_params

    def loss_and_grads(batch):
        loss, stats = agent.loss_batch(batch)
        return loss, torch.autograd.grad(loss, params), stats
    single = [loss_and_grads([t]) for t in trajectories]
    loss, grads, stats = loss_and_grads(trajectories)
    torch.testing.assert_close(loss, sum(s[0] for s in single) / 3)
    for g, *parts in zip(grads, *(s[1] for s in single)):
        torch.testing.assert_close(g, sum(parts) / 3)
    torch.testing.assert_close(stats["value_loss"], sum(s[2]["value_loss"] for s in single) / 3)
    assert 0 < float(stats["trust_region_active"]) < 1
    # ACERAgent.loss, which every update of one trajectory takes (update_batch of one too), is
    # the loss as written before batching, bit for bit
    for t, (loss_1, grads_1, _) in zip(trajectories, single):
        old_loss, new_loss = single_trajectory_loss(agent, t), agent.loss(t)[0]
        assert torch.equal(old_loss, new_loss)
        assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad(old_loss, params),
                                                     torch.autograd.grad(new_loss, params)))


def single_trajectory_loss(agent, trajectory):
    """ACERAgent.loss as it was before --learner_batch (one trajectory, no batch dimension)."""
    from Agent.acer.math import acer_loss
    cfg = agent.cfg
    states = agent.tensor(trajectory["states"])
    if agent.channels_last:
        states = states.contiguous(memory_format=torch.channels_last)
    logits, q = agent.local_net(states, bf16_trunk=agent.bf16)
    with torch.no_grad():
        average_logits, _ = agent.params.average_net(states[:-1], bf16_trunk=agent.bf16)
        bootstrap_value = (torch.softmax(logits[-1], -1) * q[-1]).sum()
        rewards = agent.rewards_with_truncations(
            trajectory, lambda: agent.values(agent.tensor(trajectory["final_states"])))
    loss, _ = acer_loss(logits[:-1], q[:-1], average_logits, agent.tensor(trajectory["actions"]),
                        rewards, agent.tensor(trajectory["dones"]), agent.tensor(trajectory["mus"]),
                        bootstrap_value, gamma=cfg.gamma, c=cfg.c, delta=cfg.delta,
                        entropy_coef=cfg.entropy_coef, critic_coef=cfg.critic_coef,
                        trust_region=cfg.trust_region)
    return loss


def test_the_learner_with_batch_2_makes_one_update_per_two_rollouts():
    cfg = Config(env_name="CartPole-v1", n_workers=2, k=10, total_memory_size=400, seed=6,
                 learner_batch=2)
    env = make_env(cfg.env_name, training=True)
    obs_shape, n_actions = env.observation_space.shape, int(env.action_space.n)
    net, average, adam, counters = shared_state(cfg, obs_shape, n_actions)
    ref_net, ref_average = copy.deepcopy(net), copy.deepcopy(average)
    ref_adam = SharedAdam(ref_net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    reference = ACERAgent(cfg, SharedParameters(ref_net, ref_average, ref_adam, cfg.polyak),
                          counters.clone(), 0, env, np.random.default_rng(0))
    env.close()
    learner = Learner(cfg, ACER, NetworkSpec.of(obs_shape, n_actions, cfg), net, average, adam, counters)
    rng = copy.deepcopy(learner.rng)
    actors = [RolloutActor(ACER, i, cfg, obs_shape, n_actions, counters.numpy().copy(), None,
                           flatten(net.parameters()), 0) for i in range(2)]
    for actor in actors + actors[:1]:       # rollouts from actor 0, 1, 0: one batch and a half
        message = actor.rollout(None, None, counters.numpy().copy())
        stats = learner.ingest(message)[0].stats
        if actor is actors[1]:              # the batch: on-policy, then Poisson(4) replayed
            reference.update_batch([actors[0].agent.replay.trajectory(0),
                                    actors[1].agent.replay.trajectory(0)])
            replayed = rng.poisson(cfg.replay_ratio)
            for _ in range(replayed):
                reference.update_batch([learner.replay_learner.replays[0].sample(rng), learner.replay_learner.replays[1].sample(rng)])
            assert "value_loss" in stats
        else:
            assert stats == {}                # waiting for the batch to fill
    assert replayed > 0
    assert int(adam.step_count) == learner.updates == 1 + replayed
    assert [i for i, _ in learner.waiting] == [0]
    assert counters[:, ITERATIONS].tolist() == [2, 1]
    for a, b in zip(list(net.parameters()) + list(average.parameters()),
                    list(ref_net.parameters()) + list(ref_average.parameters())):
        assert torch.equal(a, b)


def test_a_restarted_stream_stores_the_cut_episode_as_a_truncation():
    replay = ReplayMemory(capacity=4, k=2, frame_shape=(3,), mu_width=2, frame_dtype=np.float32)
    replay.add_frame(np.full(3, 0.0, np.float32), first=True)
    for t in range(1, 3):
        replay.add_transition(0, 1.0, False, np.array([0.5, 0.5], np.float32))
        replay.add_frame(np.full(3, float(t), np.float32), first=False)
    replay.restart_stream(np.full(3, 9.0, np.float32))
    trajectory = replay.latest()
    assert trajectory["dones"].tolist() == [False, True]
    assert trajectory["truncated"].tolist() == [False, True]
    assert trajectory["final_states"].tolist() == [[2.0, 2.0, 2.0]]    # the state it was cut at
    assert trajectory["states"][-1].tolist() == [9.0, 9.0, 9.0] and replay.first[2]


def test_the_mode_refuses_other_algorithms_in_one_line():
    with pytest.raises(ConfigError, match=r"^--ray_mode actor_learner runs --algo acer only"):
        check_config(Config(algo="a3c", backend="ray", ray_mode="actor_learner"))
    check_config(Config(algo="a3c", backend="local", ray_mode="actor_learner"))  # read by ray only


def test_continuous_actions_and_a_missing_gpu_are_refused_with_exit_2(tmp_path, main_cli):
    result = main_cli(["--do_train", "--backend", "ray", "--ray_mode", "actor_learner",
                       "--env_name", "Pendulum-v1", "--n_workers", "1"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: --ray_mode actor_learner runs ACER with discrete actions"), result.stderr
    result = main_cli(["--do_train", "--ray_mode", "actor_learner", "--env_name", "CartPole-v1"],
                      tmp_path)
    assert result.returncode == 2 and "--ray_mode is a setting of --backend ray" in result.stderr
    if not torch.cuda.is_available():
        result = main_cli(["--do_train", "--backend", "ray", "--ray_mode", "actor_learner",
                           "--learner_device", "cuda", "--env_name", "CartPole-v1",
                           "--n_workers", "1"], tmp_path)
        assert result.returncode == 2 and "--learner_device cuda: torch sees no CUDA" in result.stderr


# -- on a real Ray cluster --

@pytest.fixture(scope="module")
def ray_cluster():
    """A head node and one more node, one CPU each, on 127.0.0.1, shared by this module's Ray
    tests (Ray's start-up is the slow part); torn down afterwards. Its processes (the actors
    among them) see ``FAULT_AFTER`` and ``KILL_MARKER`` for the killed-actor test: the address
    and the marker file are returned."""
    pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")
    from test_ray_backend import free_port
    ray_cli = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "token")
        mp.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.delenv("RAY_ADDRESS", raising=False)
        marker = os.path.join(tempfile.mkdtemp(prefix="actor_kill"), "killed")
        env = dict(os.environ, FAULT_AFTER="60", KILL_MARKER=marker)
        port = free_port()
        common = ["--num-cpus", "1", "--disable-usage-stats"]
        started = False
        try:
            head = subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1",
                                   "--port", str(port), "--include-dashboard", "false",
                                   "--temp-dir", tempfile.mkdtemp(prefix="ray", dir="/tmp"), *common],
                                  capture_output=True, text=True, timeout=300, env=env)
            assert head.returncode == 0, head.stderr
            started = True
            node = subprocess.run([ray_cli, "start", "--address", f"127.0.0.1:{port}",
                                   "--node-ip-address", "127.0.0.1", *common],
                                  capture_output=True, text=True, timeout=300, env=env)
            assert node.returncode == 0, node.stderr
            yield f"127.0.0.1:{port}", marker
        finally:
            if started:
                subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120, env=env)


def test_a_cartpole_run_checkpoints_for_the_local_backend_and_plays(tmp_path, main_cli, ray_cluster):
    address, _ = ray_cluster
    result = main_cli(["--do_train", "--backend", "ray", "--ray_mode", "actor_learner",
                       "--ray_address", address, "--env_name", "CartPole-v1", "--n_workers", "2",
                       "--total_steps", "400", "--interval", "5", "--save_replay"],
                      tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "Actor-learner summary:" in result.stdout, result.stdout
    run = only_run(tmp_path / "Models")
    state = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    counters = state["counters"]
    assert state["config"]["ray_mode"] == "actor_learner" and counters["global_steps"] >= 400
    assert all(n > 0 for n in counters["worker_iterations"])           # both actors' rollouts
    assert counters["optimizer_steps"] == sum(counters["worker_updates"]) == state["optimizer"]["step"]
    assert sum(counters["worker_updates"]) >= sum(counters["worker_iterations"])
    for i in range(2):                                     # each actor's state, with the replay
        worker = load_checkpoint(os.path.join(run, f"worker_{i}.pth"))
        assert worker["iteration"] == counters["worker_iterations"][i]
        assert worker["agent"]["replay"]["n_transitions"] == 20 * counters["worker_iterations"][i]

    # the same checkpoint resumes on the local backend (its workers continue from the actors'
    # environments and the learner's replays) and plays
    result = main_cli(["--do_train", "--resume", run, "--backend", "local", "--total_steps", "600",
                       "--interval", "5"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "resume: backend ray -> local" in result.stdout
    assert "warning" not in result.stderr, result.stderr
    resumed = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    assert resumed["counters"]["global_steps"] >= 600
    result = main_cli(["--env_name", "CartPole-v1", "--weights", os.path.join(run, "checkpoint.pth"),
                       "--episodes", "1", "--no_video"], tmp_path)
    assert result.returncode == 0 and "Game 1/1: score" in result.stdout, result.stderr


def test_a_killed_actor_is_restarted_and_the_run_finishes(tmp_path, main_cli, ray_cluster):
    address, marker = ray_cluster
    result = main_cli(["--do_train", "--backend", "ray", "--ray_mode", "actor_learner",
                       "--ray_address", address, "--env_name",
                       "tests.faulty_envs:CartPoleKilledOnce-v0", "--n_workers", "2",
                       "--total_steps", "400", "--interval", "5", "--max_policy_lag", "5"],
                      tmp_path, timeout=900)
    assert os.path.exists(marker)                            # an actor did kill itself
    assert result.returncode == 0, result.stderr
    assert "died (" in result.stderr and "restarted with a new environment (restart 1 of 3)" \
        in result.stderr, result.stderr
    state = load_checkpoint(os.path.join(only_run(tmp_path / "Models"), "checkpoint.pth"))
    assert state["counters"]["global_steps"] >= 400
    assert state["counters"]["optimizer_steps"] == sum(state["counters"]["worker_updates"])
    # every actor pulled at least every 4 rollouts (how many more --max_policy_lag 5 added
    # depends on timing: pull_due's rule is tested on its own below)
    rollouts, pulls = map(int, re.search(r"summary: (\d+) rollouts, .* weights (\d+) pulls",
                                         result.stdout).groups())
    assert pulls >= rollouts // 4, result.stdout
    assert "or when they lag by more than 5 updates" in result.stdout


def test_pull_due_every_sync_every_rollouts_or_past_the_lag_limit():
    assert [pull_due(n, 0, 4, 0) for n in range(6)] == [False] * 4 + [True] * 2
    assert not pull_due(1, 100, 4, 0)                       # 0: no lag limit
    assert not pull_due(1, 5, 4, 5) and pull_due(1, 6, 4, 5)


def run_with_broken_learner(args, cwd, after: int, timeout: int):
    """``main.py ARGS`` in ``cwd`` with the learner made to raise on its ``after``-th rollout
    (:func:`faulty_envs.break_learner_after`, which first copies the checkpoint on disk to
    ``checkpoint.pth.at_fault``)."""
    code = (f"import runpy, sys; sys.path.insert(0, {ROOT!r}); "
            f"from tests.faulty_envs import break_learner_after; break_learner_after({after}); "
            f"runpy.run_path({os.path.join(ROOT, 'main.py')!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def test_a_failing_learner_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, main_cli,
                                                                       ray_cluster):
    address, _ = ray_cluster
    result = run_with_broken_learner(
        ["--do_train", "--backend", "ray", "--ray_mode", "actor_learner", "--ray_address", address,
         "--env_name", "CartPole-v1", "--n_workers", "2", "--total_steps", "4000",
         "--interval", "5"], tmp_path, after=30, timeout=900)
    assert result.returncode == 1, result.stderr
    run = only_run(tmp_path / "Models")
    path = os.path.join(run, "checkpoint.pth")
    assert os.path.exists(path + ".at_fault"), result.stderr  # a checkpoint was there at the fault
    with open(path, "rb") as now, open(path + ".at_fault", "rb") as before:
        assert now.read() == before.read()                     # not written over, byte for byte
    state = load_checkpoint(path)
    step = state["counters"]["global_steps"]
    assert 0 < step < 30 * 20                # the fault came on the 30th rollout, after it
    assert (f"error: the learner failed; the last checkpoint (step {step:,}) is kept, not "
            f"overwritten:") in result.stderr, result.stderr
    assert "RuntimeError: injected learner fault on rollout 30" in result.stderr
    # the kept checkpoint is whole: it plays
    result = main_cli(["--env_name", "CartPole-v1", "--weights", path, "--episodes", "1",
                       "--no_video"], tmp_path)
    assert result.returncode == 0 and "Game 1/1: score" in result.stdout, result.stderr


def test_a_stalled_actor_stops_the_run_naming_where_it_waited(tmp_path, main_cli, ray_cluster):
    address, _ = ray_cluster      # its processes have FAULT_AFTER=60: the env hangs at step 61
    # The run must end by itself, on the stall: its exit code and last line say so. The
    # subprocess timeout is only a deadline against a hang (a run that never noticed it).
    result = main_cli(["--do_train", "--backend", "ray", "--ray_mode", "actor_learner",
                       "--ray_address", address, "--env_name",
                       "tests.faulty_envs:CartPoleStalling-v0", "--n_workers", "1",
                       "--total_steps", "4000", "--interval", "1", "--stall_minutes", "0.25"],
                      tmp_path, timeout=600)
    assert result.returncode == 1, result.stderr
    assert "1 worker stepping" in result.stdout       # it hung after making progress
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: no rollout arrived for 15 s \(--stall_minutes 0.25\); the learner "
                        r"waited on actor 0 \(their rollout requests are queued in Ray: .*\)",
                        last), result.stderr
    state = load_checkpoint(os.path.join(only_run(tmp_path / "Models"), "checkpoint.pth"))
    assert state["counters"]["global_steps"] == 60         # the steps before the hang are kept


@pytest.mark.slow
def test_cartpole_reaches_475_on_a_two_node_cluster_and_resumes_in_the_hogwild_mode(
        tmp_path, main_cli, ray_cluster):
    """bench/learning.py (20-game evaluation mean of each new checkpoint) with 2 actors, one
    on each node of the loopback cluster; then the passing run continues in the Hogwild mode."""
    address, _ = ray_cluster
    out = tmp_path / "learning"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "learning.py"),
                             "--algo", "acer", "--n_workers", "2", "--max_minutes", "20",
                             "--out", str(out), "--", "--backend", "ray", "--ray_mode",
                             "actor_learner", "--ray_address", address],
                            capture_output=True, text=True, timeout=25 * 60)
    print(result.stdout[-3000:])
    assert result.returncode == 0 and "PASSED" in result.stdout, result.stdout[-3000:]
    run = only_run(out / "Models")
    steps = load_checkpoint(os.path.join(run, "checkpoint.pth"))["counters"]["global_steps"]
    result = main_cli(["--do_train", "--resume", run, "--backend", "ray", "--ray_mode", "hogwild",
                       "--ray_address", address, "--n_workers", "1",
                       "--total_steps", str(steps + 200), "--interval", "5",
                       "--models_dir", str(out / "Models"), "--logs_dir", str(out / "Logs")],
                      tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "resume: ray_mode actor_learner -> hogwild" in result.stdout, result.stdout
    state = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    assert state["config"]["ray_mode"] == "hogwild" and state["counters"]["global_steps"] >= steps + 200
