"""The algorithms a run can use, by name: the built-in ACER and A3C, and any other that was
:func:`Agent.registry.register`-ed. Everything that needs an algorithm from its name (the
runtime's composer, the command line, play) looks it up here, and :func:`check_config` is the
one place a run's config is checked.
"""
from __future__ import annotations

from Agent.a3c.algorithm import A3C
from Agent.acer.algorithm import ACER
from Agent.registry import Algorithm, register, registered
from Utils.config import Config, ConfigError, check_memory, load_config
from Utils.precision import check_precision

BUILT_IN = (register(ACER), register(A3C))


def names() -> tuple[str, ...]:
    return tuple(registered())


def get(name: str) -> Algorithm:
    """The algorithm ``name``; a one-line :class:`ConfigError` naming the known ones."""
    found = registered().get(name)
    if found is None:
        raise ConfigError(f"--algo must be one of {', '.join(names())}, got '{name}'")
    return found


def check_config(cfg: Config) -> Algorithm:
    """Every check of a run's config, in one place: each setting's range
    (:meth:`Utils.config.Config.validate`), what the algorithm supports, and the algorithm's
    own checks (:func:`check_fits` adds those that need the environment). Returns the
    algorithm; raises :class:`ConfigError`."""
    algorithm = get(cfg.algo)
    cfg.validate()
    _check_support(cfg, algorithm)
    algorithm.validate(cfg)
    return algorithm


def _check_support(cfg: Config, algorithm: Algorithm) -> None:
    """Refuse a precision or Ray mode the algorithm does not support, naming those that do."""
    others = registered().values()
    if cfg.precision == "bf16" and not algorithm.bf16:
        why = f": {algorithm.bf16_note}" if algorithm.bf16_note else ""
        able = " / ".join(a.name for a in others if a.bf16)
        raise ConfigError(f"--precision bf16 is for --algo {able} only{why}; use --precision fp32")
    if cfg.backend == "ray" and cfg.ray_mode == "actor_learner" and algorithm.actor_learner is None:
        able = " / ".join(a.name for a in others if a.actor_learner is not None)
        raise ConfigError(f"--ray_mode actor_learner runs --algo {able} only; --algo "
                          f"{cfg.algo} runs with --ray_mode hogwild")


def check_fits(cfg: Config, env_spec: tuple) -> None:
    """The checks of a checked config (:func:`check_config`) that need the environment's spec
    (:func:`Agent.runtime.state.env_spec`: obs shape, actions, rollout length, bounds): a
    precision its observations cannot use, or a run too big for the memory available now,
    raise :class:`ConfigError`."""
    problem = check_precision(cfg.precision, env_spec[0])
    if problem:
        raise ConfigError(problem)
    check_memory(cfg, get(cfg.algo).memory(cfg, *env_spec))


def load_run_config(yaml_path: str, algo: str, overrides: dict, continuous: bool = False) -> Config:
    """:func:`Utils.config.load_config`, then :func:`check_config`."""
    cfg = load_config(yaml_path, algo, overrides, continuous)
    check_config(cfg)
    return cfg
