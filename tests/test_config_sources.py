"""One source for the defaults: the YAML's algorithm sections, --help and the configuration
table (docs/configuration.md, linked from README.md) agree with the Config dataclass; booleans
take the usual spellings; an unknown YAML key is an error naming the key and the file."""
import os
import re
import subprocess
import sys

import pytest
import yaml

from Utils.config import (ALGO_DEFAULTS, ALGO_ONLY_KEYS, HYPERPARAMETER_KEYS, Config, ConfigError,
                          load_config)

from conftest import ROOT

YAML = os.path.join(ROOT, "training_configs.yml")


def default(algo: str, key: str):
    return ALGO_DEFAULTS[algo].get(key, getattr(Config(), key))


def reads(algo: str, key: str) -> bool:
    return not any(key in keys for other, keys in ALGO_ONLY_KEYS.items() if other != algo)


@pytest.mark.parametrize("algo", ["acer", "a3c"])
def test_yaml_sections_hold_the_dataclass_defaults(algo):
    section = yaml.safe_load(open(YAML))[algo]
    for key, value in section.items():
        assert value == default(algo, key), (algo, key, value)
    assert load_config(YAML, algo, {}) == Config(algo=algo, **ALGO_DEFAULTS[algo])


def test_help_describes_every_hyperparameter_with_its_default():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "--help"],
                         capture_output=True, text=True, env=dict(os.environ, COLUMNS="400")).stdout
    entries = {}   # flag -> its help text (argparse may wrap it onto the next lines)
    for block in re.split(r"\n(?=  --)", out):
        words = block.split()
        entries[words[0]] = " ".join(words)
    for key in HYPERPARAMETER_KEYS:
        flag = "--no_recurrent" if key == "recurrent" else f"--{key}"
        assert flag in entries, flag
        if key != "recurrent":
            assert f"(default {getattr(Config(), key)}" in entries[flag], entries[flag]


def readme_table() -> dict[str, tuple[str, str]]:
    text = open(os.path.join(ROOT, "docs", "configuration.md")).read()
    section = text.split("# Configuration reference", 1)[1].split("\n## ", 1)[0]
    section = section.split("| key | acer | a3c | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", section, re.M)
    return {key: (acer.strip(), a3c.strip()) for key, acer, a3c in rows}


def same(text: str, value) -> bool:
    if text == "-":
        return False
    if isinstance(value, bool):
        return text == str(value).lower()
    return float(text) == float(value)


def test_readme_table_agrees_with_the_dataclass():
    table = readme_table()
    assert set(table) == set(HYPERPARAMETER_KEYS)
    for key, cells in table.items():
        for algo, cell in zip(("acer", "a3c"), cells):
            if reads(algo, key):
                assert same(cell, default(algo, key)), (key, algo, cell)
            else:
                assert cell == "-", (key, algo, cell)


@pytest.mark.parametrize("spelling,value", [("false", False), ("No", False), ("off", False),
                                            ("0", False), ("TRUE", True), ("yes", True), ("1", True)])
def test_booleans_take_the_usual_spellings(spelling, value):
    assert load_config(YAML, "acer", {"trust_region": spelling}).trust_region is value


def test_unknown_yaml_key_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "mine.yml"
    path.write_text("acer:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate' in the 'acer' section of .*mine.yml"):
        load_config(str(path), "acer", {})
    with pytest.raises(ConfigError, match="--trust_region must be a bool, got 'maybe'"):
        load_config(YAML, "acer", {"trust_region": "maybe"})
