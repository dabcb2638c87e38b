"""What the Ray backends share: weights as flat vectors, state dicts as NumPy arrays, joining
Ray, and the message lists that stand in for the local workers' queue.

Weights and gradients travel as one flat float32 NumPy vector each: Ray moves NumPy arrays
through its object store without pickling them, where a torch tensor is pickled whole.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch


def flatten(tensors) -> np.ndarray:
    """The tensors' values as one float32 vector in the CPU's memory (a learner's GPU
    weights are copied over; CPU tensors are not)."""
    return torch.cat([t.detach().reshape(-1).float().cpu() for t in tensors]).numpy()


@torch.no_grad()
def unflatten_into(vector: np.ndarray, tensors) -> None:
    """Copy a :func:`flatten` vector back into ``tensors`` in place. A vector from Ray's object
    store is read-only; it is only read here, so torch's warning about writing to it is moot."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        flat, offset = torch.from_numpy(np.asarray(vector)), 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n


def numpy_state(state_dict: dict) -> dict:
    return {k: v.detach().numpy().copy() for k, v in state_dict.items()}


def torch_state(state: dict) -> dict:
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


def numpy_adam(state: dict) -> dict:
    """A :meth:`NN.shared_adam.SharedAdam.state_dict` with its moments as NumPy arrays (for Ray)."""
    return {**state, "exp_avg": [m.numpy() for m in state["exp_avg"]],
            "exp_avg_sq": [v.numpy() for v in state["exp_avg_sq"]]}


def torch_adam(state: dict) -> dict:
    """The inverse of :func:`numpy_adam`."""
    return {**state, "exp_avg": [torch.from_numpy(np.array(m)) for m in state["exp_avg"]],
            "exp_avg_sq": [torch.from_numpy(np.array(v)) for v in state["exp_avg_sq"]]}


def connect(cfg):
    """Start or join Ray (``cfg.ray_address``); the ``ray`` module. Its workers import the
    project as any process does: installed (``pip install -e .``, which the set-up does), or
    from the driver script's folder, which Ray puts on their path (``python main.py``)."""
    import ray
    runtime_env = {"env_vars": {"OMP_NUM_THREADS": "1"}}
    ray.init(address=cfg.ray_address or None, runtime_env=runtime_env, include_dashboard=False,
             logging_level="ERROR", log_to_driver=True)
    return ray


class Outbox(list):
    """Messages kept in a list and taken as a worker's queue takes them (``put``): an actor's
    messages for the driver, or the driver's own notes for a worker."""

    def put(self, message) -> None:
        self.append(message)
