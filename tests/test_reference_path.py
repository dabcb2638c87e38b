"""The real ACER update path, end to end, against a plain reference update on real Atari frames.

The reference is the update written as plainly as it can be: contiguous float32 networks, the
same loss (``Agent.acer.math.acer_loss`` on the same trajectory), ``clip_grad_norm_``, then
``torch.optim.Adam`` with neither its fused nor its foreach kernel, then the Polyak step of
the average network written out as ``avg = (1 - tau) * avg + tau * theta``.

The real path is what training runs: ``ACERAgent.update`` (its local network in whatever
layout and precision the agent picks) handing its gradient to the backend's parameter store,
whose ``SharedAdam`` steps the global weights (the local backend's ``SharedParameters``, the
Ray backend's parameter server, the actor-learner mode's ``Learner``). Both start from the
same weights and take the same consecutive updates: one on-policy update on the newest
trajectory, then replayed ones, each from the latest global weights. Then every parameter of
the global and the average network is compared, its value and its update direction (the
cosine between the real and the reference change since the start).

Why this test exists: the local network ran in channels-last memory, the fused Adam kernel
read those conv gradients as if they were contiguous, and every conv weight was moved by
another weight's gradient (cosines 0.02 to 0.44 between the two steps). Every other test
passed, because none compared an Atari update with a plain one. A speed change is done only
when this comparison holds for it.

Tolerances: in fp32 each tensor's change must agree to 5e-3 relative (cosine >= 0.9999), and
at most 1 entry in 1,000 may be off by more than 1% of one step (LR / 100). What is left is the
float32 rounding of two convolution algorithms (channels-last against contiguous), which Adam
amplifies on the few entries whose gradient is near its epsilon (measured after the fix: 1.4e-3
relative at worst, on Pong's fully connected layer; with the bug: 1.2, cosine 0.27). bf16 runs
the trunk in bfloat16 (8-bit mantissa) against the fp32 reference, so it is held to direction
only: per tensor cosine >= 0.8 and >= 0.94 over the whole network (measured after the fix: 0.886
at worst, Pong's first conv bias, and 0.962; with the bug: 0.26 to 0.40 on conv2 and conv3, and
0.87 to 0.89). bf16 runs on any CPU here: where the CPU has no native bfloat16, oneDNN emulates
it (slowly, which is why the CLI refuses it there), with the same rounding.
"""
from __future__ import annotations

import copy
import os
import queue

import numpy as np
import pytest
import torch

from Agent.acer.agent import ACERAgent
from Agent.acer.math import acer_loss
from Agent.interface import N_COUNTERS
from Agent.runtime.parameters import SharedParameters
from Agent.runtime.worker import Reporter, rollout
from NN.networks import acer_network
from Utils.network_spec import NetworkSpec
from NN.shared_adam import SharedAdam
from Utils.atari_wrappers import make_env
from Utils.config import Config

N_REPLAYED = 3          # replayed updates after the on-policy one
LR = 1e-3               # larger than the default, so the steps stand well above rounding
TOLERANCES = {
    # per tensor: min cosine of the changes, max relative error of the change, the largest
    # fraction of entries off by more than LR / 100; over each network: min cosine
    "fp32": dict(tensor_cosine=0.9999, relative=5e-3, off_fraction=1e-3, whole_cosine=0.99999),
    "bf16": dict(tensor_cosine=0.8, relative=None, off_fraction=None, whole_cosine=0.94),
}
GAMES = ("PongNoFrameskip-v4", "BreakoutNoFrameskip-v4")


def config(game: str, precision: str = "fp32", **overrides) -> Config:
    return Config(env_name=game, n_workers=1, precision=precision, lr=LR, seed=3,
                  total_memory_size=400, **overrides)


