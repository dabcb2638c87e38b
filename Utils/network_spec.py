"""The typed description a network is built from (:class:`NetworkSpec`): the environment's
shapes and the run's network settings, with the config's declared defaults. It sits in
``Utils`` so that play and checkpoints, below ``NN``, can describe a stored network."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from Utils.config import default


@dataclass(frozen=True)
class NetworkSpec:
    """What a network is built from: the environment's observation shape and action count (a
    Box's dimension, with its (low, high) bounds), and the run's network settings. The
    settings' defaults are the config's declared ones, so a file written before a setting
    existed builds with that setting's default."""

    obs_shape: tuple[int, ...]
    n_actions: int
    action_bounds: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    mlp_hidden: int = default("mlp_hidden")
    hidden_size: int = default("hidden_size")
    recurrent: bool = default("recurrent")
    policy_std: float = default("policy_std")

    @classmethod
    def of(cls, obs_shape, n_actions: int, settings, action_bounds=None) -> NetworkSpec:
        """The spec of a run's network: ``settings`` is its :class:`Utils.config.Config` or a
        checkpoint's config dict; ``action_bounds`` (low, high) for Box actions, else None."""
        values = settings if isinstance(settings, Mapping) else settings.to_dict()
        given = {key: values[key] for key in NETWORK_SETTINGS if key in values}
        bounds = None
        if action_bounds is not None:
            low, high = action_bounds
            if len(low) != n_actions or len(high) != n_actions:
                raise ValueError(f"action bounds of length {len(low)} for {n_actions} action "
                                 "dimensions")
            bounds = (tuple(map(float, low)), tuple(map(float, high)))
        return cls(tuple(int(d) for d in obs_shape), int(n_actions), bounds, **given)


# The run settings a network reads (the spec's fields after the environment's three).
NETWORK_SETTINGS = tuple(f.name for f in fields(NetworkSpec)
                         if f.name not in ("obs_shape", "n_actions", "action_bounds"))
