"""ACER's side of the actor-learner mode (``--ray_mode actor_learner``): what an actor ships
after each rollout, and the learner that keeps one replay per actor and makes ACER's updates.

An actor is an :class:`Agent.acer.agent.ACERAgent` that never learns, with a staging replay of
one trajectory (:func:`acting_config`). After each k-step rollout it ships the steps as the
replay stores them (:func:`rollout_message`): the newest frame of each state with its
episode-start flag (the learner's replay rebuilds the stacks), action, reward, done, mu, the
time-limit flags and the rare final frames. Its first rollout also carries the state it starts
from (:func:`actor_start`).

:class:`ACERLearner` appends each rollout to that actor's replay (the original's per-worker
capacity, ``total_memory_size // (n_workers * k)``) and, per batch of rollouts, makes the
on-policy update on them and ``Poisson(replay_ratio)`` updates on trajectories drawn from
their actors' replays, with ``ACERAgent.update_batch`` itself (the same loss, clip, Adam and
Polyak step as the other backends). The on-policy update starts from the learner's latest
weights, which are ahead of the ones the actor acted with, so rho != 1 there in general:
ACER's truncated importance weights correct for that lag as they do for replayed trajectories.
"""
from __future__ import annotations

import numpy as np
import torch

from Agent.acer.agent import ACERAgent
from Agent.acer.replay import ReplayMemory
from Utils.config import Config


def acting_config(cfg: Config) -> Config:
    """An actor's config: its agent keeps only a staging replay of one trajectory (the
    learner holds the real ones) and saves none of it."""
    return cfg.replaced(total_memory_size=cfg.n_workers * cfg.k, save_replay=False)


def actor_start(agent: ACERAgent, resumed: bool) -> tuple:
    """The state an actor's first rollout starts from (its newest frame and episode-start
    flag) and whether the actor continues a saved state: the learner's replay needs it when it
    starts afresh, and it replaces the cut state when the actor is a restart."""
    replay = agent.replay
    slot = (replay.n_frames - 1) % replay.size
    return replay.frames[slot].copy(), bool(replay.first[slot]), resumed


def rollout_message(agent: ACERAgent, k: int) -> dict:
    """The last ``k`` steps of an actor's staging replay, as the learner's replay stores them:
    the transitions, and the newest frame (with its episode-start flag) of each state they
    lead to; the final frames of the steps a time limit cut, in step order."""
    replay = agent.replay
    end = replay.n_transitions
    steps = np.arange(end - k, end)
    slots, next_slots = steps % replay.size, (steps + 1) % replay.size
    truncated = replay.truncated[slots].copy()
    return {"frames": replay.frames[next_slots], "first": replay.first[next_slots],
            "actions": replay.actions[slots], "rewards": replay.rewards[slots],
            "dones": replay.dones[slots], "mus": replay.mus[slots], "truncated": truncated,
            "final_frames": replay.final_frames_of([int(t) for t in steps[truncated]])}


class ACERLearner:
    """One replay per actor and one :class:`ACERAgent` that makes the updates (its
    ``worker_id`` set to the actor whose rollouts it learns from, so that each update is
    counted in that actor's row)."""

    def __init__(self, cfg: Config, params, counters: torch.Tensor, env,
                 rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.agent = ACERAgent(cfg, params, counters, 0, env, rng)
        r = self.agent.replay
        self.replays = [r] + [ReplayMemory(r.capacity, r.k, r.frame_shape, r.mus.shape[1], r.stack,
                                           r.frames.dtype, r.actions.shape[1:], r.actions.dtype)
                             for _ in range(cfg.n_workers - 1)]

    def to_device(self, device: torch.device) -> None:
        """Compute the updates on ``device`` (the global networks are there already)."""
        self.agent.local_net = self.agent.local_net.to(device)
        self.agent.local_params = list(self.agent.local_net.parameters())
        self.agent.device = device

    def load_actor_state(self, worker_id: int, agent_state: dict) -> None:
        """Continue actor ``worker_id``'s replay from its saved state (``worker_<i>.pth``'s
        agent part), if that holds one; ValueError when it does not fit."""
        replay = agent_state.get("replay")
        if replay is not None:
            self.replays[worker_id].load_state_dict(replay, gamma=self.cfg.gamma)

    def actor_state(self, worker_id: int) -> dict:
        """What a worker's state file keeps of its agent: the replay, with ``save_replay``."""
        return {"replay": self.replays[worker_id].state_dict()} if self.cfg.save_replay else {}

    def add(self, worker_id: int, rollout: dict, start: tuple | None) -> tuple[dict, int]:
        """Append a rollout to its actor's replay; the trajectory to learn from (a copy: a
        later rollout or an actor's restart can change or evict it in the replay) and the
        replay's length."""
        replay = self.replays[worker_id]
        if start is not None:
            frame, first, continues = start
            if replay.n_frames == replay.n_transitions:
                replay.add_frame(frame, first)           # a replay that starts afresh
            elif not continues:
                replay.restart_stream(frame)             # an actor that started afresh
        finals = iter(rollout["final_frames"])
        for j in range(len(rollout["actions"])):
            replay.add_transition(rollout["actions"][j], float(rollout["rewards"][j]),
                                  bool(rollout["dones"][j]), rollout["mus"][j],
                                  next(finals) if rollout["truncated"][j] else None)
            replay.add_frame(rollout["frames"][j], first=bool(rollout["first"][j]))
        return replay.latest(), len(replay)

    def learn(self, batch: list[tuple[int, dict]]) -> tuple[dict | None, int]:
        """ACER's updates for a batch of rollouts, each (actor, its trajectory): the on-policy
        update on them, from the latest weights, then Poisson(replay_ratio) updates on one
        trajectory drawn from each of their actors' replays (each ``ACERAgent.update_batch``);
        the first's statistics and the number of updates. With one rollout per batch
        (``--learner_batch 1``) these are ``ACERAgent.update``'s updates, one Adam step per
        trajectory as in the other modes. A batch's updates (and skipped ones) are counted in
        its first actor's row, so that ``--max_bad_updates`` names that actor."""
        agent = self.agent
        agent.worker_id = batch[0][0]
        stats = agent.update_batch([trajectory for _, trajectory in batch])
        n_updates = 1
        if self.cfg.replay_ratio > 0:
            for _ in range(self.rng.poisson(self.cfg.replay_ratio)):
                agent.update_batch([self.replays[i].sample(self.rng) for i, _ in batch])
                n_updates += 1
        return stats, n_updates
