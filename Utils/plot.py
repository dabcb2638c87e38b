"""Plot runs' learning curves from their ``episodes.csv`` logs (no TensorBoard needed).

    python -m Utils.plot Logs/<run> [Logs/<run2> ...] [--labels A B] [--x episode|step|time]
                         [--worker 0] [--view game|life|updates] [--out curves.png]

Draws the running episode reward and the episode length (with its 0.99
running average) against episodes, agent steps or wall-clock hours, one
curve per run, and writes a PNG.

``--view game`` (default) plots full games from ``episodes.csv``. ``--view life`` plots the
original's view of an Atari run from ``lives.csv``: every life is an episode, worker 0 only
(unless ``--worker`` says otherwise), the 0.99 running average of its raw life scores, against
worker 0's life count (``--x episode``), agent steps or hours.

``--view updates`` plots the update statistics of ``updates.csv`` (running averages, one row
per console report): entropy, the Q error on-policy and replayed, the trust region's activity,
the KL to the average policy, the replayed updates' truncated importance weight and replay age,
and the gradient norm, against iterations (``--x episode``), agent steps or hours.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from Utils.logger import running_average  # noqa: E402

X_AXES = {"episode": ("episode", "Episode"), "step": ("global_step", "Agent steps"),
          "time": ("wall_time", "Wall-clock hours")}


def read_rows(log_dir: str, file_name: str) -> list[dict]:
    """The rows of ``log_dir/<file_name>`` (or of the CSV file ``log_dir``), at least one."""
    path = os.path.join(log_dir, file_name) if os.path.isdir(log_dir) else log_dir
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path} holds no rows")
    return rows


def read_episodes(log_dir: str) -> dict[str, list[float]]:
    """Columns of ``log_dir/episodes.csv`` as float lists."""
    rows = read_rows(log_dir, "episodes.csv")
    return {key: [float(r[key]) for r in rows] for key in rows[0]}


def read_lives(log_dir: str) -> dict[str, list[float]]:
    """``log_dir/lives.csv`` in the shape of :func:`read_episodes` (each life an episode; the
    running reward over all workers' lives, which :func:`one_worker` recomputes for one)."""
    rows = read_rows(log_dir, "lives.csv")
    data = {key: [float(r[key]) for r in rows]
            for key in ("life", "global_step", "wall_time", "worker", "reward", "length")}
    data["episode"] = data.pop("life")
    data["running_reward"] = running_rewards(data["reward"])
    return data


def running_rewards(rewards: list[float]) -> list[float]:
    """The 0.99 running average after each reward, started at the first."""
    running, out = None, []
    for reward in rewards:
        running = running_average(running, reward)
        out.append(running)
    return out


def stitched_wall_time(wall_time: list[float]) -> list[float]:
    """Training seconds made monotonic: logs written before the logger kept its clock across
    resumes restart at zero after each resume, so each restart continues from the value before
    it (the minutes between a run's last episode and its stop are not counted)."""
    out, offset, previous = [], 0.0, 0.0
    for t in wall_time:
        if t < previous:
            offset = out[-1]
        out.append(offset + t)
        previous = t
    return out


def one_worker(data: dict[str, list[float]], worker: int) -> dict[str, list[float]]:
    """Only ``worker``'s games, numbered 1.. in its own order, with the 0.99 running reward
    recomputed over them: the curve the original logged (its TensorBoard scalars came from
    worker 0 alone, so its episode axis counts one worker's games)."""
    keep = [i for i, w in enumerate(data["worker"]) if int(w) == worker]
    if not keep:
        raise ValueError(f"no games of worker {worker}")
    out = {key: [values[i] for i in keep] for key, values in data.items()}
    out["episode"] = [float(n) for n in range(1, len(keep) + 1)]
    out["running_reward"] = running_rewards(out["reward"])
    return out


def figure_for_runs(log_dirs: list[str], labels: list[str] | None = None,
                    x_axis: str = "episode", worker: int | None = None,
                    view: str = "game", points: list[tuple[float, float]] | None = None,
                    points_label: str = "published") -> plt.Figure:
    """A figure with one reward and one length curve per run (``worker``: that worker's
    games only, as the original plotted them; ``view="life"``: lives, worker 0 by default).
    ``points``: (x, running reward) pairs published elsewhere (the original's curve, read off
    its plot), drawn as markers on the reward axes."""
    labels = labels or [os.path.basename(os.path.normpath(d)) for d in log_dirs]
    column, x_label = X_AXES[x_axis]
    episode_name = "Life" if view == "life" else "Episode"
    if view == "life" and worker is None:
        worker = 0
    if worker is not None and x_axis == "episode":
        x_label = f"{episode_name} of worker {worker}"
    fig, (ax_r, ax_l) = plt.subplots(1, 2, figsize=(12, 4.5))
    for log_dir, label in zip(log_dirs, labels):
        data = read_lives(log_dir) if view == "life" else read_episodes(log_dir)
        if worker is not None:
            data = one_worker(data, worker)
        x = data[column]
        if x_axis == "time":
            x = [t / 3600 for t in stitched_wall_time(x)]
        running_len, lengths = None, []
        for length in data["length"]:
            running_len = running_average(running_len, length)
            lengths.append(running_len)
        ax_r.plot(x, data["running_reward"], label=label)
        ax_l.plot(x, lengths, label=label)
    if points:
        ax_r.plot(*zip(*points), "o", color="black", label=points_label)
    what = "life" if view == "life" else "episode"
    ax_r.set(xlabel=x_label, ylabel=f"Running {what} reward (0.99)",
             title="Running reward per life (the original's view)" if view == "life"
             else "Running reward per full game")
    ax_l.set(xlabel=x_label, ylabel=f"Running {what} length (0.99)", title=f"{what.capitalize()} length")
    for ax in (ax_r, ax_l):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


# --view updates: one panel per quantity, each with the updates.csv columns drawn in it
UPDATE_PANELS = (("Entropy", ("entropy",)),
                 ("Q error (value loss)", ("value_loss", "replay_value_loss")),
                 ("Trust region active (fraction of steps)", ("trust_region_active", "replay_trust_region_active")),
                 ("KL(average || policy)", ("kl_average", "replay_kl_average")),
                 ("min(1, rho) mean, replayed", ("replay_rho_mean",)),
                 ("Replay age (worker steps)", ("replay_age_steps",)),
                 ("Gradient norm", ("grad_norm",)),
                 ("Policy loss", ("pg_loss",)))


def figure_for_updates(log_dirs: list[str], labels: list[str] | None = None,
                       x_axis: str = "episode") -> plt.Figure:
    """A grid of the runs' update statistics from ``updates.csv`` (``x_axis`` "episode":
    iterations of all workers)."""
    labels = labels or [os.path.basename(os.path.normpath(d)) for d in log_dirs]
    column, x_label = {"episode": ("iteration", "Iterations (all workers)")}.get(x_axis, X_AXES[x_axis])
    fig, axes = plt.subplots(2, 4, figsize=(18, 7.5))
    for log_dir, label in zip(log_dirs, labels):
        rows = read_rows(log_dir, "updates.csv")
        x = [float(r[column]) for r in rows]
        if x_axis == "time":
            x = [t / 3600 for t in stitched_wall_time(x)]
        for ax, (title, keys) in zip(axes.flat, UPDATE_PANELS):
            for key in keys:
                points = [(xi, float(r[key])) for xi, r in zip(x, rows) if r.get(key)]
                if points:
                    where = "replayed" if key.startswith("replay_") else "on-policy"
                    ax.plot(*zip(*points), label=f"{label}, {where}" if len(keys) > 1 else label)
            ax.set(xlabel=x_label, title=title)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_runs(log_dirs: list[str], out: str, labels: list[str] | None = None,
              x_axis: str = "episode", worker: int | None = None, view: str = "game",
              points: list[tuple[float, float]] | None = None, points_label: str = "published") -> str:
    """Write the runs' curves to the PNG ``out``; return its path."""
    fig = (figure_for_updates(log_dirs, labels, x_axis) if view == "updates"
           else figure_for_runs(log_dirs, labels, x_axis, worker, view, points, points_label))
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log_dirs", nargs="+", help="Logs/<run> folders (or episodes.csv files)")
    p.add_argument("--labels", nargs="+", default=None)
    p.add_argument("--x", choices=sorted(X_AXES), default="episode")
    p.add_argument("--out", default="curves.png")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--worker", type=int, default=None,
                   help="only this worker's games, numbered in its own order (the original's plots: worker 0)")
    p.add_argument("--view", choices=["game", "life", "updates"], default="game",
                   help="game: full games (episodes.csv); life: every life an episode, worker 0 "
                        "(lives.csv; the original's curves); updates: the update statistics "
                        "(updates.csv: entropy, Q error, trust region, KL, rho, replay age)")
    p.add_argument("--points", nargs="+", default=None, metavar="X:Y",
                   help="published points to draw beside the runs, e.g. the original's curve read "
                        "off its plot: --points 600:5 900:17 1280:60")
    p.add_argument("--points_label", default="published", help="the legend entry of --points")
    args = p.parse_args(argv)
    try:
        points = [tuple(float(v) for v in pair.split(":")) for pair in args.points or []]
        if any(len(pt) != 2 for pt in points):
            raise ValueError
    except ValueError:
        print("error: --points takes X:Y pairs, e.g. 600:5 900:17", file=sys.stderr)
        return 2
    if args.labels and len(args.labels) != len(args.log_dirs):
        print("error: give one label per run", file=sys.stderr)
        return 2
    if os.path.exists(args.out) and not args.force:
        print(f"error: {args.out} exists; give --force to replace it, or another --out", file=sys.stderr)
        return 2
    try:
        out = plot_runs(args.log_dirs, args.out, args.labels, args.x, args.worker, args.view,
                        points, args.points_label)
        print(f"wrote {os.path.abspath(out)}")
    except (OSError, ValueError, KeyError) as err:
        print(f"error: cannot plot: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
