"""Training throughput: agent steps per second of the real training command.

Runs ``main.py --do_train`` for each algorithm and worker count, reads the
global step count from its console lines as they appear (``--interval`` is set
so that a line comes about every ``--report_steps`` agent steps), discards a
warm-up, and reports steps/s over fixed windows (median, min, max).

    python bench/throughput.py [--algo acer a3c] [--env_name PongNoFrameskip-v4]
                               [--n_workers 1 2] [--seconds 60] [--warmup 20] [-- main.py flags]

The last lines read like: ``acer 2 workers: 190.3 steps/s (min 180.1, max 201.7)``.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = re.compile(r"Steps: (\d+)")


def rollout_steps(algo: str, n_workers: int, extra: list[str]) -> int:
    """Agent steps per worker iteration under the default config (ACER k=20; recurrent A3C
    80 // n_workers; feed-forward A3C t_max=5)."""
    if algo == "acer":
        return 20
    return 5 if "--no_recurrent" in extra else max(1, 80 // n_workers)


def measure(algo: str, env_name: str, n_workers: int, seconds: float, warmup: float,
            window: float, report_steps: int, extra: list[str]) -> dict:
    """Run training for ``warmup + seconds``; return steps/s statistics over windows."""
    out = tempfile.mkdtemp(prefix="throughput_")
    interval = max(1, report_steps // rollout_steps(algo, n_workers, extra))
    cmd = [sys.executable, os.path.join(ROOT, "main.py"), "--do_train", "--algo", algo,
           "--env_name", env_name, "--n_workers", str(n_workers), "--interval", str(interval),
           "--models_dir", os.path.join(out, "Models"), "--logs_dir", os.path.join(out, "Logs"), *extra]
    t_start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
    samples = []  # (time, global steps)
    first_step_s = None
    try:
        for line in proc.stdout:
            match = STEPS.search(line)
            if not match:
                continue
            now = time.time()
            first_step_s = first_step_s or now - t_start
            samples.append((now, int(match.group(1))))
            if now - t_start > warmup + seconds + (first_step_s or 0):
                break
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    t0 = samples[0][0] + warmup
    measured = [(t, s) for t, s in samples if t >= t0]
    rates = []
    start = measured[0]
    for t, s in measured[1:]:
        if t - start[0] >= window:
            rates.append((s - start[1]) / (t - start[0]))
            start = (t, s)
    total = (measured[-1][1] - measured[0][1]) / (measured[-1][0] - measured[0][0])
    return {"median": float(np.median(rates)), "min": float(np.min(rates)), "max": float(np.max(rates)),
            "mean": total, "windows": len(rates), "first_report_s": first_step_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", nargs="+", default=["acer", "a3c"], choices=["acer", "a3c"])
    p.add_argument("--env_name", default="PongNoFrameskip-v4")
    p.add_argument("--n_workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seconds", type=float, default=60.0, help="measured time per worker count")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds discarded after the first report")
    p.add_argument("--window", type=float, default=10.0, help="seconds per rate window")
    p.add_argument("--report_steps", type=int, default=1000, help="agent steps between console lines")
    args, extra = p.parse_known_args()
    extra = [a for a in extra if a != "--"]
    results = {}
    for algo in args.algo:
        for n in args.n_workers:
            results[algo, n] = measure(algo, args.env_name, n, args.seconds, args.warmup, args.window,
                                       args.report_steps, extra)
    print(f"\n{'algo':6} {'workers':>7} {'median':>8} {'min':>8} {'max':>8} {'mean':>8} {'windows':>8} "
          f"{'1st report s':>13}")
    for (algo, n), r in results.items():
        print(f"{algo:6} {n:7d} {r['median']:8.1f} {r['min']:8.1f} {r['max']:8.1f} "
              f"{r['mean']:8.1f} {r['windows']:8d} {r['first_report_s']:13.1f}")
    for (algo, n), r in results.items():
        print(f"{algo} {n} workers: {r['median']:.1f} steps/s "
              f"(min {r['min']:.1f}, max {r['max']:.1f}) on {args.env_name}")


if __name__ == "__main__":
    main()
