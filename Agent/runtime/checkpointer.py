"""Writing a run's checkpoint and best weights, and remembering what was written.

:class:`Checkpointer` owns the run folder's ``checkpoint.pth`` and ``best.pth``: it never
writes weights with a non-finite value over a good file, keeps the previous checkpoint when a
write fails (and stops the run then only with ``stop_on_save_error``), and knows the step and
running reward of the last files it wrote. What goes into a checkpoint is the trainer's
business (:meth:`Agent.runtime.trainer.Trainer.checkpoint_state`).
"""
from __future__ import annotations

import os
import sys
import time

import torch

from Utils.checkpoint import BEST_NAME, CHECKPOINT_NAME, WEIGHT_KEYS, CheckpointError, load_checkpoint, save_checkpoint


class WorkerFailed(RuntimeError):
    """A worker process raised or died, or the run had to stop (non-finite updates, a failed save)."""


def all_finite(weights: dict) -> bool:
    return all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


class Checkpointer:
    """The checkpoint and best weights of the run in ``run_dir``; ``last_saved_step`` starts at
    a resumed run's saved step."""

    def __init__(self, run_dir: str, stop_on_save_error: bool, last_saved_step: int = 0):
        self.run_dir, self.stop_on_save_error = run_dir, stop_on_save_error
        self.path = os.path.join(run_dir, CHECKPOINT_NAME)
        self.best_path = os.path.join(run_dir, BEST_NAME)
        self.last_saved_step = last_saved_step
        self.last_save_time = time.time()
        self.saved = False          # a checkpoint was written by this process
        self.save_failed = False    # the latest save attempt failed
        self.best_reward = self._best_so_far()

    def _best_so_far(self) -> float | None:
        """The running reward ``best.pth`` was written at (a resumed run continues from it)."""
        if not os.path.exists(self.best_path):
            return None
        try:
            return float(load_checkpoint(self.best_path)["best_running_reward"])
        except (CheckpointError, KeyError, TypeError, ValueError):
            print(f"warning: {self.best_path} is unreadable; it will be replaced by the next best "
                  "weights", file=sys.stderr, flush=True)
            return None

    def minutes_since_save(self) -> float:
        return (time.time() - self.last_save_time) / 60.0

    def save(self, state: dict) -> bool:
        """Write the checkpoint ``state``; True if it was written. A failed write (disk full, no
        permission, file too large) leaves the previous checkpoint as it was and is reported;
        with ``stop_on_save_error`` it stops the run (:class:`WorkerFailed`)."""
        if not all_finite(state["model"]):
            print(f"warning: the shared weights hold a non-finite value; {self.path} is not "
                  "overwritten", file=sys.stderr, flush=True)
            return False
        try:
            save_checkpoint(state, self.path)
        except OSError as err:
            kept = (f"the previous one (step {self.last_saved_step}) is kept"
                    if os.path.exists(self.path) else "no checkpoint exists yet")
            message = f"checkpoint not saved to {self.path}: {err.strerror or err}; {kept}"
            if self.stop_on_save_error:
                raise WorkerFailed(f"stopping: {message}") from None
            print(f"warning: {message}", file=sys.stderr, flush=True)
            self.save_failed = True
            return False
        self.last_saved_step = state["counters"]["global_steps"]
        self.last_save_time = time.time()
        self.saved = True
        return True

    def is_better(self, running_reward: float | None) -> bool:
        """Whether ``running_reward`` beats the one ``best.pth`` was written at."""
        return running_reward is not None and (self.best_reward is None
                                               or running_reward > self.best_reward)

    def save_best(self, state: dict, running_reward: float, episodes: int) -> bool:
        """Write ``best.pth``, the playable part of the checkpoint ``state`` (as ``--export``
        writes it) with the running reward it was reached at; True if written."""
        if not all_finite(state["model"]):
            return False
        best = {key: state[key] for key in WEIGHT_KEYS if key in state}
        best["best_running_reward"] = float(running_reward)
        best["episodes"] = int(episodes)
        try:
            save_checkpoint(best, self.best_path)
        except OSError as err:
            print(f"warning: best weights not saved to {self.best_path}: {err.strerror or err}",
                  file=sys.stderr, flush=True)
            return False
        self.best_reward = float(running_reward)
        return True
