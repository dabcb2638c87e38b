"""The README's two commands: set up a fresh machine, then run the main job or the test suite.

    python3 -m Utils.bootstrap quickstart     # set up, play the shipped Pong agent, train and play CartPole
    python3 -m Utils.bootstrap test [ARGS]    # set up, run the default test suite (what CI runs)

A machine with only Python 3.11 and pip is enough: the set-up creates ``.venv`` in the
repository if it is missing and installs torch's CPU build first (pinned in
requirements.txt, so that pip never pulls a multi-GB CUDA build), then requirements.txt and
requirements-ray.txt (the Ray backend's tests then run instead of skipping). What it installed
is stamped in ``.venv`` with a hash of the requirement files, so a second call, of either
command, reuses the environment and installs nothing; a changed requirement file reinstalls.

Standard library only: this module runs before anything is installed. The environment
variable ``ACER_BOOTSTRAP_PYTHON`` names an interpreter that already has everything (the
tests use it to run the Quick start without installing), and skips the set-up.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
REQUIREMENTS = ("requirements.txt", "requirements-ray.txt")
STAMPED = REQUIREMENTS + ("pyproject.toml",)   # a change to any of them reinstalls
PROJECT = "--no-deps -e ."   # the project itself, editable, after the requirement files
STAMP_NAME = ".bootstrap-installed"
PYTHON_OVERRIDE = "ACER_BOOTSTRAP_PYTHON"
SHIPPED_PONG = os.path.join("Pre-Trained Weights", "Pong_acer.pth")
QUICKSTART_STEPS = 30000
STEPS_OVERRIDE = "ACER_QUICKSTART_STEPS"  # tests: a shorter CartPole run, the same commands


class SetupFailed(RuntimeError):
    """A step of the set-up failed; the message says which and what to do."""


def venv_python(venv: str = VENV) -> str:
    """The interpreter of the virtual environment at ``venv``."""
    if os.name == "nt":
        return os.path.join(venv, "Scripts", "python.exe")
    return os.path.join(venv, "bin", "python")


def torch_pin(requirements: str) -> str:
    """The ``torch==X`` line of ``requirements`` (the file's text): installed first, on its own."""
    for line in requirements.splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec.replace(" ", "").lower().startswith("torch=="):
            return spec.replace(" ", "")
    raise SetupFailed("requirements.txt pins no torch version (a line torch==X is needed)")


def requirements_digest(root: str = ROOT) -> str:
    """A hash of the requirement files and pyproject.toml: the stamp that says what the
    environment holds."""
    digest = hashlib.sha256()
    for name in STAMPED:
        with open(os.path.join(root, name), "rb") as fh:
            digest.update(name.encode() + b"\0" + fh.read() + b"\0")
    return digest.hexdigest()


def installed_digest(venv: str = VENV) -> str | None:
    """The digest stamped by the last complete install in ``venv``, or None."""
    try:
        with open(os.path.join(venv, STAMP_NAME)) as fh:
            return fh.read().split()[0]
    except (OSError, IndexError):
        return None


def run(command: list[str], cwd: str = ROOT) -> int:
    """Run ``command``, echoed first, its output streaming through; its exit code."""
    print("==> " + " ".join(shlex.quote(part) for part in command), flush=True)
    return subprocess.call(command, cwd=cwd)


def checked(command: list[str], what: str, cwd: str = ROOT) -> None:
    """Run a set-up ``command``; raise :class:`SetupFailed` naming ``what`` if it fails."""
    if run(command, cwd) != 0:
        raise SetupFailed(f"{what} failed (command above); fix it and run this command again")


def install(python: str, venv: str = VENV) -> None:
    """Install torch's pinned CPU build, then the requirement files, and stamp the result."""
    with open(os.path.join(ROOT, "requirements.txt")) as fh:
        pin = torch_pin(fh.read())
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    checked(pip + [pin], f"installing {pin}")
    for name in REQUIREMENTS:
        checked(pip + ["-r", os.path.join(ROOT, name)], f"installing {name}")
    install_project(pip)
    checked([python, "-c", "import torch, gymnasium, ale_py, cv2, ray, Agent, NN, Utils; "
             "print('torch', torch.__version__, '| gymnasium', gymnasium.__version__, "
             "'| ale-py', ale_py.__version__, '| ray', ray.__version__, "
             "'| project', Agent.__path__[0])"], "checking the install", cwd=os.sep)
    with open(os.path.join(venv, STAMP_NAME), "w") as fh:
        fh.write(f"{requirements_digest()} {datetime.datetime.now().isoformat(timespec='seconds')}\n")


def install_project(pip: list[str]) -> None:
    """This checkout, editable (pyproject.toml; its dependencies are installed already), so
    that any process of the environment imports Agent, NN and Utils from it, whatever its
    working directory: tests, benches, Ray's workers. Built with the environment's own
    setuptools (64 or newer for editable installs), so no build environment is downloaded."""
    checked(pip + ["setuptools>=64"], "installing setuptools (for the editable install)")
    checked(pip + ["--no-build-isolation", *PROJECT.split()], "installing the project (pip install -e .)")


def ensure_environment(venv: str = VENV) -> str:
    """The interpreter to run the project with: ``.venv``'s, created and installed if needed."""
    override = os.environ.get(PYTHON_OVERRIDE)
    if override:
        print(f"using {override} ({PYTHON_OVERRIDE}); no set-up", flush=True)
        return override
    python = venv_python(venv)
    if not os.path.exists(python):
        print(f"creating the virtual environment {venv}", flush=True)
        checked([sys.executable, "-m", "venv", venv], "creating the virtual environment")
    if installed_digest(venv) == requirements_digest():
        print(f"reusing {venv}: it holds requirements.txt, requirements-ray.txt and the project as they are",
              flush=True)
        return python
    print(f"installing into {venv} (torch's CPU build first; a few minutes on a fresh machine)",
          flush=True)
    install(python, venv)
    return python


def quickstart(python: str) -> int:
    """Play the shipped Pong agent for one game, train ACER on CartPole briefly, play that run."""
    steps = int(os.environ.get(STEPS_OVERRIDE, QUICKSTART_STEPS))
    run_name = "CartPole-v1_acer_quickstart_" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    commands = [
        [python, "main.py", "--env_name", "PongNoFrameskip-v4", "--weights", SHIPPED_PONG,
         "--episodes", "1"],
        [python, "main.py", "--do_train", "--env_name", "CartPole-v1", "--n_workers", "2",
         "--total_steps", str(steps), "--run_name", run_name],
        [python, "main.py", "--env_name", "CartPole-v1", "--weights",
         os.path.join("Models", run_name), "--episodes", "3", "--no_video"],
    ]
    for command in commands:
        code = run(command)
        if code != 0:
            print(f"error: the step above exited with code {code}", file=sys.stderr)
            return code
    print(f"\nQuick start done. The Pong game's video is under Vid/; the CartPole run is "
          f"Models/{run_name}. Next (in {os.path.relpath(venv_python(), ROOT)} or after "
          f"'. .venv/bin/activate'):\n"
          f"  python main.py --do_train --env_name CartPole-v1 --n_workers 2 --total_steps 200000"
          f"   # learns CartPole\n"
          f"  python main.py --do_train --resume Models/{run_name} --total_steps {2 * steps}"
          f"   # continue this run\n"
          f"  python main.py --do_train --env_name PongNoFrameskip-v4 --n_workers 2"
          f"   # ACER on Pong, until Ctrl-C\n"
          f"  python3 -m Utils.bootstrap test   # the test suite", flush=True)
    return 0


def test(python: str, pytest_args: list[str]) -> int:
    """The default test suite (pyproject.toml's pytest settings exclude the slow learning runs)."""
    code = run([python, "-m", "pytest", "-q", *pytest_args])
    if code == 5:
        print("error: pytest collected no tests: the default suite must never be empty",
              file=sys.stderr)
        return 1
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m Utils.bootstrap",
        description="Set up .venv if needed (reused when it is already installed), then run the "
                    "Quick start or the default test suite.")
    parser.add_argument("command", choices=("quickstart", "test"),
                        help="quickstart: play the shipped Pong agent, train and play CartPole; "
                             "test: the default test suite, as CI runs it")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="test: further arguments for pytest (e.g. tests/test_units.py -x)")
    args = parser.parse_args(argv)
    if args.command == "quickstart" and args.pytest_args:
        parser.error("quickstart takes no further arguments")
    started = time.time()
    try:
        python = ensure_environment()
    except SetupFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    code = quickstart(python) if args.command == "quickstart" else test(python, args.pytest_args)
    print(f"{args.command}: exit code {code} after {time.time() - started:.0f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
