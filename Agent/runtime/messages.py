"""What workers tell the main process, as small typed records.

A worker (or a backend on its behalf) puts these on its queue; the trainer handles each by
its type (:meth:`Agent.runtime.trainer.Trainer._handle`). They pickle as they are, through a
multiprocessing queue or Ray's object store.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Started:
    """The worker's first environment step, at wall-clock ``time``."""
    worker_id: int
    time: float


@dataclass(frozen=True)
class Episode:
    """A finished game: its raw score and length, and the worker's step count at its end."""
    worker_id: int
    reward: float
    length: int
    step: int


@dataclass(frozen=True)
class Life:
    """A finished life of an Atari game (the original's episode); ``game_over`` on the last."""
    worker_id: int
    reward: float
    length: int
    step: int
    game_over: bool


@dataclass(frozen=True)
class Iteration:
    """One rollout and its updates: the update's statistics ({} when none was applied) and
    the size of the worker's replay (0 without one)."""
    worker_id: int
    stats: dict
    replay_len: int


@dataclass(frozen=True)
class WorkerWarning:
    """Something the user should know that does not stop the run."""
    worker_id: int
    text: str


@dataclass(frozen=True)
class WorkerError:
    """The worker raised: its traceback. The run stops, naming the worker."""
    worker_id: int
    traceback: str


Message = Started | Episode | Life | Iteration | WorkerWarning | WorkerError
