"""Learning check: ACER or A3C on an environment (default CartPole-v1) until the 20-episode
evaluation mean reaches a target.

Starts the real training command (``main.py --do_train``) in a subprocess,
evaluates each new checkpoint over ``--eval_episodes`` full games while it
trains, and stops at the first evaluation whose mean reaches ``--target``.
Prints the agent steps and minutes it took and keeps the passing checkpoint
as ``passing.pth`` in the run folder.

    python bench/learning.py [--algo acer|a3c] [--env_name CartPole-v1] [--n_workers 2]
                             [--max_minutes 20] [--plot curve.png] [-- extra main.py flags]

Default targets: CartPole-v1 475; Pendulum-v1 -200 for ACER and -400 for A3C. Every
evaluation is kept in ``<out>/evaluations.csv``; ``--plot`` draws it beside the training curve.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from Utils.checkpoint import CheckpointError, load_checkpoint
from Utils.config import default
from Agent.algorithms import get
from Utils.play import play


DEFAULT_TARGETS = {("CartPole-v1", "acer"): 475.0, ("CartPole-v1", "a3c"): 475.0,
                   ("Pendulum-v1", "acer"): -200.0, ("Pendulum-v1", "a3c"): -400.0}


def plot_curves(log_dir: str, evaluations: list, args) -> None:
    """Training running reward and evaluation means (+- std) against agent steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from Utils.plot import read_episodes
    data = read_episodes(log_dir)
    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax_t.plot(data["global_step"], data["running_reward"])
    ax_t.set(xlabel="Agent steps", ylabel="Running episode reward (0.99)",
             title=f"{args.algo} on {args.env_name}, {args.n_workers} workers: training")
    if evaluations:
        steps, means, stds = (np.array([e[i] for e in evaluations]) for i in (1, 2, 3))
        ax_e.plot(steps, means, marker=".")
        ax_e.fill_between(steps, means - stds, means + stds, alpha=0.2)
    ax_e.axhline(args.target, color="gray", linestyle="--", label=f"target {args.target:g}")
    ax_e.set(xlabel="Agent steps", ylabel=f"Mean score over {args.eval_episodes} games (+- std)",
             title=f"evaluation ({'greedy' if args.greedy else 'sampled'} actions)")
    ax_e.legend()
    for ax in (ax_t, ax_e):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    plt.close(fig)


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    """The bench's own options (``--target`` filled from ``DEFAULT_TARGETS`` when not given),
    and the flags after them that go to ``main.py`` unchanged."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="acer", choices=["acer", "a3c"])
    p.add_argument("--env_name", default="CartPole-v1")
    p.add_argument("--n_workers", type=int, default=2)
    p.add_argument("--target", type=float, default=None, help="evaluation mean to reach")
    p.add_argument("--plot", default=None,
                   help="write the run's curves to this PNG: training running reward and evaluations")
    p.add_argument("--keep_training", action="store_true",
                   help="train on until --max_minutes after the target is reached (a longer curve)")
    p.add_argument("--eval_episodes", type=int, default=20)
    p.add_argument("--max_minutes", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=default("seed"))
    p.add_argument("--greedy", action="store_true", help="evaluate the most probable action")
    p.add_argument("--out", default=None, help="folder for Models/ and Logs/ (default: a temp dir)")
    args, extra = p.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if args.target is None:
        if (args.env_name, args.algo) not in DEFAULT_TARGETS:
            p.error(f"give --target for {args.env_name}")
        args.target = DEFAULT_TARGETS[args.env_name, args.algo]
    return args, extra


def train_command(args, out: str, extra: list[str]) -> list[str]:
    """The training command, with its models and logs in ``out``."""
    return [sys.executable, os.path.join(ROOT, "main.py"), "--do_train", "--algo", args.algo, "--env_name", args.env_name,
            "--n_workers", str(args.n_workers), "--seed", str(args.seed), "--interval", "100",
            "--models_dir", os.path.join(out, "Models"), "--logs_dir", os.path.join(out, "Logs"), *extra]


def stop(signum, frame):  # SIGTERM (or SIGINT, also in the background): stop the run cleanly
    raise KeyboardInterrupt


def evaluate(path: str, args, t0: float) -> tuple | None:
    """Play the checkpoint at ``path`` for ``--eval_episodes`` games and print the result;
    (minutes, steps, mean, std), or None when the checkpoint cannot be read (being written)."""
    try:
        state = load_checkpoint(path)
    except CheckpointError:
        return None
    minutes = (time.time() - t0) / 60
    scores = play(state, args.env_name, args.eval_episodes, seed=10_000, greedy=args.greedy,
                  verbose=False, build_network=get(state["algo"]).build_network)
    steps = state["counters"]["global_steps"]
    print(f"{minutes:6.2f} min  {steps:8d} steps  eval mean {np.mean(scores):6.1f} "
          f"+- {np.std(scores):5.1f}", flush=True)
    return minutes, steps, float(np.mean(scores)), float(np.std(scores))


def watch(proc: subprocess.Popen, args, out: str, t0: float) -> tuple[tuple | None, list]:
    """Evaluate each new checkpoint while the run trains, until the target is reached (unless
    ``--keep_training``), the run ends or ``--max_minutes`` pass; keeps the first passing
    checkpoint as ``passing.pth``. Returns (steps, minutes, mean, std) of the first passing
    evaluation, or None, and every evaluation."""
    last_mtime, result, evaluations = 0.0, None, []
    while time.time() - t0 < args.max_minutes * 60 and proc.poll() is None:
        time.sleep(2.0)
        paths = glob.glob(os.path.join(out, "Models", "*", "checkpoint.pth"))
        if not paths or os.path.getmtime(paths[0]) == last_mtime:
            continue
        last_mtime = os.path.getmtime(paths[0])
        evaluation = evaluate(paths[0], args, t0)
        if evaluation is None:
            continue
        evaluations.append(evaluation)
        minutes, steps, mean, std = evaluation
        if result is None and mean >= args.target:
            result = (steps, minutes, mean, std)
            shutil.copy(paths[0], os.path.join(os.path.dirname(paths[0]), "passing.pth"))
            if not args.keep_training:
                break
    return result, evaluations


def stop_run(proc: subprocess.Popen) -> None:
    """Stop the training run if it still runs: SIGINT (it saves and exits), then kill after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def write_evaluations(out: str, evaluations: list) -> None:
    """Every evaluation to ``<out>/evaluations.csv``."""
    with open(os.path.join(out, "evaluations.csv"), "w") as fh:
        fh.write("minutes,global_step,mean,std\n")
        fh.writelines(f"{m:.3f},{s},{mean:.2f},{std:.2f}\n" for m, s, mean, std in evaluations)


