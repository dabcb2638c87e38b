"""The runs of a models folder as a table (``python main.py --list_runs``), newest last.

Each folder of ``--models_dir`` is a row: its folder name, game and algorithm (from its
``config.yml``, else its checkpoint), the agent steps of its last checkpoint, the running reward
its ``best.pth`` was written at, and when its ``checkpoint.pth`` was last written (local time).
Checkpoints are read with tensors memory-mapped (:func:`Utils.checkpoint.load_checkpoint`),
so a big one costs milliseconds. A folder that cannot be read (no checkpoint yet, a corrupt
file) gets a row saying why; one with no checkpoint names what its log in ``--logs_dir`` holds.
Rows are sorted by the time their checkpoint was written (the folder's own time without one),
so the last row with a checkpoint is the run that ``--resume`` and play choose by default.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import yaml

from Utils.checkpoint import BEST_NAME, CHECKPOINT_NAME, CheckpointError, load_checkpoint
from Utils.config import default

COLUMNS = ("run", "game", "algo", "steps", "best", "written")


@dataclass
class Run:
    """One folder of a models folder; ``problem`` says why it could not be read."""
    name: str
    written: float                # checkpoint.pth's modification time, else the folder's
    env_name: str | None = None
    algo: str | None = None
    steps: int | None = None
    best: float | None = None     # None: no best.pth (no game finished before a checkpoint)
    problem: str | None = None

    def cells(self) -> tuple[list[str], str]:
        """The row's columns and a note; an unreadable folder's problem takes the place of the
        numbers."""
        first = [self.name, self.env_name or "?", self.algo or "?"]
        if self.steps is None:
            return first, self.problem or ""
        best = "-" if self.best is None else f"{self.best:.2f}"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.written))
        return first + [f"{self.steps:,}", best, when], self.problem or ""


def read_run(run_dir: str, logs_dir: str | None = None) -> Run:
    """What :data:`COLUMNS` show for ``run_dir``; never raises for a bad folder."""
    name = os.path.basename(os.path.normpath(run_dir))
    run = Run(name, os.path.getmtime(run_dir))
    saved = read_config(run_dir)
    run.env_name, run.algo = saved.get("env_name"), saved.get("algo")
    path = os.path.join(run_dir, CHECKPOINT_NAME)
    if not os.path.isfile(path):
        run.problem = f"no {CHECKPOINT_NAME}" + log_note(name, logs_dir or saved.get("logs_dir") or default("logs_dir"))
        return run
    run.written = os.path.getmtime(path)
    try:
        state = load_checkpoint(path, mmap=True)
        run.steps = int(state["counters"]["global_steps"])
    except CheckpointError as err:
        run.problem = str(err).replace(path, CHECKPOINT_NAME)
        return run
    except (KeyError, TypeError, ValueError):
        run.problem = f"{CHECKPOINT_NAME} has no step counter"
        return run
    run.env_name = run.env_name or state.get("env_name")
    run.algo = run.algo or state.get("algo", "acer")
    best = os.path.join(run_dir, BEST_NAME)
    if os.path.isfile(best):
        try:
            run.best = float(load_checkpoint(best, mmap=True)["best_running_reward"])
        except (CheckpointError, KeyError, TypeError, ValueError):
            run.problem = f"{BEST_NAME} is unreadable"
    return run


def read_config(run_dir: str) -> dict:
    """The run's ``config.yml`` ({} when missing or unreadable)."""
    try:
        with open(os.path.join(run_dir, "config.yml")) as fh:
            saved = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return saved if isinstance(saved, dict) else {}


def log_note(name: str, logs_dir: str) -> str:
    """`` (its log: 12 games, to step 240)`` from the last line of the run's ``episodes.csv``
    (a run stopped, or still going, before its first checkpoint), or `` (no log in L/)``."""
    path = os.path.join(logs_dir, name, "episodes.csv")
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 4096))
            last = fh.read().decode("utf-8", "replace").strip().splitlines()[-1].split(",")
        return f" (its log: {int(last[0]):,} games, to step {int(last[1]):,})"
    except (OSError, IndexError, ValueError):
        pass
    if os.path.isfile(path):
        return " (its log has no game)"
    return f" (no log in {logs_dir}/)"


def list_runs(models_dir: str, logs_dir: str | None = None) -> list[Run] | None:
    """The folders of ``models_dir`` as :class:`Run` rows, newest last (None: no such folder)."""
    if not os.path.isdir(models_dir):
        return None
    rows = [read_run(os.path.join(models_dir, d), logs_dir) for d in os.listdir(models_dir)
            if not d.startswith(".") and os.path.isdir(os.path.join(models_dir, d))]
    return sorted(rows, key=lambda r: (r.written, r.name))


def format_table(rows: list[Run]) -> list[str]:
    """The header and one line per row, columns two spaces apart (numbers right-aligned), a
    row's note at its end."""
    table = [(list(COLUMNS), "")] + [r.cells() for r in rows]
    widths = [max(len(cells[i]) for cells, _ in table if i < len(cells)) for i in range(len(COLUMNS))]
    lines = []
    for cells, note in table:
        out = [cell.rjust(widths[i]) if COLUMNS[i] in ("steps", "best") else cell.ljust(widths[i])
               for i, cell in enumerate(cells)]
        lines.append("  ".join(out + [note]).rstrip())
    return lines
