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

ALGOS = ("acer", "a3c")
# Settings that describe the run rather than the algorithm: not read from the YAML.
RUN_KEYS = ("env_name", "algo", "n_workers", "seed", "interval", "checkpoint_minutes",
            "total_steps", "max_episodes",
            "models_dir", "logs_dir", "save_replay", "max_bad_updates", "stop_on_save_error",
            "backend", "ray_address", "precision")
BACKENDS = ("local", "ray")
PRECISIONS = ("fp32", "bf16")


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
    interval: int = 0             # iterations between console lines and checkpoints; 0: by time
    checkpoint_minutes: float = 5.0  # with interval 0: minutes between checkpoints
    total_steps: int = 0          # stop after this many agent steps (0: no limit)
    max_episodes: int = 0         # stop after this many finished games (0: no limit)
    models_dir: str = "Models"
    logs_dir: str = "Logs"
    save_replay: bool = False     # also save the replay memories when the run stops
    max_bad_updates: int = 100    # stop after this many non-finite updates in a row (0: never)
    stop_on_save_error: bool = False  # stop the run when a checkpoint cannot be written
    backend: str = "local"        # local: shared-memory workers; ray: actors and a parameter server
    ray_address: str = ""         # ray: "" starts a local Ray instance; "auto" or host:port joins one
    precision: str = "fp32"       # bf16: ACER's learner runs its image trunk in bfloat16 (faster)
    # hyperparameters shared by both algorithms (defaults: the original's ACER table;
    # ALGO_DEFAULTS below holds where A3C's differ)
    lr: float = 1e-4
    adam_eps: float = 1e-8
    entropy_coef: float = 0.001
    gamma: float = 0.99
    critic_coef: float = 0.5
    max_grad_norm: float = 40.0
    frame_stack: int = 4
    mlp_hidden: int = 128
    reward_scale: float = 1.0     # training rewards are multiplied by this (Atari: after sign clipping)
    # ACER only (training_configs.yml: acer)
    k: int = 20
    total_memory_size: int = 600_000
    c: float = 10.0
    delta: float = 1.0
    trust_region: bool = True
    replay_ratio: float = 4.0
    polyak: float = 0.01
    policy_std: float = 0.3       # continuous ACER: the Gaussian policy's fixed std, in half-widths of the action box
    sdn_samples: int = 5          # continuous ACER: actions u_j ~ f drawn for the SDN critic's mean advantage
    # A3C only (training_configs.yml: a3c)
    recurrent: bool = True          # LSTM policy (the original's); false: the paper's feed-forward net
    total_update_period: int = 80   # recurrent: each worker's rollout is this // n_workers steps
    t_max: int = 5                  # feed-forward: rollout length (the A3C paper's t_max)
    hidden_size: int = 256          # LSTM cell (recurrent) or fc layer (feed-forward) width

    def replay_capacity(self) -> int:
        """Trajectories each worker's replay holds: total // (n_workers * k), as in the original."""
        return self.total_memory_size // (self.n_workers * self.k)

    def rollout_length(self) -> int:
        """Agent steps each worker takes between two updates of its own."""
        if self.algo == "acer":
            return self.k
        return self.total_update_period // self.n_workers if self.recurrent else self.t_max

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first setting out of range."""
        checks = [
            (self.algo in ALGOS, f"--algo must be one of {', '.join(ALGOS)}, got '{self.algo}'"),
            (self.backend in BACKENDS,
             f"--backend must be one of {', '.join(BACKENDS)}, got '{self.backend}'"),
            (self.precision in PRECISIONS,
             f"--precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'"),
            (self.precision == "fp32" or self.algo == "acer",
             f"--precision bf16 is for --algo acer only: A3C's update is about a third of its "
             f"step and measured 1.2x faster in bfloat16, about 6% in all; use --precision fp32"),
            (self.n_workers >= 1, f"--n_workers must be at least 1, got {self.n_workers}"),
            (self.interval >= 0, f"--interval must be >= 0 (0: by time), got {self.interval}"),
            (self.checkpoint_minutes > 0,
             f"--checkpoint_minutes must be positive, got {self.checkpoint_minutes}"),
            (self.total_steps >= 0, f"--total_steps must be >= 0, got {self.total_steps}"),
            (self.max_episodes >= 0, f"--max_episodes must be >= 0, got {self.max_episodes}"),
            (self.max_bad_updates >= 0, f"--max_bad_updates must be >= 0, got {self.max_bad_updates}"),
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
            (self.total_update_period >= 1,
             f"--total_update_period must be at least 1, got {self.total_update_period}"),
            (self.t_max >= 1, f"--t_max must be at least 1, got {self.t_max}"),
            (self.hidden_size >= 1, f"--hidden_size must be at least 1, got {self.hidden_size}"),
            (self.reward_scale > 0, f"--reward_scale must be positive, got {self.reward_scale}"),
            (self.policy_std > 0, f"--policy_std must be positive, got {self.policy_std}"),
            (self.sdn_samples >= 1, f"--sdn_samples must be at least 1, got {self.sdn_samples}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.algo == "a3c" and self.recurrent and self.rollout_length() < 1:
            raise ConfigError(f"--total_update_period {self.total_update_period} is smaller than "
                              f"--n_workers {self.n_workers}: each worker's rollout would be empty")
        if self.algo == "acer" and self.replay_ratio > 0 and self.replay_capacity() < 1:
            raise ConfigError(f"--total_memory_size {self.total_memory_size} is too small for "
                              f"{self.n_workers} workers with k={self.k}: each worker needs at "
                              f"least one trajectory (>= {self.n_workers * self.k})")


HYPERPARAMETER_KEYS = tuple(f.name for f in fields(Config) if f.name not in RUN_KEYS)
# Keys that only one algorithm reads; every other hyperparameter is shared.
ALGO_ONLY_KEYS = {
    "acer": ("k", "total_memory_size", "c", "delta", "trust_region", "replay_ratio", "polyak",
             "save_replay", "policy_std", "sdn_samples"),
    "a3c": ("recurrent", "total_update_period", "t_max", "hidden_size"),
}
# Where an algorithm's default differs from the dataclass default (the original's A3C table).
ALGO_DEFAULTS = {"acer": {}, "a3c": {"entropy_coef": 0.01}}


def algo_keys(algo: str) -> tuple[str, ...]:
    """The settings ``algo`` reads: run keys, shared hyperparameters and its own."""
    others = {k for a, keys in ALGO_ONLY_KEYS.items() if a != algo for k in keys}
    return tuple(k for k in RUN_KEYS + HYPERPARAMETER_KEYS if k not in others)


def check_keys_for_algo(algo: str, keys) -> None:
    """Refuse command-line settings that ``algo`` would silently ignore."""
    allowed = algo_keys(algo)
    for key in keys:
        if key not in allowed:
            owner = next(a for a, own in ALGO_ONLY_KEYS.items() if key in own)
            raise ConfigError(f"--{key} is a setting of --algo {owner}; --algo {algo} does not use it")


def continuous_section(algo: str) -> str:
    """The YAML section whose values apply on top of ``algo``'s for Box action spaces."""
    return f"{algo}_continuous"


