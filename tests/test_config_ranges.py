"""The config's declared ranges: every field with a range or choices refuses a value just
outside it with a one-line error naming its flag and accepts the values on its boundary; every
setting has a description; booleans take the usual spellings from the YAML and the command line;
an unknown key or section in a YAML file is an error naming it and the file."""
import dataclasses
import math
import os
import re

import pytest

from Agent.algorithms import check_config
from Utils.config import (DESCRIPTIONS, FIELDS, HYPERPARAMETER_KEYS, RUN_KEYS, Config, ConfigError,
                          hyperparameter_help, load_config)

from conftest import ROOT

YAML = os.path.join(ROOT, "training_configs.yml")
RANGED = [name for name, f in FIELDS.items()
          if f.metadata["choices"] or f.metadata["low"] is not None or f.metadata["high"] is not None]
# The allowed values, written out here independently of Utils/config.py's declarations (the
# ranges its hand-written checks had): choices, or an interval ("[" / "]": closed, "(" / ")": open).
SPEC = {
    "algo": ("acer", "a3c"), "backend": ("local", "ray"), "precision": ("fp32", "bf16"),
    "ray_mode": ("hogwild", "actor_learner"), "learner_device": ("cpu", "cuda"),
    "sync_every": "[1, inf)", "learner_batch": "[1, inf)", "max_policy_lag": "[0, inf)", "stall_minutes": "(0, inf)",
    "n_workers": "[1, inf)", "interval": "[0, inf)", "checkpoint_minutes": "(0, inf)",
    "total_steps": "[0, inf)", "max_episodes": "[0, inf)", "max_bad_updates": "[0, inf)",
    "lr": "(0, inf)", "adam_eps": "(0, inf)", "entropy_coef": "[0, inf)", "gamma": "[0, 1]",
    "critic_coef": "[0, inf)", "max_grad_norm": "(0, inf)", "frame_stack": "[1, inf)",
    "mlp_hidden": "[1, inf)", "reward_scale": "(0, inf)", "k": "[1, inf)", "c": "(0, inf)",
    "delta": "(0, inf)", "replay_ratio": "[0, inf)", "polyak": "(0, 1]", "policy_std": "(0, inf)",
    "sdn_samples": "[1, inf)", "total_update_period": "[1, inf)", "t_max": "[1, inf)",
    "hidden_size": "[1, inf)",
}


def bounds(name: str) -> list[tuple[float, bool, int]]:
    """``name``'s finite bounds from SPEC: (value, closed, direction to step outside)."""
    left, right = SPEC[name].split(", ")
    out = [(float(left[1:]), left[0] == "[", -1)]
    if right[:-1] != "inf":
        out.append((float(right[:-1]), right[-1] == "]", 1))
    return out


def typed(name: str, value: float):
    return int(value) if FIELDS[name].type == "int" else float(value)


def outside(name: str) -> list:
    """Values just outside ``name``'s allowed values."""
    if isinstance(SPEC[name], tuple):
        return ["x" + SPEC[name][0], SPEC[name][0].upper()]
    return [typed(name, bound) if not closed
            else int(bound) + step if FIELDS[name].type == "int"
            else math.nextafter(bound, step * math.inf)
            for bound, closed, step in bounds(name)]


def on_boundary(name: str) -> list:
    """The values on ``name``'s closed bounds (every choice, for a setting with choices)."""
    if isinstance(SPEC[name], tuple):
        return list(SPEC[name])
    return [typed(name, bound) for bound, closed, _ in bounds(name) if closed]


BASE = Config(n_workers=2)   # not the CPU count: a3c's rollout check depends on it
OUTSIDE = [(name, value) for name in SPEC for value in outside(name)]
BOUNDARY = [(name, value) for name in SPEC for value in on_boundary(name)]


def test_every_setting_with_a_declared_range_is_in_the_spec():
    assert set(RANGED) == set(SPEC)
    for name, allowed in SPEC.items():
        if isinstance(allowed, tuple):
            assert tuple(FIELDS[name].metadata["choices"]) == allowed, name


@pytest.mark.parametrize("name,value", OUTSIDE, ids=[f"{n}={v!r}" for n, v in OUTSIDE])
def test_a_value_just_outside_the_range_is_refused_naming_the_flag(name, value):
    with pytest.raises(ConfigError) as err:
        dataclasses.replace(BASE, **{name: value}).validate()
    message = str(err.value)
    assert "\n" not in message
    assert re.match(rf"--{name}( \([^)]*\))? must be .*, got '?{re.escape(str(value))}'?$", message), message


@pytest.mark.parametrize("name,value", BOUNDARY, ids=[f"{n}={v!r}" for n, v in BOUNDARY])
def test_a_value_on_the_boundary_passes(name, value):
    dataclasses.replace(BASE, **{name: value}).validate()


