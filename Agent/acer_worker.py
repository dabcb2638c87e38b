"""The ACER worker loop (one process per worker).

Each iteration (Wang et al. 2016, Algorithm 1 with a per-worker replay):
copy the global weights into the local network, act ``k`` steps with the
local policy (storing frames, actions, clipped rewards, dones and mu in the
worker's replay), make one on-policy update on that trajectory, then
``n ~ Poisson(replay_ratio)`` off-policy updates on trajectories drawn
uniformly from the replay. Every update starts from the latest global
weights, computes gradients locally, clips their norm, steps the shared Adam
and moves the average network towards the global one (Polyak).
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch

from Agent.acer_math import acer_loss
from Agent.replay_memory import ReplayMemory
from NN.networks import ACERNet
from NN.shared_adam import SharedAdam, polyak_update
from Utils.atari_wrappers import env_state, make_env, restore_env_state
from Utils.checkpoint import save_checkpoint

# Columns of the shared per-worker counter table.
STEPS, EPISODES, ITERATIONS, UPDATES, SKIPPED = range(5)
N_COUNTERS = 5


@torch.no_grad()
def copy_params(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    """Copy parameter values from ``src`` to ``dst`` in place."""
    torch._foreach_copy_(dst, src)


class ACERLearner:
    """Turns trajectories into shared updates: the part of a worker that learns."""

    def __init__(self, cfg, global_net: ACERNet, average_net: ACERNet, optimizer: SharedAdam,
                 counters: torch.Tensor, worker_id: int):
        self.cfg = cfg
        self.global_net, self.average_net, self.optimizer = global_net, average_net, optimizer
        self.local_net = ACERNet(global_net.obs_shape, global_net.n_actions, cfg.mlp_hidden)
        self.local_params = list(self.local_net.parameters())
        self.global_params = list(global_net.parameters())
        self.average_params = list(average_net.parameters())
        self.counters, self.worker_id = counters, worker_id
        self.sync()

    def sync(self) -> None:
        """Local network <- latest global weights."""
        copy_params(self.local_params, self.global_params)

    @torch.no_grad()
    def value(self, obs) -> float:
        """V(x) = sum_a f(a|x) Q(x, a) under the local network."""
        logits, q = self.local_net(torch.from_numpy(np.asarray(obs)).unsqueeze(0))
        return float((torch.softmax(logits, -1) * q).sum())

    def update(self, trajectory: dict[str, np.ndarray]) -> dict[str, float] | None:
        """One ACER update of the shared network on ``trajectory``; its stats, or None if skipped."""
        cfg = self.cfg
        self.sync()
        states = torch.from_numpy(trajectory["states"])
        # A time-limit truncation is a done whose target bootstraps from V(final observation),
        # stored at acting time: r_i + gamma * V(x_final) instead of r_i (Pardo et al. 2018).
        rewards = torch.from_numpy(trajectory["rewards"] + cfg.gamma * trajectory["truncation_values"])
        logits, q = self.local_net(states)
        with torch.no_grad():
            average_logits, _ = self.average_net(states[:-1])
            bootstrap_value = (torch.softmax(logits[-1], -1) * q[-1]).sum()
        loss, stats = acer_loss(
            logits[:-1], q[:-1], average_logits,
            torch.from_numpy(trajectory["actions"]), rewards,
            torch.from_numpy(trajectory["dones"]), torch.from_numpy(trajectory["mus"]),
            bootstrap_value, gamma=cfg.gamma, c=cfg.c, delta=cfg.delta,
            entropy_coef=cfg.entropy_coef, critic_coef=cfg.critic_coef,
            trust_region=cfg.trust_region)
        for p in self.local_params:
            p.grad = None
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.local_params, cfg.max_grad_norm)
        if not (math.isfinite(float(loss.detach())) and math.isfinite(float(grad_norm))):
            # Never write a non-finite update into the shared weights.
            self.counters[self.worker_id, SKIPPED] += 1
            return None
        self.optimizer.step([p.grad for p in self.local_params])
        polyak_update(self.average_params, self.global_params, cfg.polyak)
        self.counters[self.worker_id, UPDATES] += 1
        return {"pg_loss": float(stats["policy_loss"]), "value_loss": float(stats["value_loss"]),
                "entropy": float(stats["entropy"]), "grad_norm": float(grad_norm)}


def worker_seed(seed: int, worker_id: int, iteration: int) -> int:
    """``seed + worker_id`` for a new run, as in the original; a run resumed without its
    workers' saved states draws new streams instead of repeating the first ones."""
    if iteration == 0:
        return seed + worker_id
    return int(np.random.SeedSequence([seed, worker_id, iteration]).generate_state(1)[0])


