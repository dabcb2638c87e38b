"""The learning canary: a short Breakout ACER run to run before any long one.

Trains ``main.py --do_train --env_name BreakoutNoFrameskip-v4 --n_workers 8 --seed 123
--save_replay`` with the defaults for ``--steps`` agent steps (400k; the run prints its own
rate and ETA), then prints worker 0's per-life curve on the original's axis (0.99 running
averages of the life score and the life length, x = worker-0 lives) at lives 200, 400 and 600
and at every 100k steps, beside

* the original's published 8-worker curve (read from its plots: 5 at life 600; it publishes
  nothing before), and
* the corrected Breakout run of the same command that shipped ``Breakout_acer.pth``
  (``results/breakout_acer_8w_worker0_lives.csv``), at the same lives and steps: today's code
  falling behind it is a regression until shown otherwise.

A run that learns needs more steps per life, so it reaches fewer lives in the same steps; the
life rows it does not reach are shown as such. The canary asserts nothing: it is for a person
to read before spending days on a long run. The run folder it writes can be resumed as a long
run (``python main.py --do_train --resume <out>/Models/<run_name>``).

    python bench/canary.py [--steps 400000] [--out ~/runs/canary] [--run_name breakout_canary]
    python bench/canary.py --report <logs dir>        # the table for a run that exists
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from Utils.logger import running_average

EARLIER = os.path.join(ROOT, "results", "breakout_acer_8w_worker0_lives.csv")
ORIGINAL = {600: 5.0, 900: 17.0, 1050: 30.0, 1280: 60.0}   # ../shared/REFERENCE.md
LIVES = (200, 400, 600)
STEP_EVERY = 100_000


def worker0_curve(lives_csv: str) -> list[tuple[int, int, float, float]]:
    """(worker-0 life, global step, running score, running length) for each of worker 0's
    lives: the original's logging (one episode per life, the first value starts the average)."""
    curve, score, length = [], None, None
    with open(lives_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["worker"] != "0":
                continue
            r, n = float(row["reward"]), float(row["length"])
            score, length = running_average(score, r), running_average(length, n)
            curve.append((int(row["worker_life"]), int(row["global_step"]), score, length))
    return curve


def at_life(curve, life: int):
    return next((point for point in curve if point[0] >= life), None)


def at_step(curve, step: int):
    """The last of worker 0's lives that ended by ``step``."""
    before = [point for point in curve if point[1] <= step]
    return before[-1] if before else None


def cell(point) -> str:
    return "not reached" if point is None else f"{point[2]:6.2f} / {point[3]:5.1f}"


def report(lives_csv: str) -> str:
    """The canary's table: this run beside the original and the earlier corrected run."""
    ours, earlier = worker0_curve(lives_csv), worker0_curve(EARLIER)
    if not ours:
        return f"no life of worker 0 in {lives_csv} yet"
    last_step = ours[-1][1]
    lines = [f"worker 0, 0.99 running averages: score / life length "
             f"(this run: {ours[-1][0]} worker-0 lives by step {last_step:,})",
             f"{'':>22}  {'this run':>16}  {'earlier run':>16}  original (score)"]
    for life in LIVES:
        original = f"{ORIGINAL[life]:.0f}" if life in ORIGINAL else "not published"
        lines.append(f"{'at life ' + str(life):>22}  {cell(at_life(ours, life)):>16}  "
                     f"{cell(at_life(earlier, life)):>16}  {original}")
    for step in range(STEP_EVERY, last_step + 1, STEP_EVERY):
        mine, theirs = at_step(ours, step), at_step(earlier, step)
        where = lambda p: "" if p is None else f" (life {p[0]})"   # noqa: E731
        lines.append(f"{'at step ' + format(step, ','):>22}  {cell(mine):>16}  {cell(theirs):>16}"
                     f"  mine{where(mine)}, earlier{where(theirs)}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400_000, help="agent steps to train")
    parser.add_argument("--out", default=os.path.expanduser("~/runs/canary"),
                        help="where Models/ and Logs/ go (outside the repo)")
    parser.add_argument("--run_name", default="breakout_canary")
    parser.add_argument("--report", metavar="LOGS_DIR",
                        help="print the table for an existing run's log folder and exit")
    args = parser.parse_args()
    if args.report:
        path = os.path.join(args.report, "lives.csv")
        if not os.path.isfile(path):
            print(f"error: no lives.csv in {args.report}", file=sys.stderr)
            return 2
        print(report(path))
        return 0
    logs = os.path.join(args.out, "Logs", args.run_name)
    if os.path.exists(logs):
        print(f"error: {logs} exists; resume it with main.py --resume, or pick another --run_name",
              file=sys.stderr)
        return 2
    command = [sys.executable, os.path.join(ROOT, "main.py"), "--do_train",
               "--env_name", "BreakoutNoFrameskip-v4", "--n_workers", "8", "--seed", "123",
               "--save_replay", "--total_steps", str(args.steps),
               "--models_dir", os.path.join(args.out, "Models"),
               "--logs_dir", os.path.join(args.out, "Logs"), "--run_name", args.run_name]
    print("running:", " ".join(command), flush=True)
    status = subprocess.call(command, cwd=ROOT)
    if status != 0:
        print(f"the training command exited {status}", file=sys.stderr)
        return status
    print(report(os.path.join(logs, "lives.csv")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