def test_the_range_errors_keep_their_wording():
    cases = {("lr", -1): "--lr must be positive, got -1",
             ("gamma", 2): "--gamma must be in [0, 1], got 2",
             ("polyak", 0): "--polyak must be in (0, 1], got 0",
             ("algo", "x"): "--algo must be one of acer, a3c, got 'x'",
             ("k", 0): "--k (rollout length) must be at least 1, got 0",
             ("interval", -1): "--interval must be >= 0 (0: by time), got -1",
             ("replay_ratio", -2): "--replay_ratio must be >= 0, got -2"}
    for (name, value), message in cases.items():
        with pytest.raises(ConfigError) as err:
            dataclasses.replace(BASE, **{name: value}).validate()
        assert str(err.value) == message


def test_the_cross_field_checks_follow_the_declared_ranges():
    with pytest.raises(ConfigError, match="--precision bf16 is for --algo acer only"):
        check_config(Config(algo="a3c", precision="bf16"))
    with pytest.raises(ConfigError, match="each worker's rollout would be empty"):
        check_config(Config(algo="a3c", n_workers=8, total_update_period=4))
    with pytest.raises(ConfigError, match="--total_memory_size 10 is too small for 2 workers with k=20"):
        check_config(Config(n_workers=2, total_memory_size=10))
    check_config(Config(n_workers=2, total_memory_size=10, replay_ratio=0))   # no replay: no capacity


def test_every_setting_has_a_one_line_description_in_its_help():
    assert set(DESCRIPTIONS) == set(RUN_KEYS + HYPERPARAMETER_KEYS) == set(FIELDS)
    for name, text in DESCRIPTIONS.items():
        assert text.strip() and "\n" not in text, name
    for name in HYPERPARAMETER_KEYS:
        assert hyperparameter_help(name).startswith(DESCRIPTIONS[name]), name
        assert f"(default {getattr(Config(), name)}" in hyperparameter_help(name), name


BOOLS = [("true", True), ("True", True), ("yes", True), ("on", True), ("1", True), ("y", True),
         ("false", False), ("FALSE", False), ("no", False), ("off", False), ("0", False), ("n", False)]


@pytest.mark.parametrize("spelling,value", BOOLS, ids=[s for s, _ in BOOLS])
def test_booleans_take_the_usual_spellings_from_the_yaml_and_the_command_line(tmp_path, spelling, value):
    plain = tmp_path / "plain.yml"       # YAML reads true/yes/on/... itself, 1/0 as numbers
    plain.write_text(f"acer:\n  trust_region: {spelling}\n")
    quoted = tmp_path / "quoted.yml"     # a quoted spelling stays a string for the config to read
    quoted.write_text(f"acer:\n  trust_region: '{spelling}'\n")
    for path in (plain, quoted):
        assert load_config(str(path), "acer", {}).trust_region is value, path.read_text()
    from Utils.cli import build_parser
    from main import command_overrides
    args = build_parser().parse_args(["--do_train", "--trust_region", spelling])
    assert load_config(YAML, "acer", command_overrides(args)).trust_region is value


@pytest.mark.parametrize("spelling", ["maybe", "2", "", "truee"])
def test_other_boolean_spellings_are_refused(tmp_path, spelling):
    with pytest.raises(ConfigError, match=f"--trust_region must be a bool, got '{spelling}'"):
        load_config(YAML, "acer", {"trust_region": spelling})
    path = tmp_path / "mine.yml"
    path.write_text(f"acer:\n  trust_region: '{spelling}'\n")
    with pytest.raises(ConfigError, match=r"mine\.yml: acer\.trust_region must be a bool"):
        load_config(str(path), "acer", {})


def test_an_unknown_yaml_key_or_section_names_it_and_the_file(tmp_path):
    path = tmp_path / "mine.yml"
    path.write_text("acer:\n  lr: 1.0e-4\nacer_continuous:\n  polyac: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'polyac' in the 'acer_continuous' section of .*mine\.yml"):
        load_config(str(path), "acer", {}, continuous=True)
    path.write_text("acer:\n  lr: 1.0e-4\nacer_continous:\n  c: 5.0\n")
    with pytest.raises(ConfigError, match=r"unknown section 'acer_continous' in .*mine\.yml"):
        load_config(str(path), "acer", {})
    path.write_text("a3c:\n  k: 5\n")
    with pytest.raises(ConfigError, match=r"key 'k' in the 'a3c' section of .*mine\.yml is not a setting of a3c"):
        load_config(str(path), "a3c", {})


def test_an_old_run_config_still_loads():
    # a config.yml saved before a setting existed: the missing keys take their defaults
    saved = {key: value for key, value in Config().to_dict().items()
             if key not in ("precision", "policy_std", "sdn_samples", "reward_scale")}
    cfg = Config(**saved)
    cfg.validate()
    assert cfg == Config()
