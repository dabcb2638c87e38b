"""One typed run configuration: defaults, the YAML table, command-line overrides, checks.

:class:`Config` holds every setting of a run. :func:`load_config` fills it from
``training_configs.yml`` (the section for the algorithm), applies overrides
from the command line and validates the result before any work starts. The
merged config is stored in every checkpoint and as ``config.yml`` in the run
folder.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields

import yaml

ALGOS = ("acer",)
# Settings that describe the run rather than the algorithm: not read from the YAML.
RUN_KEYS = ("env_name", "algo", "n_workers", "seed", "interval", "total_steps", "max_episodes",
            "models_dir", "logs_dir", "save_replay")


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line for the user."""


@dataclass
class Config:
    """Every setting of a run. Hyperparameter defaults are the original's ACER table."""
    # run
    env_name: str = "PongNoFrameskip-v4"
    algo: str = "acer"
    n_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    seed: int = 123
    interval: int = 100           # iterations between console lines and checkpoints
    total_steps: int = 0          # stop after this many agent steps (0: no limit)
    max_episodes: int = 0         # stop after this many finished games (0: no limit)
    models_dir: str = "Models"
    logs_dir: str = "Logs"
    save_replay: bool = False     # also save the replay memories when the run stops
    # ACER hyperparameters (training_configs.yml: acer)
    lr: float = 1e-4
    adam_eps: float = 1e-8
    entropy_coef: float = 0.001
    gamma: float = 0.99
    k: int = 20
    total_memory_size: int = 600_000
    c: float = 10.0
    delta: float = 1.0
    trust_region: bool = True
    replay_ratio: float = 4.0
    polyak: float = 0.01
    critic_coef: float = 0.5
    max_grad_norm: float = 40.0
    frame_stack: int = 4
    mlp_hidden: int = 128

    def replay_capacity(self) -> int:
        """Trajectories each worker's replay holds: total // (n_workers * k), as in the original."""
        return self.total_memory_size // (self.n_workers * self.k)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first setting out of range."""
        checks = [
            (self.algo in ALGOS, f"--algo must be one of {', '.join(ALGOS)}, got '{self.algo}'"),
            (self.n_workers >= 1, f"--n_workers must be at least 1, got {self.n_workers}"),
            (self.interval >= 1, f"--interval must be at least 1, got {self.interval}"),
            (self.total_steps >= 0, f"--total_steps must be >= 0, got {self.total_steps}"),
            (self.max_episodes >= 0, f"--max_episodes must be >= 0, got {self.max_episodes}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.adam_eps > 0, f"--adam_eps must be positive, got {self.adam_eps}"),
            (self.entropy_coef >= 0, f"--entropy_coef must be >= 0, got {self.entropy_coef}"),
            (0 <= self.gamma <= 1, f"--gamma must be in [0, 1], got {self.gamma}"),
            (self.k >= 1, f"--k (rollout length) must be at least 1, got {self.k}"),
            (self.c > 0, f"--c must be positive, got {self.c}"),
            (self.delta > 0, f"--delta must be positive, got {self.delta}"),
            (self.replay_ratio >= 0, f"--replay_ratio must be >= 0, got {self.replay_ratio}"),
            (0 < self.polyak <= 1, f"--polyak must be in (0, 1], got {self.polyak}"),
            (self.critic_coef >= 0, f"--critic_coef must be >= 0, got {self.critic_coef}"),
            (self.max_grad_norm > 0, f"--max_grad_norm must be positive, got {self.max_grad_norm}"),
            (self.frame_stack >= 1, f"--frame_stack must be at least 1, got {self.frame_stack}"),
            (self.mlp_hidden >= 1, f"--mlp_hidden must be at least 1, got {self.mlp_hidden}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.replay_ratio > 0 and self.replay_capacity() < 1:
            raise ConfigError(f"--total_memory_size {self.total_memory_size} is too small for "
                              f"{self.n_workers} workers with k={self.k}: each worker needs at "
                              f"least one trajectory (>= {self.n_workers * self.k})")


HYPERPARAMETER_KEYS = tuple(f.name for f in fields(Config) if f.name not in RUN_KEYS)


def read_yaml_section(path: str, algo: str) -> dict:
    """The ``algo`` section of a config YAML, checked for unknown keys and types."""
    try:
        with open(path) as fh:
            table = yaml.safe_load(fh)
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(table, dict) or not isinstance(table.get(algo), dict):
        raise ConfigError(f"config file {path} has no '{algo}:' section")
    section = table[algo]
    types = {f.name: f.type for f in fields(Config)}
    for key, value in section.items():
        if key not in HYPERPARAMETER_KEYS:
            raise ConfigError(f"unknown key '{key}' in the '{algo}' section of {path}")
        section[key] = _coerce(key, value, types[key], f"{path}: {algo}.{key}")
    return section


def _coerce(key: str, value, type_name: str, where: str):
    """Convert a YAML or command-line value to the field's type, or raise ConfigError."""
    try:
        if type_name == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if type_name == "int":
            number = float(value)
            if isinstance(value, bool) or number != int(number):
                raise ValueError
            return int(number)
        if type_name == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a {type_name}, got {value!r}") from None


def load_config(yaml_path: str, algo: str, overrides: dict) -> Config:
    """Defaults <- YAML section for ``algo`` <- ``overrides`` (values not None), validated."""
    values = Config(algo=algo).to_dict()
    values.update(read_yaml_section(yaml_path, algo))
    types = {f.name: f.type for f in fields(Config)}
    for key, value in overrides.items():
        if value is not None:
            values[key] = _coerce(key, value, types[key], f"--{key}")
    config = Config(**values)
    config.validate()
    return config


def save_config(config: Config, path: str) -> None:
    """Write the config as YAML (human-readable copy beside the checkpoint)."""
    with open(path, "w") as fh:
        yaml.safe_dump(config.to_dict(), fh, sort_keys=False)
