"""The algorithms a run can train, one record each.

An :class:`Algorithm` says everything the runtime, the backends, the checkpoints and the
command line need to know about an algorithm, so that none of them branches on its name: how
to build its network and its worker's agent, whether it keeps an average network and a
replay, its rollout length, the memory it needs beyond the workers, and its own checks of a
config. ``Agent/acer/algorithm.py`` and ``Agent/a3c/algorithm.py`` hold the built-in ones,
registered by :mod:`Agent.algorithms`, where the rest of the project looks them up;
:func:`register` adds another (docs/implementation.md, "Adding an algorithm").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from Utils.config import Config, declare_algorithm, own_setting  # noqa: F401 (own_setting: for records)


def no_checks(cfg: Config) -> None:
    """An algorithm without checks of its own beyond the config's ranges."""


def no_memory(cfg: Config, obs_shape: tuple, n_actions: int, itemsize: int,
              action_bounds) -> tuple[int, str, str]:
    """An algorithm that holds nothing beyond its workers."""
    return 0, "", ""


@dataclass(frozen=True)
class ActorLearnerParts:
    """What ``--ray_mode actor_learner`` needs of an algorithm (ACER's: Agent/acer/learner.py).

    ``acting_config(cfg)``: an actor's config (its agent acts and never learns).
    ``actor_start(agent, resumed)``: what an actor's first rollout carries of the state it
    starts from (None if nothing). ``rollout_message(agent, n)``: the ``n`` steps the actor's
    agent just took, as plain arrays for the learner. ``make_learner(cfg, params, counters,
    env, rng)``: the learner's :class:`Agent.interface.ReplayLearner`. ``box_actions``: whether
    it runs Box action spaces too."""

    acting_config: Callable
    actor_start: Callable
    rollout_message: Callable
    make_learner: Callable
    box_actions: bool = False


@dataclass(frozen=True)
class Algorithm:
    """One algorithm, as the rest of the project sees it. Its functions are module-level ones
    (no lambdas): the record travels to spawned workers and Ray actors by pickle.

    ``build_network(spec)``: its network, from a :class:`Utils.network_spec.NetworkSpec` (the
    environment's shapes and the run's network settings).
    ``make_agent(cfg, params, counters, worker_id, env, rng)``: a worker's
    :class:`Agent.interface.Agent`. ``rollout_length(cfg)``: agent steps a worker takes between
    two of its updates. ``memory(cfg, obs_shape, n_actions, itemsize, action_bounds)``: bytes
    the run needs beyond its workers, what they are and a short name (for
    :func:`Utils.config.check_memory`, before a run).
    ``validate(cfg)``: raise :class:`Utils.config.ConfigError` for a config that cannot work.
    ``fresh_worker``: what a worker that resumes without its own state starts with, in words.
    ``title(cfg)``: the algorithm as the console names it. ``bf16``: whether it has a bfloat16
    learner (``bf16_note``: why not). ``actor_learner``: its :class:`ActorLearnerParts`, when
    ``--ray_mode actor_learner`` can run it. ``reads``: settings of other
    algorithms it reads too (a key may be shared). ``settings``: its own hyperparameters
    (:func:`Utils.config.own_setting` tuples), which become flags, YAML keys and checked
    ranges like the built-in ones; the built-in algorithms' own are declared ``only`` for
    them in :class:`Utils.config.Hyperparameters`."""

    name: str
    build_network: Callable
    make_agent: Callable
    rollout_length: Callable[[Config], int]
    needs_average: bool = False
    has_replay: bool = False
    memory: Callable = no_memory
    validate: Callable[[Config], None] = no_checks
    fresh_worker: str = "new seed and environment"
    title: Callable[[Config], str] | None = None
    bf16: bool = False            # --precision bf16 has a bfloat16 learner for it
    bf16_note: str = ""           # ... and why not, when it has none
    actor_learner: ActorLearnerParts | None = None   # --ray_mode actor_learner can run it
    reads: tuple[str, ...] = ()   # settings declared for other algorithms that it reads too
    settings: tuple = ()          # its own settings (Utils.config.own_setting)

    def banner(self, cfg: Config) -> str:
        return self.title(cfg) if self.title is not None else self.name.upper()


_REGISTRY: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> Algorithm:
    """Add ``algorithm`` (or replace the one of the same name), and its name to the config's
    known algorithms; returns it."""
    declare_algorithm(algorithm.name, algorithm.reads, algorithm.settings)
    _REGISTRY[algorithm.name] = algorithm
    return algorithm


def registered() -> dict[str, Algorithm]:
    """The algorithms registered so far, by name (:mod:`Agent.algorithms` registers the
    built-in ones and is where the rest of the project looks them up)."""
    return dict(_REGISTRY)
