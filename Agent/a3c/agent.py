"""The A3C agent: on-policy rollouts and A3C's update of the shared network.

Each iteration the worker loop (``Agent/runtime/worker.py``) has this agent copy the
global weights into its local network and act for the rollout length
(``total_update_period // n_workers`` steps for the recurrent agent, ``t_max``
for the feed-forward one), crossing episode ends where they fall. ``learn``
then computes n-step returns bootstrapped from V of the state after the
rollout (zero after a terminal) and makes one update with A3C's loss.

Recurrent agent: the LSTM state is carried from rollout to rollout and zeroed
at every episode start. Acting runs without a graph; the update re-runs the
rollout from the LSTM state it started with, with the same weights (the local
network is not changed during a rollout), so its values are the ones acted
with, and the gradient flows back through every step of the rollout
(truncated backpropagation through time, as in the A3C paper). The original
instead recomputed each step from the stored, detached hidden state, which cuts
the gradient at every step; that variant is not offered here.
"""
from __future__ import annotations

import numpy as np
import torch

from Agent.a3c.math import a3c_loss, gaussian_a3c_loss, n_step_returns
from Agent.interface import update_global
from NN.networks import a3c_network
from Utils.atari_wrappers import box_bounds
from Utils.network_spec import NetworkSpec


def rollout_length(cfg) -> int:
    """Recurrent: ``total_update_period`` steps summed over the workers (the original's);
    feed-forward: ``t_max`` per worker (the paper's)."""
    return cfg.total_update_period // cfg.n_workers if cfg.recurrent else cfg.t_max


class A3CAgent:
    """One worker's A3C: local network, rollout buffers, LSTM state, acting and updates."""

    def __init__(self, cfg, params, counters: torch.Tensor, worker_id: int, env):
        self.cfg, self.params = cfg, params
        bounds = box_bounds(env)
        self.continuous = bounds is not None  # a Gaussian policy (GaussianA3CNet)
        self.local_net = a3c_network(NetworkSpec.of(params.obs_shape, params.n_actions, cfg, bounds))
        self.local_params = list(self.local_net.parameters())
        self.counters, self.worker_id = counters, worker_id
        T = self.rollout_length = rollout_length(cfg)
        obs_space = env.observation_space
        dtype = torch.uint8 if obs_space.dtype == np.uint8 else torch.float32
        self.obs = torch.zeros((T + 1, *obs_space.shape), dtype=dtype)  # x_0..x_T
        self.actions = (torch.zeros(T, params.n_actions) if self.continuous
                        else torch.zeros(T, dtype=torch.int64))
        self.rewards = torch.zeros(T)    # r_t (+ gamma V(x_final) at a time-limit truncation)
        self.dones = torch.zeros(T, dtype=torch.bool)
        self.t = 0
        self.hidden = self.local_net.initial_hidden()     # before the next step
        self.rollout_hidden = self.hidden                  # before x_0 of this rollout

    def begin_rollout(self) -> None:
        """Local network <- latest global weights; remember the LSTM state x_0 starts from."""
        self.params.pull(self.local_params)
        self.t = 0
        self.rollout_hidden = self.hidden

    def act(self, obs):
        """An action sampled from the local policy: an int, or for a Box the Gaussian sample
        (the environment clips it into the box; the update uses it as drawn)."""
        x = torch.from_numpy(np.asarray(obs)).unsqueeze(0)
        self.obs[self.t] = x[0]
        with torch.no_grad():
            policy, _, self.hidden = self.local_net(x, self.hidden)
        if self.continuous:
            mean, std = policy
            return (mean[0] + std[0] * torch.randn_like(mean[0])).numpy()
        return int(torch.multinomial(torch.softmax(policy[0], -1), 1))

    def record(self, action, reward: float, terminated: bool, truncated: bool, next_obs) -> None:
        t = self.t
        self.actions[t] = torch.as_tensor(action)
        self.dones[t] = terminated or truncated
        self.rewards[t] = reward
        if truncated and not terminated:
            # A time-limit truncation bootstraps from V(final observation) (Pardo et al. 2018).
            with torch.no_grad():
                _, value, _ = self.local_net(torch.from_numpy(np.asarray(next_obs)).unsqueeze(0),
                                             self.hidden)
            self.rewards[t] += self.cfg.gamma * float(value)
        self.t += 1

    def observe(self, obs, first: bool) -> None:
        """The observation the next step starts from; ``first`` zeroes the LSTM state."""
        if first:
            self.hidden = self.local_net.initial_hidden()
        self._next_obs = obs

    def learn(self) -> dict[str, float] | None:
        """One A3C update on the rollout just taken; its stats, or None if skipped."""
        cfg, T = self.cfg, self.t
        self.obs[T] = torch.from_numpy(np.asarray(self._next_obs))
        # zero the LSTM state before step t when step t-1 ended an episode
        starts = torch.cat([torch.zeros(1, dtype=torch.bool), self.dones[:T]])
        policy, values = self.local_net.unroll(self.obs[:T + 1], self.rollout_hidden, starts)
        returns = n_step_returns(self.rewards[:T], self.dones[:T], values[T], cfg.gamma)
        if self.continuous:
            mean, std = policy
            loss, stats = gaussian_a3c_loss(mean[:T], std[:T], values[:T], self.actions[:T], returns,
                                            cfg.entropy_coef, cfg.critic_coef)
        else:
            loss, stats = a3c_loss(policy[:T], values[:T], self.actions[:T], returns,
                                   cfg.entropy_coef, cfg.critic_coef)
        return update_global(loss, stats, self.local_params, self.params, cfg, self.counters,
                             self.worker_id)

    def memory_size(self) -> int:
        return 0

    def state_dict(self) -> dict:
        """The LSTM state the next step starts from."""
        return {"hidden": list(self.hidden)} if self.hidden is not None else {}

    def load_state_dict(self, state: dict, obs) -> None:
        if "hidden" in state and self.hidden is not None:
            self.hidden = tuple(h.clone() for h in state["hidden"])
        self._next_obs = obs