def report(args, out: str, result: tuple | None) -> int:
    """Print PASSED (with the steps, minutes and passing weights) or FAILED; the exit code."""
    if result is None:
        print(f"FAILED: no evaluation reached {args.target} within {args.max_minutes} min (run in {out})")
        return 1
    steps, minutes, mean, std = result
    print(f"PASSED: {args.algo} {args.n_workers} workers reached {mean:.1f} +- {std:.1f} over "
          f"{args.eval_episodes} episodes after {steps} steps, {minutes:.1f} min "
          f"(weights: {glob.glob(os.path.join(out, 'Models', '*', 'passing.pth'))[0]})")
    return 0


def main() -> int:
    """Train, evaluating as it goes; write the evaluations (and the plot); 0 if the target was
    reached."""
    args, extra = parse_args()
    game = args.env_name.split("-")[0].lower()
    out = args.out or tempfile.mkdtemp(prefix=f"{game}_{args.algo}_")
    os.makedirs(out, exist_ok=True)
    cmd = train_command(args, out, extra)
    print("training:", " ".join(cmd), flush=True)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=open(os.path.join(out, "train.log"), "w"), stderr=subprocess.STDOUT)
    result, evaluations = None, []
    try:
        result, evaluations = watch(proc, args, out, t0)
    finally:
        stop_run(proc)
    write_evaluations(out, evaluations)
    logs = glob.glob(os.path.join(out, "Logs", "*"))
    if args.plot and logs:
        plot_curves(logs[0], evaluations, args)
        print(f"learning curves: {args.plot}")
    return report(args, out, result)


if __name__ == "__main__":
    sys.exit(main())
