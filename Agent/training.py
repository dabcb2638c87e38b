"""Putting a training run together: run state, checkpointer, backend and trainer.

:func:`build_trainer` is what ``main.py`` (and the tests, and the benches) call to get a
:class:`Agent.runtime.trainer.Trainer` for a config: it builds the run's shared state, picks
the backend the config names and hands both to the trainer.
"""
from __future__ import annotations

from Agent.algorithms import get
from Agent.runtime.checkpointer import Checkpointer
from Agent.runtime.state import RunState, env_spec
from Agent.runtime.trainer import Trainer
from Utils.config import Config


def backend_class(cfg: Config):
    """The backend ``cfg`` asks for (``--backend``, ``--ray_mode``); ImportError without Ray."""
    if cfg.backend == "ray":
        if cfg.ray_mode == "actor_learner":
            from Agent.backends.actor_learner import ActorLearnerBackend
            return ActorLearnerBackend
        from Agent.backends.ray_hogwild import RayBackend
        return RayBackend
    from Agent.backends.local import LocalBackend
    return LocalBackend


def build_trainer(cfg: Config, run_dir: str, log_dir: str, resume_state: dict | None = None,
                  spec: tuple | None = None, backend=None) -> Trainer:
    """The trainer of the run in ``run_dir``, new or continued from ``resume_state`` (its
    checkpoint); ``spec``: the environment's :func:`Agent.runtime.state.env_spec`, if known;
    ``backend``: a backend class to use instead of the config's."""
    state = RunState(cfg, get(cfg.algo), spec or env_spec(cfg), resume_state)
    saved_step = int(resume_state["counters"]["global_steps"]) if resume_state else 0
    checkpoints = Checkpointer(run_dir, cfg.stop_on_save_error, saved_step)
    backend = (backend or backend_class(cfg))(state, run_dir, checkpoints)
    return Trainer(cfg, run_dir, log_dir, state, backend, checkpoints, resume_state)
