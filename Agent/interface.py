"""What an algorithm and the runtime that drives it agree on, and nothing else.

* :class:`Agent`: what the worker loop drives (``begin_rollout``, ``act``, ``record``,
  ``observe``, ``learn``, its state).
* :class:`ParameterStore`: the global weights as an agent sees them: ``pull(local_params)``
  (copy the latest global weights into its local network), ``step(grads)`` (one optimizer update
  of the global network with a gradient computed locally; for ACER the average network follows)
  and ``average_net`` (ACER's average policy network, for forward passes). The runtime's
  ``SharedParameters`` (shared memory) and the Ray backend's ``RayParameters`` are two.
* :class:`ReplayLearner`: an algorithm's learner for the actor-learner mode.
* The columns of the per-worker counter table, and :func:`apply_gradients` /
  :func:`update_global`, which an agent calls to send an update.

Algorithms (``Agent.acer``, ``Agent.a3c``) import this module, never the runtime.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch


# Columns of the shared per-worker counter table. BAD_STREAK: updates skipped in a row;
# SAVING: 1 once the worker has left its loop to save its own state (a lock-free mark the main
# process reads, so that it waits for a worker writing a large replay instead of killing it).
STEPS, EPISODES, ITERATIONS, UPDATES, SKIPPED, BAD_STREAK, SAVING = range(7)
N_COUNTERS = 7


def apply_gradients(loss: torch.Tensor, local_params: list[torch.Tensor], optimizer,
                    max_grad_norm: float, counters: torch.Tensor, worker_id: int) -> float | None:
    """Backpropagate ``loss`` through the local network, clip the gradient norm and step the
    global network with it (``optimizer``: anything with ``step(grads)``, such as
    :class:`Agent.runtime.parameters.SharedParameters` or the shared Adam itself). A non-finite loss or
    gradient is never written into the shared weights: the update is skipped and counted.
    Returns the gradient norm, or None if skipped."""
    for p in local_params:
        p.grad = None
    loss.backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(local_params, max_grad_norm))
    if not (math.isfinite(float(loss.detach())) and math.isfinite(grad_norm)):
        counters[worker_id, SKIPPED] += 1
        counters[worker_id, BAD_STREAK] += 1
        return None
    optimizer.step([p.grad for p in local_params])
    counters[worker_id, UPDATES] += 1
    counters[worker_id, BAD_STREAK] = 0
    return grad_norm


DIAGNOSTICS = ("rho_mean", "trust_region_active", "kl_average")  # ACER's, when its loss gives them


def update_global(loss: torch.Tensor, stats: dict, local_params: list[torch.Tensor],
                  params: ParameterStore, cfg,
                  counters: torch.Tensor, worker_id: int) -> dict[str, float] | None:
    """:func:`apply_gradients` with the run's clip, then the update's statistics as numbers
    for the logger (None when the update was skipped)."""
    grad_norm = apply_gradients(loss, local_params, params, cfg.max_grad_norm, counters, worker_id)
    if grad_norm is None:
        return None
    out = {"pg_loss": float(stats["policy_loss"]), "value_loss": float(stats["value_loss"]),
           "entropy": float(stats["entropy"]), "grad_norm": grad_norm}
    out.update({key: float(stats[key]) for key in DIAGNOSTICS if key in stats})
    return out


class ParameterStore(Protocol):
    """The global weights as an agent sees them (:class:`SharedParameters`, Ray's
    ``RayParameters``)."""

    obs_shape: tuple
    n_actions: int
    average_net: torch.nn.Module | None

    def pull(self, local_params: list[torch.Tensor]) -> None: ...
    def step(self, grads: list[torch.Tensor]) -> int: ...


class Agent(Protocol):
    """What the worker loop drives (``ACERAgent``, ``ContinuousACERAgent``, ``A3CAgent``)."""

    rollout_length: int

    def begin_rollout(self) -> None: ...
    def act(self, obs): ...
    def record(self, action, reward: float, terminated: bool, truncated: bool, next_obs) -> None: ...
    def observe(self, obs, first: bool) -> None: ...
    def learn(self) -> dict[str, float] | None: ...
    def memory_size(self) -> int: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict, obs) -> None: ...


class ReplayLearner(Protocol):
    """An algorithm's learner in the actor-learner mode (``Agent.acer.learner.ACERLearner``):
    it stores the actors' rollouts and learns from batches of them. The backend's ``Learner``
    holds the networks, the Adam, the counters and the policy version around it."""

    def add(self, worker_id: int, rollout: dict, start) -> tuple[dict, int]: ...
    def learn(self, batch: list[tuple[int, dict]]) -> tuple[dict | None, int]: ...
    def load_actor_state(self, worker_id: int, agent_state: dict) -> None: ...
    def actor_state(self, worker_id: int) -> dict: ...
    def to_device(self, device: torch.device) -> None: ...
