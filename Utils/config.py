"""One typed run configuration: defaults, the YAML table, command-line overrides, checks.

:class:`Config` holds every setting of a run. Each field is declared once, with
:func:`setting`: its default, a one-line description, its allowed range or choices, which
algorithm reads it and where another algorithm's default differs. Everything else is derived
from those declarations: :meth:`Config.validate`'s range checks, ``--help``'s text
(:func:`hyperparameter_help`), :data:`DESCRIPTIONS`, :data:`RUN_KEYS`,
:data:`HYPERPARAMETER_KEYS`, :data:`ALGO_ONLY_KEYS` and :data:`ALGO_DEFAULTS`; a test checks
``training_configs.yml`` and docs/configuration.md's table against them.

:func:`load_config` fills a :class:`Config` from ``training_configs.yml`` (the section for the
algorithm), applies overrides from the command line and validates the result before any work
starts. The merged config is stored in every checkpoint and as ``config.yml`` in the run
folder.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import MISSING, dataclass, field, fields

import yaml

# The algorithms whose settings this module knows: the built-in ones here, others added by
# :func:`declare_algorithm` (which :func:`Agent.registry.register` calls).
ALGOS = ["acer", "a3c"]
BUILT_IN_ALGOS = tuple(ALGOS)   # those with sections in training_configs.yml
BACKENDS = ("local", "ray")
RAY_MODES = ("hogwild", "actor_learner")
LEARNER_DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line for the user."""


TRAIN, PLAY, EXPORT, LIST = "train", "play", "export", "list"   # what the command line does
EVERY_MODE = frozenset((TRAIN, PLAY, EXPORT, LIST))


def setting(default=MISSING, *, help: str, low=None, high=None, low_open: bool = False,
            high_open: bool = False, choices: tuple | None = None, run: bool = False,
            only: str | tuple | None = None, algo_defaults: dict | None = None, label: str = "",
            hint: str = "", default_factory=MISSING, modes=frozenset((TRAIN,)), flag: str = "",
            const=MISSING, nargs: str | None = None, metavar: str | None = None,
            default_text: str = "", rule: str = "", switch: bool = False):
    """A :class:`Config` field with its metadata.

    ``help``: one line for ``--help`` and the docs. ``low``/``high``: allowed bounds, closed
    unless ``low_open``/``high_open``; ``choices``: the allowed values. ``run``: a setting of
    the run (flags only), not a hyperparameter read from the YAML. ``only``: the algorithm
    (or a tuple of them) that reads it. ``algo_defaults``: {algo: default} where an algorithm's default differs
    from ``default``. ``label``/``hint``: words the range error adds after the flag
    ("--k (rollout length) must ...") or after the rule ("... >= 0 (0: by time), got -1");
    ``rule``: the allowed values in words, where the bounds' own words would not do.

    The command line is generated from these declarations (:mod:`Utils.cli`): ``modes``, what
    reads the flag (``TRAIN``, ``PLAY``, ``EXPORT``, ``LIST``; a flag given to another mode is
    named in a warning); ``switch``: a flag without a value (``--save_replay``), ``const``
    its value, ``flag`` its name when not ``--<field>`` (``--no_recurrent``); ``nargs``/
    ``metavar`` as for argparse; ``default_text``: the default in words for ``--help``.
    """
    metadata = {"help": help, "low": low, "high": high, "low_open": low_open,
                "high_open": high_open, "choices": choices, "run": run,
                "only": (only,) if isinstance(only, str) else tuple(only or ()),
                "algo_defaults": dict(algo_defaults or {}), "label": label, "hint": hint,
                "modes": frozenset(modes), "flag": flag, "const": const, "nargs": nargs,
                "metavar": metavar, "default_text": default_text, "rule": rule, "switch": switch}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def article(word: str) -> str:
    """'an' before a word that starts with a vowel ('an int', 'an a3c run', 'an Acrobot-v1
    run'), else 'a' ('a float', 'a bool', 'a CartPole-v1 run')."""
    return "an" if str(word)[:1].lower() in "aeio" else "a"