def initial_state(cfg: Config, obs_shape, n_actions: int) -> dict:
    """Fresh weights (seeded) and an average network a little away from them, so that the
    trust region has something to measure."""
    torch.manual_seed(cfg.seed)
    net = acer_network(NetworkSpec.of(obs_shape, n_actions, cfg.to_dict()))
    average = copy.deepcopy(net)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    with torch.no_grad():
        for p in average.parameters():
            p.add_(0.05 * p.abs().mean() * torch.randn(p.shape, generator=gen))
    return {"model": copy.deepcopy(net.state_dict()), "average": copy.deepcopy(average.state_dict())}


def shared_networks(cfg: Config, obs_shape, n_actions: int, state: dict):
    """Global and average networks in shared memory and a fresh SharedAdam, as the trainer
    builds them."""
    nets = []
    for key in ("model", "average"):
        net = acer_network(NetworkSpec.of(obs_shape, n_actions, cfg.to_dict()))
        net.load_state_dict(state[key])
        nets.append(net.share_memory())
    return nets[0], nets[1], SharedAdam(nets[0].parameters(), lr=cfg.lr, eps=cfg.adam_eps)


def act(agent: ACERAgent, env, n_rollouts: int) -> None:
    """``n_rollouts`` rollouts of k real frames through the worker loop's own ``rollout``."""
    obs, _ = env.reset(seed=11)
    agent.observe(obs, first=True)
    reporter = Reporter(0, agent.counters, queue.SimpleQueue())
    for _ in range(n_rollouts):
        obs = rollout(agent, env, obs, 1.0, reporter)


def real_trajectories(game: str) -> tuple[list[dict], dict, dict, tuple, int]:
    """Real frames: an agent with the initial weights acts N_REPLAYED + 1 rollouts (acting
    does not change weights). Returns the trajectories in update order (the newest first, for
    the on-policy update, then replayed ones), the replay they came from (its state), the
    initial state and the shapes."""
    cfg = config(game)
    env = make_env(cfg.env_name, training=True, frame_stack=cfg.frame_stack)
    obs_shape, n_actions = tuple(env.observation_space.shape), int(env.action_space.n)
    state = initial_state(cfg, obs_shape, n_actions)
    global_net, average_net, adam = shared_networks(cfg, obs_shape, n_actions, state)
    params = SharedParameters(global_net, average_net, adam, cfg.polyak)
    counters = torch.zeros(1, N_COUNTERS, dtype=torch.int64)
    agent = ACERAgent(cfg, params, counters, 0, env, np.random.default_rng(0))
    try:
        act(agent, env, N_REPLAYED + 1)
    finally:
        env.close()
    replay = agent.replay
    order = [replay.latest()] + [replay.trajectory(i) for i in (2, 0, 1)]
    return order, replay.state_dict(), state, obs_shape, n_actions


@pytest.fixture(scope="module", params=GAMES)
def game_data(request):
    return (request.param, *real_trajectories(request.param))


# ---------------------------------------------------------------------------------------
# The plain reference update
# ---------------------------------------------------------------------------------------

class ReferenceUpdate:
    """ACER's update as plainly as it can be written: contiguous fp32, torch.optim.Adam."""

    def __init__(self, cfg: Config, obs_shape, n_actions: int, state: dict):
        self.cfg = cfg
        self.net = acer_network(NetworkSpec.of(obs_shape, n_actions, cfg.to_dict()))
        self.net.load_state_dict(state["model"])
        self.average = acer_network(NetworkSpec.of(obs_shape, n_actions, cfg.to_dict()))
        self.average.load_state_dict(state["average"])
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, betas=(0.9, 0.999),
                                          eps=cfg.adam_eps, foreach=False, fused=False)

    def loss(self, trajectory: dict) -> torch.Tensor:
        cfg = self.cfg
        states = torch.from_numpy(trajectory["states"]).contiguous()
        logits, q = self.net(states)
        with torch.no_grad():
            average_logits, _ = self.average(states[:-1])
            bootstrap_value = (torch.softmax(logits[-1], -1) * q[-1]).sum(-1)
            rewards = torch.from_numpy(trajectory["rewards"]).clone()
            if len(trajectory["final_states"]):
                final_logits, final_q = self.net(torch.from_numpy(trajectory["final_states"]))
                rewards[torch.from_numpy(trajectory["truncated"])] += cfg.gamma * (
                    torch.softmax(final_logits, -1) * final_q).sum(-1)
        loss, _ = acer_loss(
            logits[:-1, None], q[:-1, None], average_logits[:, None],
            torch.from_numpy(trajectory["actions"])[:, None], rewards[:, None],
            torch.from_numpy(trajectory["dones"])[:, None], torch.from_numpy(trajectory["mus"])[:, None],
            bootstrap_value[None], gamma=cfg.gamma, c=cfg.c, delta=cfg.delta,
            entropy_coef=cfg.entropy_coef, critic_coef=cfg.critic_coef, trust_region=cfg.trust_region)
        return loss

    def update(self, trajectory: dict) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss(trajectory).backward()
        torch.nn.utils.clip_grad_norm_(list(self.net.parameters()), self.cfg.max_grad_norm)
        self.optimizer.step()
        tau = self.cfg.polyak
        with torch.no_grad():
            for avg, theta in zip(self.average.parameters(), self.net.parameters()):
                avg.copy_((1 - tau) * avg + tau * theta)

    def run(self, trajectories: list[dict]) -> dict:
        for trajectory in trajectories:
            self.update(trajectory)
        return {"model": self.net.state_dict(), "average": self.average.state_dict()}