def read_yaml_section(path: str, algo: str, section_name: str | None = None) -> dict:
    """The ``section_name`` section (default: ``algo``'s) of a config YAML, checked for unknown
    keys and for settings ``algo`` does not read and converted to their types."""
    try:
        with open(path) as fh:
            table = yaml.safe_load(fh)
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    name = section_name or algo
    if not isinstance(table, dict) or not isinstance(table.get(name), dict):
        raise ConfigError(f"config file {path} has no '{name}:' section")
    section = table[name]
    types = {f.name: f.type for f in fields(Config)}
    allowed = algo_keys(algo)
    for key, value in section.items():
        if key not in HYPERPARAMETER_KEYS:
            raise ConfigError(f"unknown key '{key}' in the '{name}' section of {path}")
        if key not in allowed:
            raise ConfigError(f"key '{key}' in the '{name}' section of {path} is not a setting of {algo}")
        section[key] = _coerce(key, value, types[key], f"{path}: {name}.{key}")
    return section


def _coerce(key: str, value, type_name: str, where: str):
    """Convert a YAML or command-line value to the field's type, or raise ConfigError."""
    try:
        if type_name == "bool":
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() in ("true", "1", "yes", "y", "on", "t"):
                return True
            if str(value).strip().lower() in ("false", "0", "no", "n", "off", "f"):
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


def load_config(yaml_path: str, algo: str, overrides: dict, continuous: bool = False) -> Config:
    """Defaults <- YAML section for ``algo`` [<- its ``<algo>_continuous`` section, for Box
    action spaces] <- ``overrides`` (values not None), validated."""
    if algo not in ALGOS:
        raise ConfigError(f"--algo must be one of {', '.join(ALGOS)}, got '{algo}'")
    values = Config(algo=algo).to_dict()
    values.update(ALGO_DEFAULTS[algo])
    values.update(read_yaml_section(yaml_path, algo))
    if continuous:
        values.update(read_yaml_section(yaml_path, algo, continuous_section(algo)))
    types = {f.name: f.type for f in fields(Config)}
    for key, value in overrides.items():
        if value is not None:
            values[key] = _coerce(key, value, types[key], f"--{key}")
    config = Config(**values)
    config.validate()
    return config