def plural(n: int, noun: str) -> str:
    """'1 worker', '2 workers'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def range_rule(meta) -> str:
    """The allowed values of a field in words: 'positive', 'at least 1', 'in (0, 1]', ...
    ('' for a field without a range)."""
    low, high = meta.get("low"), meta.get("high")
    if meta.get("rule"):
        return meta["rule"]
    if meta.get("choices"):
        return f"one of {', '.join(meta['choices'])}"
    if low is not None and high is not None:
        return (f"in {'(' if meta['low_open'] else '['}{_number(low)}, "
                f"{_number(high)}{')' if meta['high_open'] else ']'}")
    if low is not None:
        if meta["low_open"]:
            return "positive" if low == 0 else f"> {_number(low)}"
        return f"at least {low}" if isinstance(low, int) and low >= 1 else f">= {_number(low)}"
    if high is not None:
        return f"< {_number(high)}" if meta["high_open"] else f"<= {_number(high)}"
    return ""


def in_range(meta, value) -> bool:
    """Whether ``value`` lies in the field's range or choices (True for a field without one)."""
    if meta.get("choices"):
        return value in meta["choices"]
    low, high = meta.get("low"), meta.get("high")
    if low is not None and not (value > low if meta["low_open"] else value >= low):
        return False
    if high is not None and not (value < high if meta["high_open"] else value <= high):
        return False
    return True


@dataclass
class RunSettings:
    """The settings of a run that are not the algorithm's: which game and algorithm, how many
    workers, budgets, folders, backends. Flags only; not read from the YAML."""
    env_name: str = setting("PongNoFrameskip-v4", run=True, modes=EVERY_MODE, help="Gymnasium id")
    algo: str = setting("acer", run=True, choices=ALGOS, modes=EVERY_MODE,  # the list: it grows
                        help="the algorithm: acer or a3c (or one registered in Agent.registry)")
    n_workers: int = setting(default_factory=lambda: os.cpu_count() or 1, run=True, low=1,
                             default_text="CPU count", help="worker processes")
    seed: int = setting(123, run=True, modes=(TRAIN, PLAY), help="random seed")
    interval: int = setting(0, run=True, low=0, hint="0: by time",
                            default_text="0: by time, a line about every 15 s and a checkpoint "
                                         "every --checkpoint_minutes",
                            help="iterations between console lines and checkpoints")
    checkpoint_minutes: float = setting(5.0, run=True, low=0, low_open=True, metavar="M",
                                        help="with interval 0: minutes between checkpoints")
    total_steps: int = setting(0, run=True, low=0,
                               help="stop after this many agent steps (0: no limit)")
    max_episodes: int = setting(0, run=True, low=0,
                                help="stop after this many finished games (0: no limit)")
    models_dir: str = setting("Models", run=True, modes=EVERY_MODE, help="where runs are saved")
    logs_dir: str = setting("Logs", run=True, modes=(TRAIN, LIST), help="where TensorBoard logs go")
    save_replay: bool = setting(False, run=True, only="acer", switch=True, const=True,
                                help="also save the workers' replay memories when the run "
                                     "stops (exact resume)")
    max_bad_updates: int = setting(100, run=True, low=0,
                                   help="stop after this many non-finite updates in a row (0: never)")
    stop_on_save_error: bool = setting(False, run=True, switch=True, const=True,
                                       help="stop the run when a checkpoint cannot be written")
    backend: str = setting("local", run=True, choices=BACKENDS,
                           help="local: shared-memory workers; ray: actors and a parameter server")
    ray_address: str = setting("", run=True,
                               help='ray: "" starts a local Ray instance; "auto" or host:port joins one')
    ray_mode: str = setting("hogwild", run=True, choices=RAY_MODES,
                            help="ray: hogwild (workers and a parameter server) or actor_learner "
                                 "(actors ship rollouts to one learner; acer, discrete actions)")
    sync_every: int = setting(4, run=True, only="acer", low=1, metavar="N",
                              help="actor_learner: actors pull the learner's weights every this "
                                   "many rollouts")
    max_policy_lag: int = setting(0, run=True, only="acer", low=0, hint="0: no limit",
                                  metavar="UPDATES",
                                  help="actor_learner: an actor whose last rollout lagged the "
                                       "learner by more updates pulls weights at once (0: no limit)")
    learner_batch: int = setting(1, run=True, only="acer", low=1, metavar="B",
                                 help="actor_learner: rollouts per learner update (1: one Adam "
                                      "step per trajectory, as in the other modes; b > 1: b times "
                                      "fewer steps, each on the mean loss of b trajectories)")
    learner_device: str = setting("cpu", run=True, only="acer", choices=LEARNER_DEVICES,
                                  help="actor_learner: where the learner's networks and Adam live")
    stall_minutes: float = setting(15.0, run=True, only="acer", low=0, low_open=True, metavar="M",
                                   help="actor_learner: stop the run, naming the actors it waited "
                                        "on, when no rollout arrives for this many minutes")
    precision: str = setting("fp32", run=True, choices=PRECISIONS,
                             help="bf16: ACER's learner runs its image trunk in bfloat16 (faster)")


