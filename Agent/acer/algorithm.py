"""ACER's registry record: its network, agent, replay and checks (plain functions, so that
the record pickles into a spawned worker or a Ray actor)."""
from __future__ import annotations

from Agent.acer.agent import ACERAgent, ContinuousACERAgent
from Agent.acer.replay import replay_capacity
from Agent.acer.learner import ACERLearner, acting_config, actor_start, rollout_message
from Agent.registry import ActorLearnerParts, Algorithm
from NN.networks import acer_network
from Utils.atari_wrappers import box_bounds
from Utils.config import Config, ConfigError, plural, replay_bytes_per_transition


def make_agent(cfg, params, counters, worker_id, env, rng):
    """:class:`ACERAgent`, or :class:`ContinuousACERAgent` for a Box action space."""
    agent_class = ACERAgent if box_bounds(env) is None else ContinuousACERAgent
    return agent_class(cfg, params, counters, worker_id, env, rng)


def replay_memory(cfg: Config, obs_shape: tuple, n_actions: int, itemsize: int,
                  action_bounds) -> tuple[int, str, str]:
    """The replays of all workers: ``total_memory_size`` transitions."""
    per_step = replay_bytes_per_transition(obs_shape, itemsize, n_actions, cfg.frame_stack,
                                           continuous=action_bounds is not None)
    return (cfg.total_memory_size * per_step, f"a replay of {cfg.total_memory_size} transitions",
            "replay")


def rollout_length(cfg: Config) -> int:
    return cfg.k


def title(cfg: Config) -> str:
    return "ACER"


def validate(cfg: Config) -> None:
    if cfg.replay_ratio > 0 and replay_capacity(cfg) < 1:
        raise ConfigError(f"--total_memory_size {cfg.total_memory_size} is too small for "
                          f"{plural(cfg.n_workers, 'worker')} with k={cfg.k}: each worker needs at "
                          f"least one trajectory (>= {cfg.n_workers * cfg.k})")


ACER = Algorithm(
    name="acer", build_network=acer_network, make_agent=make_agent,
    rollout_length=rollout_length, needs_average=True, has_replay=True,
    memory=replay_memory, validate=validate, bf16=True,
    actor_learner=ActorLearnerParts(acting_config, actor_start, rollout_message, ACERLearner),
    fresh_worker="new seed and environment, empty replay", title=title)
