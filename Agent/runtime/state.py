"""The shared state of a training run, apart from the loop that supervises it.

:class:`RunState` holds what every backend and the checkpoints read and write: the global
network, ACER's average network (or None), the shared Adam and the per-worker counter table,
all in shared memory, with the environment's spec. :meth:`RunState.snapshot` copies it
between two updates for a checkpoint. :func:`worker_resume_state` is the one rule for
resuming a worker from its own ``worker_<i>.pth``, the same for every backend.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import gymnasium as gym
import torch

from Agent.interface import EPISODES, ITERATIONS, N_COUNTERS, SKIPPED, STEPS, UPDATES
from Agent.registry import Algorithm
from NN.shared_adam import SharedAdam
from Utils.atari_wrappers import box_bounds, make_env
from Utils.checkpoint import read_worker_state
from Utils.config import Config
from Utils.network_spec import NetworkSpec

LOCK_TIMEOUT_S = 5.0   # a snapshot waits this long for the optimizer lock, then copies without it


class Snapshot(NamedTuple):
    """What a checkpoint records of the run's global state, copied between two updates."""

    model: dict            # the global network's weights
    optimizer: dict        # the shared Adam's state (SharedAdam.state_dict)
    average: dict | None   # ACER's average network, else None
    counters: dict         # RunState.counter_totals()


def env_spec(cfg: Config) -> tuple[tuple[int, ...], int, int, tuple | None]:
    """Observation shape, action count (or a Box's dimension), bytes per observation value and
    the action bounds ((low, high) lists for a Box, None for discrete actions) of the training
    environment."""
    env = make_env(cfg.env_name, training=True, frame_stack=cfg.frame_stack)
    try:
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) not in (1, 3):
            raise ValueError(f"{cfg.env_name} has observations {space}; the networks take vectors "
                             "or image stacks (a Box of 1 or 3 dimensions)")
        obs = (tuple(space.shape), int(space.dtype.itemsize))
        bounds = box_bounds(env)
        if bounds is not None:
            return obs[0], len(bounds[0]), obs[1], bounds
        if not hasattr(env.action_space, "n"):
            raise ValueError(f"--algo {cfg.algo} needs a discrete or a Box action space; "
                             f"{cfg.env_name} has {env.action_space}")
        return obs[0], int(env.action_space.n), obs[1], None
    finally:
        env.close()


def worker_state_path(run_dir: str, worker_id: int) -> str:
    """Where worker ``worker_id`` keeps its own state between a stop and a resume."""
    return os.path.join(run_dir, f"worker_{worker_id}.pth")


_COUNTER_COLUMNS = {"worker_steps": STEPS, "worker_episodes": EPISODES,
                    "worker_iterations": ITERATIONS, "worker_updates": UPDATES,
                    "worker_skipped_updates": SKIPPED}


class RunState:
    """The global networks, the shared Adam and the counter table of a run, built from the
    config and the ``algorithm``'s record (its network; an average network if it needs one),
    and a checkpoint when resuming."""

    def __init__(self, cfg: Config, algorithm: Algorithm, spec: tuple,
                 resume_state: dict | None = None):
        self.cfg, self.algorithm = cfg, algorithm
        self.obs_shape, self.n_actions, _, self.action_bounds = spec
        self.network_spec = NetworkSpec.of(self.obs_shape, self.n_actions, cfg, self.action_bounds)
        self.resumed = resume_state is not None
        torch.manual_seed(cfg.seed)
        self.global_net = self._network().share_memory()
        self.average_net = None
        if algorithm.needs_average:
            self.average_net = self._network()
            self.average_net.load_state_dict(self.global_net.state_dict())
            self.average_net.share_memory()
        self.optimizer = SharedAdam(self.global_net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        self.counters = torch.zeros(cfg.n_workers, N_COUNTERS, dtype=torch.int64).share_memory_()
        if resume_state is not None:
            self._restore(resume_state)

    def _network(self) -> torch.nn.Module:
        return self.algorithm.build_network(self.network_spec)

    def _restore(self, saved: dict) -> None:
        self.global_net.load_state_dict(saved["model"])
        if self.average_net is not None:
            self.average_net.load_state_dict(saved["average_model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        for key, col in _COUNTER_COLUMNS.items():
            values = list(saved["counters"].get(key, []))
            if len(values) == self.cfg.n_workers:
                self.counters[:, col] = torch.tensor(values)
            elif values:  # worker count changed: keep the totals on worker 0
                self.counters[0, col] = sum(values)

    @property
    def global_steps(self) -> int:
        return int(self.counters[:, STEPS].sum())

    def counter_totals(self) -> dict:
        """The run's counters as plain numbers: steps, episodes, iterations and updates per worker."""
        c = self.counters.clone()
        totals = {"global_steps": int(c[:, STEPS].sum())}
        totals.update({key: c[:, col].tolist() for key, col in _COUNTER_COLUMNS.items()})
        totals["optimizer_steps"] = int(self.optimizer.step_count)
        return totals

    def snapshot(self) -> Snapshot:
        """Copies of the shared weights and Adam state, taken between two updates, and the
        counters.

        The copy is taken under the optimizer's lock, so weights and moments belong to the same
        step. Checking the shared tensors while a worker writes them is not safe: torch's
        ``isfinite(x)`` is ``(x == x) & (x.abs() != inf)``, which reads ``x`` twice and can
        call a value that changed in between non-finite; a copy cannot change. A worker killed
        while holding the lock would block the final save, so after a wait the copy is taken
        without it."""
        locked = self.optimizer.lock.acquire(timeout=LOCK_TIMEOUT_S)
        try:
            model = {k: v.detach().clone() for k, v in self.global_net.state_dict().items()}
            adam = self.optimizer.state_dict()
        finally:
            if locked:
                self.optimizer.lock.release()
        average = self.average_net.state_dict() if self.average_net is not None else None
        return Snapshot(model, adam, average, self.counter_totals())

    def load_snapshot(self, model: dict, average: dict | None, optimizer: dict) -> None:
        """Replace the weights and Adam state with a backend's (a parameter server's, a GPU
        learner's), so that a checkpoint is the same file whichever backend wrote it."""
        self.global_net.load_state_dict(model)
        if self.average_net is not None and average is not None:
            self.average_net.load_state_dict(average)
        self.optimizer.load_state_dict(optimizer)


def worker_resume_state(state: RunState, run_dir: str, worker_id: int) -> tuple[dict | None, str | None]:
    """The saved state (``worker_<i>.pth``) that worker ``worker_id`` continues from, or None
    when it starts afresh, and a warning for the console (or None), by
    :func:`Utils.checkpoint.read_worker_state`'s rule. The Ray backends read it here; a local
    worker process applies the same function itself, so that the file is read once, in the
    process that uses it."""
    if not state.resumed:
        return None, None
    return read_worker_state(worker_state_path(run_dir, worker_id),
                             int(state.counters[worker_id, ITERATIONS]), state.algorithm.fresh_worker)