@dataclass
class Hyperparameters:
    """The algorithm's settings, read from the YAML's section for the algorithm and overridden
    by flags. Defaults are the original's ACER table; a field's ``algo_defaults`` holds where
    A3C's differ."""
    # shared by both algorithms
    lr: float = setting(1e-4, low=0, low_open=True, help="Adam learning rate")
    adam_eps: float = setting(1e-8, low=0, low_open=True, help="Adam epsilon")
    entropy_coef: float = setting(0.001, low=0, algo_defaults={"a3c": 0.01},
                                  help="weight of the policy's entropy bonus")
    gamma: float = setting(0.99, low=0, high=1, help="discount factor")
    critic_coef: float = setting(0.5, low=0, help="weight of the critic's (Q or V) loss")
    max_grad_norm: float = setting(40.0, low=0, low_open=True,
                                   help="gradients are clipped to this global norm")
    frame_stack: int = setting(4, low=1, help="observations stacked per state (Atari)")
    mlp_hidden: int = setting(128, low=1, help="width of the MLP trunk for vector observations")
    reward_scale: float = setting(1.0, low=0, low_open=True,
                                  help="training rewards are multiplied by this (Atari: after "
                                       "sign clipping)")
    # ACER only (training_configs.yml: acer)
    k: int = setting(20, only="acer", low=1, label="rollout length",
                     help="acer: rollout length (steps per on-policy update)")
    total_memory_size: int = setting(600_000, only="acer",
                                     help="acer: replay transitions in total, split evenly over "
                                          "the workers")
    c: float = setting(10.0, only="acer", low=0, low_open=True,
                       help="acer: truncation of the importance weights rho")
    delta: float = setting(1.0, only="acer", low=0, low_open=True,
                           help="acer: trust-region constraint on the KL to the average policy")
    trust_region: bool = setting(True, only="acer",
                                 help="acer: use the trust region (true/false, yes/no, on/off, 1/0)")
    replay_ratio: float = setting(4.0, only="acer", low=0,
                                  help="acer: mean of the Poisson number of replayed updates per "
                                       "on-policy update")
    polyak: float = setting(0.01, only="acer", low=0, high=1, low_open=True,
                            help="acer: weight of the global network in the average network's "
                                 "update")
    policy_std: float = setting(0.3, only="acer", low=0, low_open=True,
                                help="continuous acer: the Gaussian policy's std, in half-widths "
                                     "of the action box")
    sdn_samples: int = setting(5, only="acer", low=1,
                               help="continuous acer: action samples for the SDN critic's mean "
                                    "advantage")
    # A3C only (training_configs.yml: a3c)
    recurrent: bool = setting(True, only="a3c", flag="--no_recurrent", switch=True, const=False,
                              help="a3c: the LSTM policy (the original's); --no_recurrent "
                                   "(recurrent: false): the paper's feed-forward net")
    total_update_period: int = setting(80, only="a3c", low=1,
                                       help="recurrent a3c: rollout steps summed over the workers")
    t_max: int = setting(5, only="a3c", low=1, help="feed-forward a3c: rollout length")
    hidden_size: int = setting(256, only="a3c", low=1, help="a3c: LSTM cell or fc layer width")


@dataclass
class _DeclaredHere(Hyperparameters, RunSettings):
    """The settings declared in this module, as one dataclass."""


# Settings a registered algorithm declares for itself (its record's ``settings``, through
# :func:`declare_algorithm`): name -> field, beside the dataclass's own fields.
OWN_FIELDS: dict[str, dataclasses.Field] = {}