# Measured (bench/replay_memory.py --full_run): a worker process without its replay holds about
# 0.25 GiB (torch, the environment, its network copies), the main process about 0.25 GiB.
WORKER_BYTES = int(0.25 * 2**30)
MAIN_BYTES = int(0.25 * 2**30)


def replay_bytes_per_transition(obs_shape: tuple[int, ...], itemsize: int, n_actions: int,
                                frame_stack: int, continuous: bool = False) -> int:
    """What ACER's replay stores per step: the newest frame of an image stack (or the whole
    vector observation, as float32), action, reward, done, episode start, mu and a truncation
    value. Continuous actions: ``n_actions`` floats per action, twice that for mu."""
    image = len(obs_shape) == 3
    frame = obs_shape[1:] if image else obs_shape
    n = 1
    for d in frame:
        n *= int(d)
    action, mu = (4 * n_actions, 8 * n_actions) if continuous else (8, 4 * n_actions)
    return n * (itemsize if image else 4) + action + 4 + 1 + 1 + mu + 4


def check_memory(cfg: Config, obs_shape: tuple[int, ...], n_actions: int, itemsize: int,
                 action_bounds=None) -> None:
    """Refuse a run whose workers and replay would not fit in the memory available now."""
    import psutil
    replay = 0
    if cfg.algo == "acer":
        replay = cfg.total_memory_size * replay_bytes_per_transition(
            obs_shape, itemsize, n_actions, cfg.frame_stack, continuous=action_bounds is not None)
    need = MAIN_BYTES + cfg.n_workers * WORKER_BYTES + replay
    available = psutil.virtual_memory().available
    if need > available:
        raise ConfigError(f"--n_workers {cfg.n_workers} with a replay of {cfg.total_memory_size} "
                          f"transitions needs about {need / 1e9:.1f} GB ({cfg.n_workers} workers x "
                          f"{WORKER_BYTES / 1e9:.2f} GB + replay {replay / 1e9:.1f} GB), more than the "
                          f"{available / 1e9:.1f} GB available" if cfg.algo == "acer" else
                          f"--n_workers {cfg.n_workers} needs about {need / 1e9:.1f} GB, more than the "
                          f"{available / 1e9:.1f} GB available")


def save_config(config: Config, path: str) -> None:
    """Write the config as YAML (human-readable copy beside the checkpoint)."""
    with open(path, "w") as fh:
        yaml.safe_dump(config.to_dict(), fh, sort_keys=False)


# One line per hyperparameter, for --help (defaults are appended from the dataclass).
DESCRIPTIONS = {
    "lr": "Adam learning rate",
    "adam_eps": "Adam epsilon",
    "entropy_coef": "weight of the policy's entropy bonus",
    "gamma": "discount factor",
    "critic_coef": "weight of the critic's (Q or V) loss",
    "max_grad_norm": "gradients are clipped to this global norm",
    "frame_stack": "observations stacked per state (Atari)",
    "mlp_hidden": "width of the MLP trunk for vector observations",
    "reward_scale": "training rewards are multiplied by this (Atari: after sign clipping)",
    "k": "acer: rollout length (steps per on-policy update)",
    "total_memory_size": "acer: replay transitions in total, split evenly over the workers",
    "c": "acer: truncation of the importance weights rho",
    "delta": "acer: trust-region constraint on the KL to the average policy",
    "trust_region": "acer: use the trust region (true/false, yes/no, 1/0)",
    "replay_ratio": "acer: mean of the Poisson number of replayed updates per on-policy update",
    "polyak": "acer: weight of the global network in the average network's update",
    "policy_std": "continuous acer: the Gaussian policy's std, in half-widths of the action box",
    "sdn_samples": "continuous acer: action samples for the SDN critic's mean advantage",
    "total_update_period": "recurrent a3c: rollout steps summed over the workers",
    "t_max": "feed-forward a3c: rollout length",
    "hidden_size": "a3c: LSTM cell or fc layer width",
}


def hyperparameter_help(key: str) -> str:
    """``--help`` text for a hyperparameter: its description and default (per algorithm)."""
    default = getattr(Config(), key)
    text = f"{DESCRIPTIONS.get(key, key)} (default {default}"
    for algo, values in ALGO_DEFAULTS.items():
        if key in values:
            text += f"; {algo}: {values[key]}"
    return text.replace("%", "%%") + ")"
