"""Every shell command of README.md's quick start works as written in a fresh copy of the
repository, in order (the install line is what .ci/run does; commands marked ``# long:`` run
with the flags the mark names; ``# not run by the test:`` ones are skipped, with the reason)."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from Utils.precision import native_bf16

from conftest import ROOT

SKIP_COPY = shutil.ignore_patterns(".git", ".venv", "Models", "Logs", "Vid", "__pycache__",
                                   ".pytest_cache", "runs", "*.pyc")


def quick_start_lines() -> list[str]:
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def runnable(line: str) -> tuple[str | None, str]:
    """The command to run for a README line (None: skipped) and why."""
    command, _, comment = line.partition("   # ")
    if "not run by the test:" in comment:
        return None, comment
    if command.startswith("python3 -m venv"):
        return None, "the install: .ci/run runs it"
    long = re.match(r"long: (.*)", comment.strip())
    if long:
        command = f"{command.strip()} {long.group(1)}"
    if "--precision bf16" in command and not native_bf16():
        return None, "this CPU has no native bfloat16"
    return command.strip(), ""


def test_the_install_line_is_what_ci_runs():
    (install,) = [l for l in quick_start_lines() if l.startswith("python3 -m venv")]
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    steps = [step.strip() for step in install.split("&&")]
    assert steps[0] == "python3 -m venv .venv" and steps[1] == ". .venv/bin/activate"
    for step in steps[2:]:   # pip install torch==2.13.0, pip install -r requirements.txt
        package = step.split("pip install ", 1)[1]
        assert re.search(rf"pip install (--quiet )?{re.escape(package)}\n", ci), step
    assert ci.index("torch==2.13.0") < ci.index("-r requirements.txt")


def fresh_copy(destination) -> None:
    """What a fresh clone holds, with this checkout's uncommitted changes: the tracked files and
    the untracked ones that .gitignore does not name. Files the documented commands write (the
    Quick start's my_cartpole.pth and curves.png, Models/, Logs/, Vid/) are ignored there, so a
    reader who followed the README in this tree does not change what the test runs on."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, timeout=60)
    if listed.returncode != 0:           # not a git checkout: copy the tree, skipping outputs
        shutil.copytree(ROOT, destination, ignore=SKIP_COPY)
        return
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = os.path.join(ROOT, name)
        if os.path.isfile(source):       # a tracked file deleted in the work tree is skipped
            target = os.path.join(destination, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(source, target)


def test_quick_start_commands_work_in_a_fresh_copy(tmp_path):
    copy = tmp_path / "clone"
    fresh_copy(copy)
    commands = [runnable(line) for line in quick_start_lines()]
    ran = 0
    for command, why in commands:
        if command is None:
            continue
        assert command.startswith("python "), command
        shell = command.replace("python ", f"{sys.executable} ", 1)
        result = subprocess.run(["bash", "-c", shell], cwd=copy, capture_output=True, text=True,
                                timeout=600, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert result.returncode == 0, (command, result.stdout[-1000:], result.stderr[-2000:])
        assert "Traceback" not in result.stderr, (command, result.stderr)
        ran += 1
    assert ran >= 12
    assert (copy / "my_cartpole.pth").is_file() and (copy / "curves.png").is_file()


def test_the_parser_sees_marks():
    assert runnable("python main.py --do_train   # long: --total_steps 300") == \
        ("python main.py --do_train --total_steps 300", "")
    assert runnable("python -m pytest -q   # not run by the test: it is the suite")[0] is None