class Config(_DeclaredHere):
    """Every setting of a run: its :class:`RunSettings` and its :class:`Hyperparameters`, and
    those a registered algorithm declared for itself (:data:`OWN_FIELDS`), as one flat record
    (``cfg.lr``, ``cfg.n_workers``), the form checkpoints store."""

    def __init__(self, **values):
        own = {key: values.pop(key) for key in list(values) if key in OWN_FIELDS}
        super().__init__(**values)
        for key, f in OWN_FIELDS.items():
            setattr(self, key, own.get(key, f.default))

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values.update({key: getattr(self, key) for key in OWN_FIELDS if hasattr(self, key)})
        return values

    def replaced(self, **changes) -> "Config":
        """A copy with ``changes`` (``dataclasses.replace`` would drop the algorithms' own
        settings)."""
        return Config(**{**self.to_dict(), **changes})

    def __eq__(self, other) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    __hash__ = None

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first setting out of its declared range or
        choices. What an algorithm needs beyond that (its own checks, what it supports) is
        its registry record's: :func:`Agent.registry.check_config` runs every check."""
        for key, value in self.to_dict().items():
            if not in_range(FIELDS[key].metadata, value):
                raise ConfigError(range_error(key, value))


FIELDS = {f.name: f for f in fields(Config)}   # OWN_FIELDS join it when declared


def range_error(key: str, value, meta=None) -> str:
    """The one-line error for ``key`` = ``value`` outside its declared range or choices
    (``meta``: the field's metadata, by default :class:`Config`'s field ``key``)."""
    meta = FIELDS[key].metadata if meta is None else meta
    flag = f"--{key} ({meta['label']})" if meta.get("label") else f"--{key}"
    hint = f" ({meta['hint']})" if meta.get("hint") else ""
    shown = f"'{value}'" if meta.get("choices") else value
    return f"{flag} must be {range_rule(meta)}{hint}, got {shown}"


# Settings that describe the run rather than the algorithm: not read from the YAML. Lists:
# an algorithm's own settings join HYPERPARAMETER_KEYS when it is declared.
RUN_KEYS = [name for name, f in FIELDS.items() if f.metadata["run"]]
HYPERPARAMETER_KEYS = [name for name in FIELDS if name not in RUN_KEYS]
# The algorithms that read each key, where not every algorithm does (``only``); a registered
# algorithm may read another's keys too (declare_algorithm's ``reads``).
READERS = {name: set(f.metadata["only"]) for name, f in FIELDS.items() if f.metadata["only"]}
# The keys each algorithm reads that not every algorithm does.
ALGO_ONLY_KEYS = {algo: tuple(k for k, readers in READERS.items() if algo in readers) for algo in ALGOS}
# Where an algorithm's default differs from the dataclass default (the original's A3C table).
ALGO_DEFAULTS = {algo: {name: f.metadata["algo_defaults"][algo] for name, f in FIELDS.items()
                        if algo in f.metadata["algo_defaults"]}
                 for algo in ALGOS}
# One line per setting, for --help (defaults are appended from the dataclass).
DESCRIPTIONS = {name: f.metadata["help"] for name, f in FIELDS.items()}


def own_setting(name: str, default, **declaration) -> tuple:
    """A hyperparameter an algorithm declares for itself, for its registry record's
    ``settings``: its name, default and :func:`setting`'s keywords (``help``, ``low``,
    ``choices``, ...), as a tuple (the record travels to workers by pickle). Its type is its
    default's (int, float, bool or str); only that algorithm reads it."""
    return (name, default, tuple(sorted(declaration.items())))


def _declare_own_setting(algo: str, key: str, default, declaration: dict) -> None:
    """Add ``algo``'s own setting ``key``: a field, a flag, a YAML key, a range check."""
    if key in OWN_FIELDS and OWN_FIELDS[key].metadata["only"] == (algo,):
        return                                    # the same algorithm, registered again
    if key in FIELDS:
        raise ValueError(f"{algo} declares the setting {key}, which exists already: "
                         f"list it in reads=, or choose another name")
    if "run" in declaration or "only" in declaration:
        raise ValueError(f"{algo}'s setting {key}: an algorithm declares hyperparameters, "
                         f"read by itself only (no run= or only=)")
    f = setting(default, only=algo, **declaration)
    f.name, f.type = key, type(default).__name__
    OWN_FIELDS[key] = FIELDS[key] = f
    HYPERPARAMETER_KEYS.append(key)
    READERS[key] = {algo}
    DESCRIPTIONS[key] = f.metadata["help"]


