"""The README's two commands (``python3 -m Utils.bootstrap quickstart|test``) and the pytest
line that names the Ray tests skipped without the extras."""
import glob
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from Utils import bootstrap


def test_the_torch_pin_comes_from_requirements_txt():
    with open(os.path.join(ROOT, "requirements.txt")) as fh:
        assert bootstrap.torch_pin(fh.read()) == "torch==2.13.0"
    assert bootstrap.torch_pin("numpy\ntorch == 9.9   # pinned\n") == "torch==9.9"
    with pytest.raises(bootstrap.SetupFailed, match="pins no torch"):
        bootstrap.torch_pin("numpy>=1\ntorchvision==1\n")


def test_the_stamp_follows_the_requirement_files_and_pyproject(tmp_path):
    for name in bootstrap.STAMPED:
        (tmp_path / name).write_text("numpy\n")
    before = bootstrap.requirements_digest(str(tmp_path))
    (tmp_path / "requirements-ray.txt").write_text("numpy\nray==1\n")
    after_ray = bootstrap.requirements_digest(str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert len({before, after_ray, bootstrap.requirements_digest(str(tmp_path))}) == 3


def test_an_installed_environment_is_reused_without_pip(tmp_path, capsys, monkeypatch):
    """A stamped .venv is used as it is: no venv is created and nothing is installed."""
    monkeypatch.delenv(bootstrap.PYTHON_OVERRIDE, raising=False)
    venv = tmp_path / ".venv"
    python = bootstrap.venv_python(str(venv))
    os.makedirs(os.path.dirname(python))
    os.symlink(sys.executable, python)
    (venv / bootstrap.STAMP_NAME).write_text(bootstrap.requirements_digest() + " 2026-12-02\n")
    assert bootstrap.ensure_environment(str(venv)) == python
    out = capsys.readouterr().out
    assert "reusing" in out and "installing" not in out and "creating" not in out
    assert sorted(os.listdir(venv)) == sorted([os.path.basename(os.path.dirname(python)),
                                               bootstrap.STAMP_NAME])


def test_a_stale_stamp_is_not_reused(tmp_path):
    venv = tmp_path / ".venv"
    venv.mkdir()
    (venv / bootstrap.STAMP_NAME).write_text("0" * 64 + " 2026-01-01\n")
    assert bootstrap.installed_digest(str(venv)) != bootstrap.requirements_digest()
    assert bootstrap.installed_digest(str(tmp_path / "missing")) is None


def test_test_command_runs_pytest_in_the_environment(tmp_path):
    """``test ARGS`` hands ARGS to pytest with the environment's interpreter, and returns its
    exit code (an empty selection is a failure, as in CI)."""
    env = dict(os.environ, **{bootstrap.PYTHON_OVERRIDE: sys.executable})
    ok = subprocess.run([sys.executable, "-m", "Utils.bootstrap", "test",
                         "tests/test_bootstrap.py::test_the_torch_pin_comes_from_requirements_txt"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 passed" in ok.stdout and "test: exit code 0" in ok.stdout
    empty = subprocess.run([sys.executable, "-m", "Utils.bootstrap", "test", "tests/test_bootstrap.py",
                            "-k", "no_such_test_x"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert empty.returncode == 1 and "collected no tests" in empty.stderr


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(ROOT, ".ci", "run")) as fh:
        assert "python3 -m Utils.bootstrap test" in fh.read()


def test_ray_skips_are_named_in_one_line(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "def test_needs_ray():\n"
        "    pytest.importorskip('no_such_module_ray', reason='Ray is optional: pip install "
        "-r requirements-ray.txt')\n"
        "def test_plain():\n    pass\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tests"))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest",
                             "-p", "no:cacheprovider", "test_x.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert "1 test(s) skipped: Ray is not installed (pip install -r requirements-ray.txt" \
        in result.stdout, result.stdout


def quickstart_in_a_clone(tmp_path):
    """A committed clone of this checkout in which the Quick start ran (400 CartPole steps);
    (its folder, the environment used, the quick start's stdout)."""
    from test_readme_commands import fresh_copy
    copy = tmp_path / "clone"
    fresh_copy(copy)
    for git in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t",
                                               "commit", "-q", "-m", "clone"]):
        subprocess.run(["git", *git], cwd=copy, check=True, capture_output=True, timeout=120)
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{bootstrap.PYTHON_OVERRIDE: sys.executable,
                                                   bootstrap.STEPS_OVERRIDE: "400"})
    quick = subprocess.run([sys.executable, "-m", "Utils.bootstrap", "quickstart"], cwd=copy,
                           env=env, capture_output=True, text=True, timeout=900)
    assert quick.returncode == 0, quick.stdout[-2000:] + quick.stderr[-2000:]
    assert "Quick start done" in quick.stdout and "Game 3/3: score" in quick.stdout
    assert "Game 1/1: score" in quick.stdout.split("--do_train")[0]   # the shipped Pong agent
    assert glob.glob(str(copy / "Models" / "CartPole-v1_acer_quickstart_*" / "checkpoint.pth"))
    return copy, env, quick.stdout


def test_the_quickstart_runs_and_writes_only_what_git_ignores(tmp_path):
    """The README's first command works in a clone, and everything it writes (Models/, Logs/,
    Vid/) is ignored, so a fresh clone of that tree holds none of it."""
    copy, _, _ = quickstart_in_a_clone(tmp_path)
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=copy,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and status.stdout == "", status.stdout[-2000:]


@pytest.mark.slow   # about 100 s: test_readme_commands.py again, in the quick start's clone
def test_the_quickstart_then_the_readme_test_in_the_same_copy(tmp_path):
    """Following the README (its first command) must not make the suite's README test fail in
    that tree: the files the Quick start writes (Models/, Logs/, Vid/) are not what a fresh
    clone holds."""
    copy, env, _ = quickstart_in_a_clone(tmp_path)
    suite = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/test_readme_commands.py"], cwd=copy, env=env,
                           capture_output=True, text=True, timeout=1800)
    assert suite.returncode == 0, suite.stdout[-3000:]
