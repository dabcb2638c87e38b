"""Slow learning checks (minutes): python -m pytest -m slow."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_acer_cartpole_two_workers_reaches_475(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "cartpole_acer.py"),
                             "--n_workers", "2", "--max_minutes", "15", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=20 * 60)
    print(result.stdout[-3000:])
    assert result.returncode == 0 and "PASSED" in result.stdout