def declare_algorithm(name: str, reads: tuple[str, ...] = (), settings: tuple = ()) -> None:
    """Make ``name`` a known algorithm here: ``--algo name``, its YAML sections. It reads the
    shared hyperparameters, of the keys declared ``only`` for other algorithms those in
    ``reads`` (a key may be shared by several algorithms), and its own ``settings``
    (:func:`own_setting` tuples)."""
    unknown = [key for key in reads if key not in READERS]
    if unknown:
        raise ValueError(f"{name} reads {', '.join(unknown)}, which every algorithm reads or "
                         "no setting declares")
    if name not in ALGOS:
        ALGOS.append(name)
        ALGO_DEFAULTS[name] = {}
    for key in reads:
        READERS[key].add(name)
    for key, default, declaration in settings:
        _declare_own_setting(name, key, default, dict(declaration))
    ALGO_ONLY_KEYS[name] = tuple(k for k, readers in READERS.items() if name in readers)


def default(key: str, algo: str | None = None):
    """The declared default of setting ``key`` (``algo``'s, where it differs): the one place
    defaults come from, for code that needs one of a flag that was not given."""
    if algo is not None and key in ALGO_DEFAULTS.get(algo, {}):
        return ALGO_DEFAULTS[algo][key]
    f = FIELDS[key]
    return f.default_factory() if f.default is MISSING else f.default


def algo_keys(algo: str) -> tuple[str, ...]:
    """The settings ``algo`` reads: run keys, shared hyperparameters and its own."""
    return tuple(k for k in RUN_KEYS + HYPERPARAMETER_KEYS if k not in READERS or algo in READERS[k])


def check_keys_for_algo(algo: str, keys) -> None:
    """Refuse command-line settings that ``algo`` would silently ignore."""
    allowed = algo_keys(algo)
    for key in keys:
        if key not in allowed:
            owner = " / ".join(a for a in ALGOS if a in READERS[key])
            raise ConfigError(f"--{key} is a setting of --algo {owner}; --algo {algo} does not use it")


def continuous_section(algo: str) -> str:
    """The YAML section whose values apply on top of ``algo``'s for Box action spaces."""
    return f"{algo}_continuous"