# ---------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------

def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def compare(real: dict, reference: dict, start: dict, precision: str) -> None:
    """Every parameter of the global and average networks: the real change since ``start``
    points where the reference change points (and, in fp32, has its size and values)."""
    tol = TOLERANCES[precision]
    failures = []
    for key in ("model", "average"):
        real_all, ref_all = [], []
        for name, value0 in start[key].items():
            real_step = real[key][name].detach().float() - value0
            ref_step = reference[key][name].detach().float() - value0
            real_all.append(real_step.flatten())
            ref_all.append(ref_step.flatten())
            cos = cosine(real_step, ref_step)
            line = f"{key}.{name}: cosine {cos:.4f}"
            bad = cos < tol["tensor_cosine"]
            if tol["relative"] is not None:
                relative = float((real_step - ref_step).norm() / ref_step.norm())
                line += f", relative error {relative:.2e}"
                bad = bad or relative > tol["relative"]
            if tol["off_fraction"] is not None:
                error = (real[key][name].detach().float() - reference[key][name]).abs()
                off = float((error > LR / 100).float().mean())
                line += f", {off:.1e} of its entries off by more than LR/100"
                bad = bad or off > tol["off_fraction"]
            if bad:
                failures.append(line)
        whole = cosine(torch.cat(real_all), torch.cat(ref_all))
        if whole < tol["whole_cosine"]:
            failures.append(f"{key}: whole-network cosine {whole:.5f}")
    assert not failures, "the real update left the plain reference:\n" + "\n".join(failures)


def fp32_start(state: dict) -> dict:
    return {key: {name: v.detach().float().clone() for name, v in sd.items()} for key, sd in state.items()}


def reference_result(game: str, trajectories, state, obs_shape, n_actions) -> dict:
    return ReferenceUpdate(config(game), obs_shape, n_actions, state).run(trajectories)


# ---------------------------------------------------------------------------------------
# The real paths, one per CLI variant
# ---------------------------------------------------------------------------------------

def local_backend_updates(cfg: Config, trajectories, state, obs_shape, n_actions) -> dict:
    """``--backend local``: the worker's agent over SharedParameters (shared memory, SharedAdam)."""
    global_net, average_net, adam = shared_networks(cfg, obs_shape, n_actions, state)
    params = SharedParameters(global_net, average_net, adam, cfg.polyak)
    env = make_env(cfg.env_name, training=True, frame_stack=cfg.frame_stack)
    try:
        agent = ACERAgent(cfg, params, torch.zeros(1, N_COUNTERS, dtype=torch.int64), 0, env,
                          np.random.default_rng(0))
    finally:
        env.close()
    # as ACERAgent.learn runs them: on-policy from the weights it acted with, then replayed
    # ones, each from the latest global weights
    assert agent.update(trajectories[0], sync=False) is not None
    for trajectory in trajectories[1:]:
        assert agent.update(trajectory) is not None
    assert int(adam.step_count) == len(trajectories)
    return {"model": global_net.state_dict(), "average": average_net.state_dict()}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_local_backend_update_equals_the_plain_reference(game_data, precision):
    game, trajectories, _, state, obs_shape, n_actions = game_data
    real = local_backend_updates(config(game, precision), trajectories, state, obs_shape, n_actions)
    compare(real, reference_result(game, trajectories, state, obs_shape, n_actions),
            fp32_start(state), precision)


