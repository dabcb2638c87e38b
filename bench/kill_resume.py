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

import numpy as np
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from Utils.checkpoint import load_checkpoint  # noqa: E402

STEPS = re.compile(r"Steps: (\d+)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--env_name", default="CartPole-v1")
    p.add_argument("--n_workers", type=int, default=2)
    p.add_argument("--interval", type=int, default=20, help="iterations between checkpoints")
    p.add_argument("--min_s", type=float, default=0.0, help="shortest time before a kill")
    p.add_argument("--max_s", type=float, default=8.0, help="longest time before a kill")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    out = args.out or tempfile.mkdtemp(prefix="kill_resume_")
    base = [sys.executable, os.path.join(ROOT, "main.py"), "--do_train", "--env_name", args.env_name,
            "--n_workers", str(args.n_workers), "--interval", str(args.interval),
            "--models_dir", os.path.join(out, "Models"), "--logs_dir", os.path.join(out, "Logs")]
    losses, failures = [], 0
    for attempt in range(args.kills + 1):
        resuming = attempt > 0
        cmd = base + (["--resume"] if resuming else [])
        start_steps = 0
        if resuming:
            (path,) = glob.glob(os.path.join(out, "Models", "*", "checkpoint.pth"))
            start_steps = load_checkpoint(path)["counters"]["global_steps"]
        if attempt == args.kills:
            cmd += ["--total_steps", str(start_steps + 5000)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        reports, resumed_from = [(time.time(), start_steps)], start_steps

        def read():
            for line in proc.stdout:
                match = STEPS.search(line)
                if match:
                    reports.append((time.time(), int(match.group(1))))
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if attempt == args.kills:  # the last one runs to its budget and stops cleanly
            code = proc.wait(timeout=600)
            reader.join(5)
            print(f"final run from step {resumed_from}: exit code {code}, "
                  f"reached {reports[-1][1]} steps", flush=True)
            failures += code != 0
            break
        wait = float(rng.uniform(args.min_s, args.max_s))
        while len(reports) < 2 and proc.poll() is None:
            time.sleep(0.05)  # each run is killed while training, after its first report
        time.sleep(wait)
        if proc.poll() is not None:
            print(f"run {attempt} ended by itself with code {proc.returncode}", flush=True)
            failures += 1
            continue
        workers = psutil.Process(proc.pid).children(recursive=True)
        kill_time = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (t1, s1), (t0, s0) = reports[-1], reports[-2] if len(reports) > 1 else reports[-1]
        rate = (s1 - s0) / (t1 - t0) if t1 > t0 and len(reports) > 2 else 0.0
        before_kill = int(s1 + rate * (kill_time - t1))
        _, alive = psutil.wait_procs(workers, timeout=10)
        alive = [w for w in alive if w.status() != psutil.STATUS_ZOMBIE]
        (path,) = glob.glob(os.path.join(out, "Models", "*", "checkpoint.pth"))
        saved = load_checkpoint(path)["counters"]["global_steps"]
        losses.append(before_kill - saved)
        print(f"kill {attempt + 1:2d} after {wait:4.1f} s: about {before_kill} steps done "
              f"(last report {s1}), checkpoint {saved} steps, lost {before_kill - saved}; "
              f"workers left running: {len(alive)}", flush=True)
        failures += bool(alive)
        for w in alive:
            w.kill()
    print(f"{args.kills} kills, {failures} failures; largest loss of progress "
          f"{max(losses) if losses else 0} steps (mean {np.mean(losses) if losses else 0:.0f}); "
          f"run in {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