def yaml_problem(err: yaml.YAMLError, data: bytes) -> str:
    """Where and what a YAML syntax error is, in one line: 'line L, column C: problem'."""
    def at(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    def at_offset(before) -> str:  # the line and column after the text (or bytes) ``before``
        newline = "\n" if isinstance(before, str) else b"\n"
        return (f"line {before.count(newline) + 1}, "
                f"column {len(before) - before.rfind(newline)}")

    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark, problem = err.problem_mark, err.problem or "invalid YAML"
        context, start = err.context, err.context_mark
        if not context or start is None:
            return f"{at(mark)}: {problem}"
        if context.startswith("while scanning"):
            # the token that starts at ``start`` (a key without its ':', an unclosed quote) is
            # the mistake; PyYAML's problem mark is where it gave up looking, often a line later
            return f"{at(start)}: {problem} ({context}; the scan stopped at {at(mark)})"
        return f"{at(mark)}: {problem} ({context} that starts at {at(start)})"
    if isinstance(err, yaml.reader.ReaderError):
        if err.encoding == "unicode":  # a control character; its position counts characters
            text = data.decode("utf-8", "replace")
            return f"{at_offset(text[:err.position])}: character #x{err.character:04x}: {err.reason}"
        # a byte that does not decode; its position counts bytes
        return (f"{at_offset(data[:err.position])}: byte 0x{err.character:02x} is not "
                f"{err.encoding.upper()} ({err.reason})")
    return str(err).splitlines()[0]


def read_yaml_section(path: str, algo: str, section_name: str | None = None) -> dict:
    """The ``section_name`` section (default: ``algo``'s) of a config YAML, checked for unknown
    sections and keys and for settings ``algo`` does not read and converted to their types.
    An algorithm registered from outside the project may have no section: it takes its
    declared defaults, so adding one never means editing training_configs.yml."""
    try:
        with open(path, "rb") as fh:  # bytes: PyYAML reads UTF-8 (or UTF-16 with a BOM)
            data = fh.read()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        table = yaml.safe_load(data)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML at {yaml_problem(err, data)}") from None
    name = section_name or algo
    if isinstance(table, dict):
        known = tuple(ALGOS) + tuple(continuous_section(a) for a in ALGOS)
        for top in table:
            if top not in known:
                raise ConfigError(f"unknown section '{top}' in {path} (sections: {', '.join(known)})")
    if isinstance(table, dict) and name not in table and algo not in BUILT_IN_ALGOS:
        return {}   # an algorithm registered from outside needs no section: its defaults
    if not isinstance(table, dict) or not isinstance(table.get(name), dict):
        raise ConfigError(f"config file {path} has no '{name}:' section")
    section = table[name]
    allowed = algo_keys(algo)
    for key, value in section.items():
        if key not in HYPERPARAMETER_KEYS:
            raise ConfigError(f"unknown key '{key}' in the '{name}' section of {path}")
        if key not in allowed:
            raise ConfigError(f"key '{key}' in the '{name}' section of {path} is not a setting of {algo}")
        section[key] = _coerce(key, value, FIELDS[key].type, f"{path}: {name}.{key}")
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
        raise ConfigError(f"{where} must be {article(type_name)} {type_name}, got {value!r}") from None


def load_config(yaml_path: str, algo: str, overrides: dict, continuous: bool = False) -> Config:
    """Defaults <- YAML section for ``algo`` [<- its ``<algo>_continuous`` section, for Box
    action spaces] <- ``overrides`` (values not None), validated."""
    if algo not in ALGOS:
        raise ConfigError(f"--algo must be one of {', '.join(ALGOS)}, got '{algo}'")
    values = Config(algo=algo).to_dict()
    values.update(ALGO_DEFAULTS.get(algo, {}))
    values.update(read_yaml_section(yaml_path, algo))
    if continuous:
        values.update(read_yaml_section(yaml_path, algo, continuous_section(algo)))
    for key, value in overrides.items():
        if value is not None:
            values[key] = _coerce(key, value, FIELDS[key].type, f"--{key}")
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
    vector observation, as float32), action, reward, done, episode start, mu and a time-limit
    flag (the rare cut episodes' final frames are not counted). Continuous actions:
    ``n_actions`` floats per action, twice that for mu."""
    image = len(obs_shape) == 3
    frame = obs_shape[1:] if image else obs_shape
    n = 1
    for d in frame:
        n *= int(d)
    action, mu = (4 * n_actions, 8 * n_actions) if continuous else (8, 4 * n_actions)
    return n * (itemsize if image else 4) + action + 4 + 1 + 1 + mu + 1


def check_memory(cfg: Config, extra: tuple[int, str, str] = (0, "", "")) -> None:
    """Refuse a run whose workers, and what its algorithm holds beyond them (``extra``: bytes,
    what they are and a short name, e.g. ACER's replay, from its registry record), would not
    fit in the memory available now."""
    extra_bytes, extra_what, extra_name = extra
    import psutil
    need = MAIN_BYTES + cfg.n_workers * WORKER_BYTES + extra_bytes
    available = psutil.virtual_memory().available
    if need <= available:
        return
    if extra_bytes:
        raise ConfigError(f"--n_workers {cfg.n_workers} with {extra_what} needs about "
                          f"{need / 1e9:.1f} GB ({plural(cfg.n_workers, 'worker')} x "
                          f"{WORKER_BYTES / 1e9:.2f} GB + {extra_name} {extra_bytes / 1e9:.1f} GB), more than "
                          f"the {available / 1e9:.1f} GB available")
    raise ConfigError(f"--n_workers {cfg.n_workers} needs about {need / 1e9:.1f} GB, more than the "
                      f"{available / 1e9:.1f} GB available")


def save_config(config: Config, path: str) -> None:
    """Write the config as YAML (human-readable copy beside the checkpoint)."""
    with open(path, "w") as fh:
        yaml.safe_dump(config.to_dict(), fh, sort_keys=False)


def hyperparameter_help(key: str) -> str:
    """``--help`` text for a setting: its description, allowed range and default (per algorithm)."""
    meta = FIELDS[key].metadata
    rule = "" if meta["switch"] else range_rule(meta)
    text = DESCRIPTIONS[key] + (f"; {rule}" if rule else "")
    shown = meta["default_text"] or getattr(Config(), key)
    if meta["run"] and isinstance(shown, float):
        shown = f"{shown:g}"
    if shown is None or shown == "":
        return text.replace("%", "%%")
    text += f" (default {shown}"
    for algo, values in ALGO_DEFAULTS.items():
        if key in values:
            text += f"; {algo}: {values[key]}"
    return text.replace("%", "%%") + ")"
