"""Every row of the Troubleshooting table (docs/troubleshooting.md, linked from README.md):
exit code 2, one line with the message, no file changed."""
import os
import re
import shlex

import pytest
import torch

from Utils.checkpoint import save_checkpoint

from conftest import ROOT
from test_training import tree_snapshot
from test_weight_files import RunsCode, cartpole_checkpoint

ROW = re.compile(r"^\| `python main\.py (?P<args>[^`]*)` \| `(?P<message>[^`]*)` \|$")


def table_rows():
    with open(os.path.join(ROOT, "docs", "troubleshooting.md")) as fh:
        text = fh.read()
    section = text.split("# Troubleshooting", 1)[1]
    rows = [m.groupdict() for m in map(ROW.match, section.splitlines()) if m]
    return rows


def test_the_table_has_at_least_15_rows():
    assert len(table_rows()) >= 15


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder with the files the table's commands name."""
    root = tmp_path_factory.mktemp("troubleshooting")
    state = cartpole_checkpoint(root / "scratch")
    run = root / "Models" / "cartpole_run"
    run.mkdir(parents=True)
    save_checkpoint(state, str(run / "checkpoint.pth"))
    (run / "config.yml").write_text("env_name: CartPole-v1\nalgo: acer\n")
    torch.save({"format_version": 1, "model": RunsCode(str(root / "code_ran"))}, root / "evil.pth")
    data = (run / "checkpoint.pth").read_bytes()
    (root / "truncated.pth").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not a checkpoint\n")
    (root / "bad_key.yml").write_text("acer:\n  learning_rate: 0.1\n")
    (root / "bad_yaml.yml").write_text("acer: [lr: 1\n")
    import shutil
    shutil.rmtree(root / "scratch")
    return root


@pytest.mark.parametrize("row", table_rows(), ids=lambda r: r["args"])
def test_row(folder, main_cli, row):
    before = tree_snapshot(folder)
    result = main_cli(shlex.split(row["args"]), folder, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (row, result.stdout[-500:], result.stderr)
    assert len(lines) == 1 and row["message"] in lines[0], (row, result.stderr)
    assert tree_snapshot(folder) == before
    assert not (folder / "code_ran").exists()
