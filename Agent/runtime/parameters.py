"""The local backend's :class:`Agent.interface.ParameterStore`: the global network, ACER's
average network and the shared Adam in shared memory. Every worker process holds the same
tensors and steps the shared Adam itself (Hogwild, with the lock of
:class:`NN.shared_adam.SharedAdam`).
"""
from __future__ import annotations

import torch

from NN.shared_adam import SharedAdam, polyak_update


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
