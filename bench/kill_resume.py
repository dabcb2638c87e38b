"""Crash loop: kill -9 a 2-worker training run at random times, resume it each time.

Starts ``main.py --do_train`` (CartPole-v1 by default, 2 workers), waits a random
time, kills the main process with SIGKILL (no chance to save), checks that its
workers exit by themselves, and restarts the same run with ``--resume``; repeats
``--kills`` times, then lets the last restart reach ``--total_steps`` and stop
normally. Each restart must load the checkpoint and go on. The loss of progress
per kill is the global step count last printed before the kill minus the step
count of the checkpoint the restart resumed from.

    python bench/kill_resume.py [--kills 10] [--env_name CartPole-v1] [--interval 20]

Kill times are drawn uniformly from [--min_s, --max_s] seconds after the run's first
console line (its first checkpoint), so that every kill lands on a training run.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import numpy as np
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from Utils.checkpoint import load_checkpoint

STEPS = re.compile(r"Steps: (\d+)")


@dataclass
class Run:
    """A started training run: its process, and the (time, global steps) of its console lines
    (the first one its start, at the steps it resumed from), read by a background thread."""
    proc: subprocess.Popen
    reports: list
    reader: threading.Thread


def parse_args() -> argparse.Namespace:
    """The bench's options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--env_name", default="CartPole-v1")
    p.add_argument("--n_workers", type=int, default=2)
    p.add_argument("--interval", type=int, default=20, help="iterations between checkpoints")
    p.add_argument("--min_s", type=float, default=0.0, help="shortest time before a kill")
    p.add_argument("--max_s", type=float, default=8.0, help="longest time before a kill")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    return p.parse_args()


def base_command(args, out: str) -> list[str]:
    """The training command every attempt starts from, with its models and logs in ``out``."""
    return [sys.executable, os.path.join(ROOT, "main.py"), "--do_train", "--env_name", args.env_name,
            "--n_workers", str(args.n_workers), "--interval", str(args.interval),
            "--models_dir", os.path.join(out, "Models"), "--logs_dir", os.path.join(out, "Logs")]


def checkpoint_steps(out: str) -> int:
    """Global steps of the run's one checkpoint."""
    (path,) = glob.glob(os.path.join(out, "Models", "*", "checkpoint.pth"))
    return load_checkpoint(path)["counters"]["global_steps"]


def start_run(cmd: list[str], start_steps: int) -> Run:
    """Start ``cmd`` and a thread that records the step count of each of its console lines."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reports = [(time.time(), start_steps)]

    def read():
        for line in proc.stdout:
            match = STEPS.search(line)
            if match:
                reports.append((time.time(), int(match.group(1))))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return Run(proc, reports, reader)


def launch(base: list[str], out: str, attempt: int, kills: int) -> tuple[Run, int]:
    """Attempt ``attempt``: a fresh run first, then ``--resume``; the last one (``attempt ==
    kills``) with a budget of 5000 steps past its checkpoint. The run and its start steps."""
    resuming = attempt > 0
    cmd = base + (["--resume"] if resuming else [])
    start_steps = checkpoint_steps(out) if resuming else 0
    if attempt == kills:
        cmd += ["--total_steps", str(start_steps + 5000)]
    return start_run(cmd, start_steps), start_steps


def final_run(run: Run, resumed_from: int) -> int:
    """Let the last run reach its budget and stop cleanly; 1 if its exit code is not 0."""
    code = run.proc.wait(timeout=600)
    run.reader.join(5)
    print(f"final run from step {resumed_from}: exit code {code}, "
          f"reached {run.reports[-1][1]} steps", flush=True)
    return int(code != 0)


def still_running_after(run: Run, wait: float) -> bool:
    """Wait for the run's first report, then ``wait`` seconds; whether it still runs."""
    while len(run.reports) < 2 and run.proc.poll() is None:
        time.sleep(0.05)  # each run is killed while training, after its first report
    time.sleep(wait)
    return run.proc.poll() is None


def steps_at(reports: list, kill_time: float) -> tuple[int, int]:
    """Steps done at ``kill_time``, extrapolated from the last two reports at their rate (none
    before the run's second report), and the last reported step count."""
    (t1, s1), (t0, s0) = reports[-1], reports[-2] if len(reports) > 1 else reports[-1]
    rate = (s1 - s0) / (t1 - t0) if t1 > t0 and len(reports) > 2 else 0.0
    return int(s1 + rate * (kill_time - t1)), s1


def kill_and_check(run: Run, attempt: int, wait: float, out: str) -> tuple[int, int]:
    """SIGKILL the main process, check that its workers exit by themselves (kill those that do
    not), print what was lost; (steps lost, 1 if workers were left running)."""
    workers = psutil.Process(run.proc.pid).children(recursive=True)
    kill_time = time.time()
    run.proc.send_signal(signal.SIGKILL)
    run.proc.wait()
    before_kill, s1 = steps_at(run.reports, kill_time)
    _, alive = psutil.wait_procs(workers, timeout=10)
    alive = [w for w in alive if w.status() != psutil.STATUS_ZOMBIE]
    saved = checkpoint_steps(out)
    print(f"kill {attempt + 1:2d} after {wait:4.1f} s: about {before_kill} steps done "
          f"(last report {s1}), checkpoint {saved} steps, lost {before_kill - saved}; "
          f"workers left running: {len(alive)}", flush=True)
    for w in alive:
        w.kill()
    return before_kill - saved, int(bool(alive))


def main() -> int:
    """Kill and resume ``--kills`` times, then finish; 1 if any check failed."""
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    out = args.out or tempfile.mkdtemp(prefix="kill_resume_")
    base = base_command(args, out)
    losses, failures = [], 0
    for attempt in range(args.kills + 1):
        run, resumed_from = launch(base, out, attempt, args.kills)
        if attempt == args.kills:  # the last one runs to its budget and stops cleanly
            failures += final_run(run, resumed_from)
            break
        wait = float(rng.uniform(args.min_s, args.max_s))
        if not still_running_after(run, wait):
            print(f"run {attempt} ended by itself with code {run.proc.returncode}", flush=True)
            failures += 1
            continue
        lost, failed = kill_and_check(run, attempt, wait, out)
        losses.append(lost)
        failures += failed
    print(f"{args.kills} kills, {failures} failures; largest loss of progress "
          f"{max(losses) if losses else 0} steps (mean {np.mean(losses) if losses else 0:.0f}); "
          f"run in {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
