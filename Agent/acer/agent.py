"""The ACER agent: acting with a replay memory, and ACER's updates of the shared network.

Each iteration (Wang et al. 2016, Algorithm 1 with a per-worker replay) the
worker loop (``Agent/runtime/worker.py``) has this agent copy the global weights into
its local network and act ``k`` steps with the local policy, storing frames,
actions, clipped rewards, dones and mu in the replay. ``learn`` then makes one
on-policy update on that trajectory and ``n ~ Poisson(replay_ratio)``
off-policy updates on trajectories drawn uniformly from the replay. Every
update starts from the latest global weights, computes gradients locally,
clips their norm, steps the shared Adam and moves the average network towards
the global one (Polyak). :class:`ContinuousACERAgent` does the same for Box actions with a
Gaussian policy and the Stochastic Dueling Network critic.
"""
from __future__ import annotations

import numpy as np
import torch

from Agent.acer.math import acer_loss, continuous_acer_loss
from Agent.acer.replay import ReplayMemory, replay_capacity
from Agent.interface import update_global
from NN.networks import acer_network
from Utils.atari_wrappers import box_bounds
from Utils.network_spec import NetworkSpec


def replay_stats(updates: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each statistic over an iteration's replayed updates, as ``replay_<name>``
    (``replay_age_steps``: the worker's own steps between storing a trajectory and replaying
    it; the run's steps are about ``n_workers`` times as many). Empty without replayed updates."""
    if not updates:
        return {}
    return {f"replay_{key}": sum(u[key] for u in updates) / len(updates) for key in updates[0]}


class ACERAgent:
    """One worker's ACER: local network, replay memory, acting and updates."""

    def __init__(self, cfg, params, counters: torch.Tensor, worker_id: int, env,
                 rng: np.random.Generator):
        self.cfg, self.rng, self.params = cfg, rng, params
        bounds = box_bounds(env)
        self.local_net = acer_network(NetworkSpec.of(params.obs_shape, params.n_actions, cfg, bounds))
        image = self.local_net.kind == "nature_cnn"
        # --precision bf16: the update's trunk runs in bfloat16; acting stays float32.
        self.bf16 = getattr(cfg, "precision", "fp32") == "bf16"
        # Image updates run on channels-last tensors, the layout oneDNN's convolutions take
        # without reordering (faster, measured with the update's step correct). Their conv
        # gradients are channels-last too; SharedAdam.step puts them in the global parameters'
        # layout (tests/test_reference_path.py holds this path to a plain contiguous update).
        self.channels_last = image
        if self.channels_last:
            self.local_net = self.local_net.to(memory_format=torch.channels_last)
        self.local_params = list(self.local_net.parameters())
        self.counters, self.worker_id = counters, worker_id
        # Where updates compute: the CPU, except for the actor-learner mode's learner on a GPU
        # (Agent/backends/actor_learner.py moves the networks there and sets this).
        self.device = torch.device("cpu")
        self.rollout_length = cfg.k
        obs_shape = env.observation_space.shape
        # Image observations are stacks; the replay stores each frame once (the newest).
        # mu: the action probabilities, or a Gaussian's means then standard deviations
        d = params.n_actions
        self.replay = ReplayMemory(
            capacity=max(1, replay_capacity(cfg)), k=cfg.k,
            frame_shape=obs_shape[1:] if image else obs_shape,
            mu_width=d if bounds is None else 2 * d,
            stack=cfg.frame_stack if image else 1, frame_dtype=np.uint8 if image else np.float32,
            action_shape=() if bounds is None else (d,),
            action_dtype=np.int64 if bounds is None else np.float32)
        self._newest = (lambda o: o[-1]) if image else (lambda o: o)
        self._mu = None
        self.sync()

    def sync(self) -> None:
        """Local network <- latest global weights."""
        self.params.pull(self.local_params)

    # -- acting (called by the worker loop) --
    def begin_rollout(self) -> None:
        self.sync()

    def act(self, obs) -> int:
        """Sample from the local policy mu(.|x); mu is kept for the replay."""
        with torch.no_grad():
            logits, _ = self.local_net(torch.from_numpy(np.asarray(obs)).unsqueeze(0))
            self._mu = torch.softmax(logits[0], -1)
        return int(torch.multinomial(self._mu, 1))

    def record(self, action: int, reward: float, terminated: bool, truncated: bool, next_obs) -> None:
        # A time-limit cut keeps the final observation: updates bootstrap from V(x_final)
        # under the weights they use (Pardo et al. 2018), as Algorithm 2 does with V(x_k).
        final_frame = self._newest(next_obs) if truncated and not terminated else None
        self.replay.add_transition(action, reward, terminated or truncated, self._mu.numpy(),
                                   final_frame)

    def observe(self, obs, first: bool) -> None:
        """The observation the next step starts from (``first``: a new episode's)."""
        self.replay.add_frame(self._newest(obs), first=first)

    def learn(self) -> dict[str, float] | None:
        """One on-policy update, then Poisson(replay_ratio) replayed ones; the first's stats,
        plus the replayed ones' averaged under ``replay_<name>`` (see :func:`replay_stats`).

        As in the paper's Algorithm 2, the on-policy update uses the weights the trajectory was
        acted with (synced at the rollout's start, so rho = 1 on it); each off-policy update
        first syncs with the latest global weights."""
        stats = self.update(self.replay.latest(), sync=False)
        replayed = []
        if self.cfg.replay_ratio > 0:
            for _ in range(self.rng.poisson(self.cfg.replay_ratio)):
                n = self.replay.sample_index(self.rng)
                update = self.update(self.replay.trajectory(n))
                if update is not None:
                    replayed.append({**update, "age_steps": self.replay.age(n) * self.cfg.k})
        if stats is None and not replayed:
            return None
        return {**(stats or {}), **replay_stats(replayed)}

    def memory_size(self) -> int:
        return len(self.replay)

    def state_dict(self) -> dict:
        """The replay, when the run saves it (``--save_replay``)."""
        return {"replay": self.replay.state_dict()} if self.cfg.save_replay else {}

    def load_state_dict(self, state: dict, obs) -> None:
        if "replay" in state:
            self.replay.load_state_dict(state["replay"], gamma=self.cfg.gamma)
        else:  # the replay starts afresh from the current observation
            self.observe(obs, first=True)

    # -- learning --
    def tensor(self, array: np.ndarray) -> torch.Tensor:
        """``array`` as a tensor on the update's device (on the CPU: the array's own memory)."""
        tensor = torch.from_numpy(array)
        return tensor if self.device.type == "cpu" else tensor.to(self.device)

    def rewards_with_truncations(self, trajectory: dict[str, np.ndarray], final_values) -> torch.Tensor:
        """r_i, and r_i + gamma * V(x_final) where a time limit cut the episode after step i
        (stored as done, so Q_ret restarts there from this target)."""
        rewards = self.tensor(trajectory["rewards"]).clone()
        if len(trajectory["final_states"]):
            rewards[self.tensor(trajectory["truncated"])] += self.cfg.gamma * final_values()
        return rewards

    def update(self, trajectory: dict[str, np.ndarray], sync: bool = True) -> dict[str, float] | None:
        """One ACER update of the shared network on ``trajectory`` (first syncing the local
        network with the global one, unless ``sync`` is False); its stats, or None if skipped."""
        return self.update_batch([trajectory], sync)

    def update_batch(self, trajectories: list[dict[str, np.ndarray]],
                     sync: bool = True) -> dict[str, float] | None:
        """One ACER update on several trajectories at once (the actor-learner mode's
        ``--learner_batch``): the loss is the mean of their losses, so one Adam step stands
        for all of them."""
        if sync:
            self.sync()
        loss, stats = self.loss_batch(trajectories)
        # the step also moves the average network: avg <- polyak * global + (1 - polyak) * avg
        return update_global(loss, stats, self.local_params, self.params, self.cfg, self.counters,
                             self.worker_id)

    def loss(self, trajectory: dict[str, np.ndarray]) -> tuple[torch.Tensor, dict]:
        """ACER's loss on ``trajectory`` under the local network, and its statistics."""
        return self.loss_batch([trajectory])

    def loss_batch(self, trajectories: list[dict[str, np.ndarray]]) -> tuple[torch.Tensor, dict]:
        """ACER's loss on B trajectories of k steps under the local network: one forward pass
        over all their states, the math on [k, B, A] (every term is a mean over the k*B steps,
        so the loss is the mean of the B trajectories' losses), and its statistics."""
        cfg = self.cfg
        batch = len(trajectories)
        states = self.tensor(np.stack([t["states"] for t in trajectories], axis=1))  # [k+1, B, ...]
        states = states.reshape(-1, *states.shape[2:])
        if self.channels_last:
            states = states.contiguous(memory_format=torch.channels_last)
        logits, q = self.local_net(states, bf16_trunk=self.bf16)
        logits, q = logits.view(-1, batch, logits.shape[-1]), q.view(-1, batch, q.shape[-1])
        with torch.no_grad():
            average_logits, _ = self.params.average_net(states[:-batch], bf16_trunk=self.bf16)
            average_logits = average_logits.view(-1, batch, average_logits.shape[-1])
            bootstrap_value = (torch.softmax(logits[-1], -1) * q[-1]).sum(-1)
            rewards = torch.stack([self.rewards_with_truncations(
                t, lambda t=t: self.values(self.tensor(t["final_states"]))) for t in trajectories], 1)

        def stacked(key: str) -> torch.Tensor:
            return self.tensor(np.stack([t[key] for t in trajectories], axis=1))
        loss, stats = acer_loss(
            logits[:-1], q[:-1], average_logits, stacked("actions"), rewards, stacked("dones"),
            stacked("mus"), bootstrap_value, gamma=cfg.gamma, c=cfg.c, delta=cfg.delta,
            entropy_coef=cfg.entropy_coef, critic_coef=cfg.critic_coef,
            trust_region=cfg.trust_region)
        return loss, stats

    def values(self, states: torch.Tensor) -> torch.Tensor:
        """V(x) = sum_a f(a|x) Q(x, a) under the local network, for a batch of states."""
        if self.channels_last:
            states = states.contiguous(memory_format=torch.channels_last)
        logits, q = self.local_net(states, bf16_trunk=self.bf16)
        return (torch.softmax(logits, -1) * q).sum(-1)


class ContinuousACERAgent(ACERAgent):
    """ACER for Box actions (Wang et al. 2016, section 4): the same acting, replay and update
    schedule, with the Gaussian policy and SDN critic of :class:`NN.networks.SDNet`.

    Acting samples a = m(x) + sigma * eps from the local policy; the replay keeps that sample
    (the environment receives it clipped into the box) and mu's mean and std. Each update
    draws a'_i ~ f(.|x_i) for the bias correction and ``sdn_samples`` actions u_j ~ f(.|x_i)
    for the SDN's mean advantage from the current policy, with torch's generator (seeded per worker).
    """

    def act(self, obs) -> np.ndarray:
        with torch.no_grad():
            mean, std = self.local_net.policy(torch.from_numpy(np.asarray(obs)).unsqueeze(0))
            action = mean[0] + std[0] * torch.randn_like(mean[0])
        self._mu = torch.cat([mean[0], std[0]])
        return action.numpy()

    def values(self, states: torch.Tensor) -> torch.Tensor:
        """V(x) from the SDN critic, for a batch of states."""
        return self.local_net.value(states)

    def update_batch(self, trajectories: list[dict[str, np.ndarray]],
                     sync: bool = True) -> dict[str, float] | None:
        """One trajectory only: the batched loss is the discrete one (the actor-learner mode,
        which batches, runs discrete actions only)."""
        if len(trajectories) != 1:
            raise NotImplementedError("continuous ACER updates one trajectory at a time")
        return self.update(trajectories[0], sync)

    def update(self, trajectory: dict[str, np.ndarray], sync: bool = True) -> dict[str, float] | None:
        """One continuous ACER update of the shared network on ``trajectory``."""
        cfg, net = self.cfg, self.local_net
        if sync:
            self.sync()
        states = torch.from_numpy(trajectory["states"])
        actions = torch.from_numpy(trajectory["actions"])
        mus = torch.from_numpy(trajectory["mus"])
        d = actions.shape[-1]
        mean, std = net.policy(states[:-1])
        with torch.no_grad():
            average_mean, _ = self.params.average_net.policy(states[:-1])
            bootstrap_value = net.value(states[-1:])[0]
            rewards = self.rewards_with_truncations(
                trajectory, lambda: self.values(torch.from_numpy(trajectory["final_states"])))
            m, s = mean.detach(), std.detach()
            actions_prime = m + s * torch.randn_like(m)                              # a'_i ~ f
            samples = m.unsqueeze(1) + s.unsqueeze(1) * torch.randn(m.shape[0], cfg.sdn_samples, d)
        candidates = torch.cat([actions.unsqueeze(1), actions_prime.unsqueeze(1), samples], dim=1)
        values, advantages = net.critic(states[:-1], candidates)
        loss, stats = continuous_acer_loss(
            mean, std, average_mean, values, advantages[:, 0], advantages[:, 1], advantages[:, 2:],
            actions, actions_prime, mus[:, :d], mus[:, d:], rewards,
            torch.from_numpy(trajectory["dones"]), bootstrap_value, gamma=cfg.gamma, c=cfg.c,
            delta=cfg.delta, critic_coef=cfg.critic_coef, trust_region=cfg.trust_region)
        # the step also moves the average network: avg <- polyak * global + (1 - polyak) * avg
        return update_global(loss, stats, self.local_params, self.params, cfg, self.counters,
                             self.worker_id)
