"""Slow learning checks (minutes): python -m pytest -m slow."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["acer", "a3c"])
def test_cartpole_two_workers_reaches_475(tmp_path, algo):
    """The 20-game evaluation mean of a 2-worker run reaches 475: ACER with its default
    hyperparameters, recurrent A3C with lr 1e-3 (its Atari default, 1e-4, is slow here)."""
    extra = ["--", "--lr", "1e-3"] if algo == "a3c" else []
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "learning.py"), "--algo", algo,
                             "--n_workers", "2", "--max_minutes", "20", "--out", str(tmp_path), *extra],
                            capture_output=True, text=True, timeout=25 * 60)
    print(result.stdout[-3000:])
    assert result.returncode == 0 and "PASSED" in result.stdout


@pytest.mark.slow
def test_cartpole_acer_on_the_ray_backend_reaches_475(tmp_path):
    """The same check through --backend ray (a local Ray instance, 2 worker actors)."""
    pytest.importorskip("ray")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "learning.py"), "--algo", "acer",
                             "--n_workers", "2", "--max_minutes", "40", "--out", str(tmp_path),
                             "--", "--backend", "ray"],
                            capture_output=True, text=True, timeout=45 * 60)
    print(result.stdout[-3000:])
    assert result.returncode == 0 and "PASSED" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["acer", "a3c"])
def test_pendulum_two_workers_reaches_the_target(tmp_path, algo):
    """Pendulum-v1 with the continuous defaults: ACER to -200, A3C to -400 (20-episode means)."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "learning.py"), "--algo", algo,
                             "--env_name", "Pendulum-v1", "--seed", "1", "--n_workers", "2",
                             "--max_minutes", "20", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=25 * 60)
    print(result.stdout[-3000:])
    assert result.returncode == 0 and "PASSED" in result.stdout


@pytest.mark.slow
def test_kill_9_loop_every_resume_succeeds(tmp_path):
    """10 random SIGKILLs of a 2-worker run's main process: workers exit, every --resume works."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "kill_resume.py"), "--kills", "10",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=15 * 60)
    print(result.stdout[-3000:])
    assert result.returncode == 0 and "10 kills, 0 failures" in result.stdout
