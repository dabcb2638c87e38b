"""Snapshots of an environment's state, for an exact resume of a worker.

:func:`env_state` takes everything a Gymnasium environment needs to continue exactly (each
wrapper's state, the emulator's or the base environment's, its RNG) as plain tensors and
numbers; :func:`restore_env_state` puts an environment built the same way back into it. It
knows the wrappers of :mod:`Utils.atari_wrappers`' pipeline, ALE games and MuJoCo.
"""
from __future__ import annotations

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, RecordEpisodeStatistics

from Utils.atari_wrappers import EpisodicLife


# Attributes that carry state from one step to the next, per wrapper type (the rest is
# configuration fixed at construction). Used to snapshot and restore an environment exactly.
_WRAPPER_STATE = {
    FrameStackObservation: ("obs_queue",),
    AtariPreprocessing: ("obs_buffer", "lives", "game_over"),
    EpisodicLife: ("lives", "game_over", "life_return", "life_length"),
    RecordEpisodeStatistics: ("episode_returns", "episode_lengths", "episode_count"),
    gym.wrappers.TimeLimit: ("_elapsed_steps",),
    gym.wrappers.common.OrderEnforcing: ("_has_reset",),
    gym.wrappers.common.PassiveEnvChecker: ("checked_reset", "checked_step", "checked_data_reuse"),
}


# MuJoCo data fields that carry a simulation from one step to the next.
_MUJOCO_STATE = ("qpos", "qvel", "act", "qacc_warmstart", "time")


def _plain(value):
    """Arrays to tensors, sequences of arrays to lists of tensors; numbers as they are."""
    import torch
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, (list, tuple)) or type(value).__name__ == "deque":
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _unplain(value, current):
    """Inverse of :func:`_plain`, shaped like the attribute's ``current`` value."""
    import torch
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    if isinstance(value, list):
        items = [_unplain(v, None) for v in value]
        if type(current).__name__ == "deque":
            current.clear()
            current.extend(items)
            return current
        return items
    return value


def env_state(env: gym.Env) -> dict:
    """Everything an environment needs to continue exactly: wrapper state, the emulator
    (ALE state with its RNG) or the base env's arrays and numbers, and its np_random."""
    import torch
    layers, e = [], env
    while isinstance(e, gym.Wrapper):
        layers.append({name: _plain(getattr(e, name)) for name in _WRAPPER_STATE.get(type(e), ())})
        e = e.env
    state = {"wrappers": layers, "np_random": e.np_random.bit_generator.state}
    if hasattr(e, "ale"):
        state["ale"] = torch.frombuffer(bytearray(e.ale.cloneState(include_rng=True).serialize()),
                                        dtype=torch.uint8).clone()
    else:
        state["base"] = {k: _plain(v) for k, v in vars(e).items()
                         if isinstance(v, (np.ndarray, bool, int, float, type(None))) and not k.startswith("_np")}
    if hasattr(e, "data") and hasattr(e, "set_state"):  # MuJoCo: the simulator's state
        state["mujoco"] = {name: _plain(np.array(getattr(e.data, name))) for name in _MUJOCO_STATE}
    return state


def restore_env_state(env: gym.Env, state: dict) -> None:
    """Put ``env`` (built like the one snapshotted) back into the state :func:`env_state` took."""
    layers, e = iter(state["wrappers"]), env
    while isinstance(e, gym.Wrapper):
        for name, value in next(layers).items():
            setattr(e, name, _unplain(value, getattr(e, name, None)))
        e = e.env
    e.np_random.bit_generator.state = state["np_random"]
    if "ale" in state:
        e.ale.restoreState(ale_py.ALEState(bytes(state["ale"].numpy().tobytes())))
    else:
        for name, value in state["base"].items():
            setattr(e, name, _unplain(value, getattr(e, name, None)))
    if "mujoco" in state:
        saved = {name: _unplain(value, None) for name, value in state["mujoco"].items()}
        e.set_state(saved["qpos"], saved["qvel"])
        for name in ("act", "qacc_warmstart"):
            getattr(e.data, name)[:] = saved[name]
        e.data.time = float(saved["time"])
