"""Shared helpers: run the real command line in a subprocess."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(args, cwd, timeout=300):
    """Run ``python main.py ARGS`` in ``cwd``; return the CompletedProcess."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def only_run(folder):
    """The single run folder under ``folder`` (a Models/ or Logs/ directory)."""
    runs = sorted(glob.glob(os.path.join(folder, "*")))
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def main_cli():
    return run_main


@pytest.fixture
def float64_default():
    """Compare in float64, without leaking the default dtype into other test modules."""
    import torch
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def pytest_terminal_summary(terminalreporter):
    """Say in one line how many tests skipped for want of the optional Ray extras, and how to
    get them, rather than leave them among the skips."""
    ray_skips = [report for report in terminalreporter.stats.get("skipped", [])
                 if "ray" in str(getattr(report, "longrepr", "")).lower()]
    if ray_skips:
        terminalreporter.write_line(
            f"{len(ray_skips)} test(s) skipped: Ray is not installed "
            f"(pip install -r requirements-ray.txt; python3 -m Utils.bootstrap test installs it)",
            yellow=True)
