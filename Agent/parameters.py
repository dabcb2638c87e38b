"""Where a worker's agent gets the global weights from and sends its gradients to.

An agent sees the global state only through a :class:`ParameterStore`: ``pull(local_params)``
(copy the latest global weights into its local network), ``step(grads)`` (one optimizer update
of the global network with a gradient computed locally; for ACER the average network follows)
and ``average_net`` (ACER's average policy network, for forward passes). :class:`SharedParameters`
is the local backend: every worker process holds the same shared-memory tensors and steps the
shared Adam itself (Hogwild, with the lock of :class:`NN.shared_adam.SharedAdam`); the Ray
backend's ``RayParameters`` is the other. :func:`apply_gradients` and :func:`update_global` are
what an agent calls to send an update, with the per-worker counter table's columns.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch

from NN.shared_adam import SharedAdam, polyak_update


# Columns of the shared per-worker counter table. BAD_STREAK: updates skipped in a row;
# SAVING: 1 once the worker has left its loop to save its own state (a lock-free mark the main
# process reads, so that it waits for a worker writing a large replay instead of killing it).
STEPS, EPISODES, ITERATIONS, UPDATES, SKIPPED, BAD_STREAK, SAVING = range(7)
N_COUNTERS = 7


def apply_gradients(loss: torch.Tensor, local_params: list[torch.Tensor], optimizer,
                    max_grad_norm: float, counters: torch.Tensor, worker_id: int) -> float | None:
    """Backpropagate ``loss`` through the local network, clip the gradient norm and step the
    global network with it (``optimizer``: anything with ``step(grads)``, such as
    :class:`Agent.parameters.SharedParameters` or the shared Adam itself). A non-finite loss or
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


@torch.no_grad()
def copy_params(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    """Copy parameter values from ``src`` to ``dst`` in place."""
    torch._foreach_copy_(dst, src)


class SharedParameters:
    """The global network, ACER's average network (or None) and the shared Adam, in shared
    memory; usable from any worker process that received them."""

    def __init__(self, global_net: torch.nn.Module, average_net: torch.nn.Module | None,
                 optimizer: SharedAdam, polyak: float):
        self.global_net, self.average_net, self.optimizer = global_net, average_net, optimizer
        self.polyak = polyak
        self.obs_shape, self.n_actions = global_net.obs_shape, global_net.n_actions
        self.global_params = list(global_net.parameters())
        self.average_params = list(average_net.parameters()) if average_net is not None else None

    def pull(self, local_params: list[torch.Tensor]) -> None:
        """Local weights <- the global ones (read without a lock, as in Hogwild)."""
        copy_params(local_params, self.global_params)

    def step(self, grads: list[torch.Tensor]) -> int:
        """One shared Adam update with ``grads``; then avg <- polyak * global + (1 - polyak) * avg."""
        t = self.optimizer.step(grads)
        if self.average_params is not None:
            polyak_update(self.average_params, self.global_params, self.polyak)
        return t