def test_actor_learner_learner_equals_the_plain_reference(game_data):
    """``--ray_mode actor_learner``: the learner's own ``learn`` on one rollout (its on-policy
    update), then its Poisson-drawn replayed updates from the actor's replay, against the
    reference on the same trajectories in the same order."""
    from Agent.acer.algorithm import ACER
    from Agent.backends.actor_learner import Learner
    game, trajectories, replay_state, state, obs_shape, n_actions = game_data
    cfg = config(game)
    global_net, average_net, adam = shared_networks(cfg, obs_shape, n_actions, state)
    counters = torch.zeros(1, N_COUNTERS, dtype=torch.int64)
    learner = Learner(cfg, ACER, NetworkSpec.of(obs_shape, n_actions, cfg), global_net, average_net,
                      adam, counters)
    learner.replay_learner.load_actor_state(0, {"replay": replay_state})
    draws = copy.deepcopy(learner.rng)          # what learn() will draw: n, then n trajectories
    n = draws.poisson(cfg.replay_ratio)
    replayed = [learner.replay_learner.replays[0].sample(draws) for _ in range(n)]
    learner.learn([(0, trajectories[0])])
    assert n > 0 and int(adam.step_count) == 1 + n
    real = {"model": global_net.state_dict(), "average": average_net.state_dict()}
    reference = ReferenceUpdate(cfg, obs_shape, n_actions, state).run([trajectories[0]] + replayed)
    compare(real, reference, fp32_start(state), "fp32")


def test_ray_hogwild_server_equals_the_plain_reference(game_data):
    """``--backend ray``: a real Ray parameter server applies the agent's gradients (sent as
    flat vectors, the way a Ray worker sends them) with its SharedAdam and Polyak step."""
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")
    from Agent.backends.ray_hogwild import RayParameters, _actor_classes
    from Agent.acer.algorithm import ACER
    from Agent.backends.transport import numpy_adam, numpy_state, torch_state
    game, trajectories, _, state, obs_shape, n_actions = game_data
    cfg = config(game)
    global_net, average_net, adam = shared_networks(cfg, obs_shape, n_actions, state)
    counters = np.zeros((1, N_COUNTERS), dtype=np.int64)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        server_class, _ = _actor_classes()
        server = server_class.remote(ACER, NetworkSpec.of(obs_shape, n_actions, cfg), cfg.to_dict(),
                                     numpy_state(global_net.state_dict()),
                                     numpy_state(average_net.state_dict()),
                                     numpy_adam(adam.state_dict()), counters)
        table = torch.from_numpy(counters.copy())
        local_average = acer_network(NetworkSpec.of(obs_shape, n_actions, cfg.to_dict()))
        params = RayParameters(server, 0, table, obs_shape, n_actions, local_average)
        env = make_env(cfg.env_name, training=True, frame_stack=cfg.frame_stack)
        try:
            agent = ACERAgent(cfg, params, table, 0, env, np.random.default_rng(0))
        finally:
            env.close()
        agent.update(trajectories[0], sync=False)
        for trajectory in trajectories[1:]:
            agent.update(trajectory)
        params.finish()
        result = ray.get(server.state.remote())
    finally:
        ray.shutdown()
    assert int(result["optimizer"]["step"]) == len(trajectories)
    real = {"model": torch_state(result["model"]), "average": torch_state(result["average"])}
    compare(real, reference_result(game, trajectories, state, obs_shape, n_actions),
            fp32_start(state), "fp32")