def run_acer_worker(worker_id: int, cfg, global_net: ACERNet, average_net: ACERNet,
                    optimizer: SharedAdam, counters: torch.Tensor, stop_event, queue,
                    state_path: str | None = None, resume_state: dict | None = None) -> None:
    """Act and learn until ``stop_event`` is set or the step budget is spent.

    On a clean stop the worker's own state (RNGs, environment, current observation and,
    with ``cfg.save_replay``, its replay) is written to ``state_path``, and ``resume_state``
    (such a file, loaded) continues exactly where it stopped.
    """
    seed = worker_seed(cfg.seed, worker_id, int(counters[worker_id, ITERATIONS]))
    torch.manual_seed(seed)
    random.seed(seed)
    rng = np.random.default_rng(seed)
    env = make_env(cfg.env_name, training=True, frame_stack=cfg.frame_stack)
    learner = ACERLearner(cfg, global_net, average_net, optimizer, counters, worker_id)
    image = learner.local_net.kind == "nature_cnn"
    replay = ReplayMemory(
        capacity=max(1, cfg.replay_capacity()), k=cfg.k,
        frame_shape=env.observation_space.shape[1:] if image else env.observation_space.shape,
        n_actions=global_net.n_actions, stack=cfg.frame_stack if image else 1,
        frame_dtype=np.uint8 if image else np.float32)
    newest = (lambda o: o[-1]) if image else (lambda o: o)

    if resume_state is None:
        obs, _ = env.reset(seed=seed)
        replay.add_frame(newest(obs), first=True)
    else:
        restore_env_state(env, resume_state["env"])
        obs = resume_state["obs"].numpy()
        if "replay" in resume_state:
            replay.load_state_dict(resume_state["replay"])
        else:  # the replay starts afresh from the current observation
            replay.add_frame(newest(obs), first=True)
        torch.set_rng_state(resume_state["torch_rng"])
        rng.bit_generator.state = resume_state["numpy_rng"]
        random.setstate(_python_rng(resume_state["python_rng"]))
    mine = counters[worker_id]
    while not stop_event.is_set():
        if cfg.total_steps and int(counters[:, STEPS].sum()) >= cfg.total_steps:
            break
        learner.sync()
        for _ in range(cfg.k):
            with torch.no_grad():
                logits, _ = learner.local_net(torch.from_numpy(np.asarray(obs)).unsqueeze(0))
                mu = torch.softmax(logits[0], -1)
            action = int(torch.multinomial(mu, 1))
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            truncation_value = 0.0
            if truncated and not terminated:
                truncation_value = learner.value(obs)
            replay.add_transition(action, reward, done, mu.numpy(), truncation_value)
            mine[STEPS] += 1
            if "episode" in info:
                mine[EPISODES] += 1
                queue.put(("episode", worker_id, float(info["episode"]["r"]),
                           int(info["episode"]["l"]), int(counters[:, STEPS].sum())))
            if done:
                obs, _ = env.reset()
            replay.add_frame(newest(obs), first=done)

        stats = learner.update(replay.latest())  # the on-policy update's stats are logged
        if cfg.replay_ratio > 0:
            for _ in range(rng.poisson(cfg.replay_ratio)):
                learner.update(replay.sample(rng))
        mine[ITERATIONS] += 1
        queue.put(("iteration", worker_id, stats or {}, len(replay)))
    if state_path is not None:
        state = {"format_version": 1, "worker_id": worker_id, "iteration": int(mine[ITERATIONS]),
                 "torch_rng": torch.get_rng_state(), "numpy_rng": rng.bit_generator.state,
                 "python_rng": list(random.getstate()), "env": env_state(env),
                 "obs": torch.from_numpy(np.array(obs))}
        if cfg.save_replay:
            state["replay"] = replay.state_dict()
        save_checkpoint(state, state_path)
    env.close()


def _python_rng(saved: list) -> tuple:
    """``random.getstate()`` as stored (lists) back to the tuple ``setstate`` takes."""
    version, internal, gauss = saved
    return version, tuple(internal), gauss
