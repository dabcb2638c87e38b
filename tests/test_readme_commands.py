"""Every shell command of the documented command list (docs/commands.md, "Every command, in
order") works as written in a fresh copy of the repository, in order (the install line is what
the set-up runs; commands marked ``# long:`` run with the flags the mark names; ``# not run by
the test:`` ones are skipped, with the reason). The README's own commands are among them, its
two set-up commands are the bootstrap's, and every relative link of README.md and docs/*.md
resolves (file and heading)."""
import glob
import os
import re
import shutil
import subprocess
import sys
import urllib.parse

import pytest

from Utils.precision import native_bf16

from conftest import ROOT

SKIP_COPY = shutil.ignore_patterns(".git", ".venv", "Models", "Logs", "Vid", "__pycache__",
                                   ".pytest_cache", "runs", "*.pyc")
README = os.path.join(ROOT, "README.md")
COMMANDS = os.path.join(ROOT, "docs", "commands.md")


def pages() -> list[str]:
    """README.md and every page under docs/."""
    return [README] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def bash_blocks(path: str) -> list[list[str]]:
    """The lines of each ```bash block of ``path``."""
    text = open(path).read()
    return [block.split("```", 1)[0].splitlines() for block in text.split("```bash\n")[1:]]


def commands_of(lines: list[str]) -> list[str]:
    return [line for line in lines if line.strip() and not line.startswith("#")]


def quick_start_lines() -> list[str]:
    """The command lines of docs/commands.md's "Every command, in order" block."""
    text = open(COMMANDS).read()
    section = text.split("## Every command, in order", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return commands_of(block.splitlines())


def readme_lines() -> list[str]:
    """The command lines of every bash block of README.md."""
    return [line for block in bash_blocks(README) for line in commands_of(block)]


def runnable(line: str) -> tuple[str | None, str]:
    """The command to run for a documented command line (None: skipped) and why."""
    command, _, comment = line.partition("   # ")
    if "not run by the test:" in comment:
        return None, comment
    if command.startswith("python3 -m venv"):
        return None, "the install: the set-up (.ci/run) runs it"
    long = re.match(r"long: (.*)", comment.strip())
    if long:
        command = f"{command.strip()} {long.group(1)}"
    if "--precision bf16" in command and not native_bf16():
        return None, "this CPU has no native bfloat16"
    return command.strip(), ""


def set_up_installs() -> list[str]:
    """What the set-up installs, in order, as pip arguments: .ci/run's pip lines, or, where
    .ci/run hands over to Utils.bootstrap, what the bootstrap's install step runs (torch's pin
    from requirements.txt, then each requirement file, then the project, editable)."""
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    if "Utils.bootstrap" in ci:
        from Utils import bootstrap
        with open(os.path.join(ROOT, "requirements.txt")) as fh:
            pin = bootstrap.torch_pin(fh.read())
        return [pin] + [f"-r {name}" for name in bootstrap.REQUIREMENTS] + [bootstrap.PROJECT]
    return [package.strip() for package in re.findall(r"pip install (?:--quiet )?(.+)\n", ci)]


def test_the_install_line_is_what_ci_runs():
    installs = set_up_installs()
    assert installs.index("torch==2.13.0") < installs.index("-r requirements.txt"), installs
    lines = [l for l in quick_start_lines() + readme_lines() if l.startswith("python3 -m venv")]
    assert len(lines) == 2, lines            # docs/commands.md's and the README's by-hand line
    for install in lines:
        steps = [step.strip() for step in install.split("&&")]
        assert steps[0] == "python3 -m venv .venv" and steps[1] == ". .venv/bin/activate"
        packages = [step.split("pip install ", 1)[1] for step in steps[2:]]
        # pip install torch==2.13.0, pip install -r requirements.txt: in the set-up's order
        assert packages == [p for p in installs if p in packages] and packages, (install, installs)
        assert "torch==2.13.0" in packages and "-r requirements.txt" in packages, install
    for line in readme_lines():              # pip install -r requirements-ray.txt (optional)
        if line.startswith("pip install "):
            package = line.split("   # ", 1)[0].split("pip install ", 1)[1].strip()
            assert package in installs, (line, installs)


def test_the_readme_gives_the_two_bootstrap_commands():
    """The README's Quick start is the bootstrap's two commands, and the bootstrap takes them."""
    section = open(README).read().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = commands_of(section.split("```bash\n", 1)[1].split("```", 1)[0].splitlines())
    assert [line.split("   # ", 1)[0].strip() for line in block] == [
        "python3 -m Utils.bootstrap quickstart", "python3 -m Utils.bootstrap test"]
    result = subprocess.run([sys.executable, "-m", "Utils.bootstrap", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "quickstart" in result.stdout and "test" in result.stdout, result.stdout


def test_the_readmes_commands_are_run_by_the_fresh_copy_test():
    """Each README command (python ...) is a command of docs/commands.md's block, as written,
    so that the test below runs it (or that block's mark says why not)."""
    listed = {line.partition("   # ")[0].strip() for line in quick_start_lines()}
    readme = [line.partition("   # ")[0].strip() for line in readme_lines()
              if line.startswith("python ")]
    assert len(readme) >= 7, readme
    for command in readme:
        assert command in listed, command


def fresh_copy(destination) -> None:
    """What a fresh clone holds, with this checkout's uncommitted changes: the tracked files and
    the untracked ones that .gitignore does not name. Files the documented commands write (the
    command list's my_cartpole.pth and curves.png, Models/, Logs/, Vid/) are ignored there, so a
    reader who followed the documentation in this tree does not change what the test runs on."""
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


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: str) -> set[str]:
    text = re.sub(r"```.*?```", "", open(path).read(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("page", pages(), ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_resolve(page):
    """Every relative link and image of README.md and docs/*.md names a file that exists, and
    a #heading that the file has."""
    text = re.sub(r"```.*?```", "", open(page).read(), flags=re.S)   # code is not links
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'<img src="([^"]+)"', text)
    assert targets
    for target in targets:
        if re.match(r"[a-z]+:", target):
            continue                         # http(s): not checked offline
        path, _, anchor = urllib.parse.unquote(target).partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        assert os.path.exists(resolved), (page, target)
        if anchor:
            assert resolved.endswith(".md") and anchor in anchors(resolved), (page, target)


def test_the_readme_links_every_docs_page_and_stays_short():
    text = open(README).read()
    for page in pages()[1:]:
        assert f"](docs/{os.path.basename(page)})" in text, page
    assert len(text.encode()) <= 15000
