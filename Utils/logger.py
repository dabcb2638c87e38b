"""Run logging in the main process: TensorBoard, console lines and a CSV of episodes.

Workers send small messages over a queue; only the main process writes files.
TensorBoard scalars keep the original's names: ``Max Reward``, ``Running
Reward`` and ``Episode length`` by episode; ``Running PG Loss``, ``Running
Value Loss`` and ``Running Grad Norm`` (and ``Running Entropy``) by iteration; plus ``Steps per second``
by global step. ACER's diagnostics (trust-region activity, KL to the average policy, the
replayed updates' Q error, truncated importance weight and age) go under ``ACER/...`` by
iteration, and every report appends all update statistics to ``updates.csv``. Running values
are exponential averages with weight 0.99 on the old value, started at the first value.
Episodes are whole games with raw (unclipped) scores. ``episodes.csv`` beside the events keeps every episode so
plots need no TensorBoard; its ``wall_time`` is seconds of training, summed over
resumes (the time between a stop and its resume is not counted).

Atari training also has the original's own view: it ended an episode at every lost life and
logged worker 0 alone. ``lives.csv`` keeps every life any worker ends (raw score, length,
the worker's own life count, global step, training time) with worker 0's running life score;
TensorBoard gets ``Per life (worker 0)/Running Reward`` and ``.../Reward`` against worker 0's
life count, and the full-game curves again as ``Full games (all workers)/...``.
"""
from __future__ import annotations

import csv
import os
import sys
import time

import psutil
from tqdm import tqdm
from torch.utils.tensorboard import SummaryWriter

EPISODE_FIELDS = ("episode", "global_step", "wall_time", "worker", "reward", "length", "running_reward")
# Update statistics, as running averages (0.99) over worker iterations: the original's four
# (TensorBoard names kept) and ACER's diagnostics (on-policy updates, and the replayed ones'
# under replay_...). Each report writes the current values to updates.csv too.
UPDATE_SCALARS = {
    "pg_loss": "Running PG Loss", "value_loss": "Running Value Loss",
    "grad_norm": "Running Grad Norm", "entropy": "Running Entropy",
    "kl_average": "ACER/KL(average || policy), on-policy",
    "trust_region_active": "ACER/Trust region active, on-policy",
    "replay_value_loss": "ACER/Value loss (Q error), replayed",
    "replay_rho_mean": "ACER/min(1, rho) mean, replayed",
    "replay_trust_region_active": "ACER/Trust region active, replayed",
    "replay_kl_average": "ACER/KL(average || policy), replayed",
    "replay_age_steps": "ACER/Replay age (worker steps), replayed",
}
UPDATE_FIELDS = ("iteration", "global_step", "wall_time", *UPDATE_SCALARS)
LIFE_FIELDS = ("life", "worker", "worker_life", "global_step", "wall_time", "reward", "length",
               "game_over", "worker0_running_reward")


def hms(seconds: float) -> str:
    """``HH:MM:SS`` (hours past 24 keep counting)."""
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def open_csv(path: str, fields: tuple[str, ...]):
    """``path`` opened for appending, with a CSV writer; the header is written to a new file
    only (a resumed run continues its files)."""
    new = not os.path.exists(path)
    fh = open(path, "a", newline="")
    writer = csv.writer(fh)
    if new:
        writer.writerow(fields)
    return fh, writer


def running_average(old: float | None, new: float, weight: float = 0.99) -> float:
    """Exponential average with ``weight`` on the old value; the first value starts it."""
    return new if old is None else weight * old + (1.0 - weight) * new


class RunLogger:
    """Collects worker reports and writes TensorBoard, console and CSV output."""

    def __init__(self, log_dir: str, interval: int, start: dict | None = None,
                 report_seconds: float = 15.0, start_steps: int = 0,
                 budget: tuple[int, int] = (0, 0), terminal: bool | None = None):
        os.makedirs(log_dir, exist_ok=True)
        self.log_dir = log_dir
        start = start or {}
        self.writer = SummaryWriter(log_dir)
        # interval > 0: a report every ``interval`` iterations; 0: about every ``report_seconds``
        self.interval, self.report_seconds = interval, report_seconds
        self.last_report = time.time()
        self.episodes = int(start.get("episodes", 0))
        self.iterations = int(start.get("iterations", 0))
        self.running_reward = start.get("running_reward")
        self.max_reward = start.get("max_reward")
        self.lives = int(start.get("lives", 0))
        self.worker_lives = [int(n) for n in start.get("worker_lives", [])]
        self.life_running_reward = start.get("life_running_reward")   # worker 0's lives
        self.lives_csv_file = self.lives_csv = None  # opened at the first life (Atari only)
        self.updates_csv_file = self.updates_csv = None  # opened at the first report
        self.running: dict[str, float | None] = dict.fromkeys(UPDATE_SCALARS)
        # the last finished game (None: none since this run or its resume began, for
        # checkpoints written before it was saved)
        self.last = start.get("last_game")
        # Training time is cumulative over resumes: the CSV's wall_time and the console's Time
        # continue from the checkpoint's figure rather than restarting at zero.
        self.t0 = time.time() - float(start.get("train_seconds", 0.0))
        # the rate of the first report is taken from the start (the steps a resumed run began
        # at), so that it already has one and an ETA; later reports, from the report before
        self.rate_t, self.rate_steps, self.steps_per_second = time.time(), int(start_steps), None
        self.reports = 0
        # a live progress bar (tqdm) on a terminal for a run with a budget; plain lines elsewhere
        self.total_steps, self.max_episodes = budget
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self.wants_bar = self.terminal and bool(self.total_steps or self.max_episodes)
        self.bar = None  # opened when the workers are stepping (or at the first step counted)
        self.csv_file, self.csv = open_csv(os.path.join(log_dir, "episodes.csv"), EPISODE_FIELDS)

    def _open_bar(self, start_steps: int) -> tqdm:
        """The progress bar: steps (or games, for a ``max_episodes`` budget), rate, ETA and
        the last running reward, redrawn in place below the console lines."""
        if self.total_steps:
            total, done, unit = self.total_steps, min(start_steps, self.total_steps), "step"
        else:
            total, done, unit = self.max_episodes, min(self.episodes, self.max_episodes), "game"
        return tqdm(total=total, initial=done, unit=unit, unit_scale=True, dynamic_ncols=True,
                    smoothing=0.1, mininterval=0.5, file=sys.stdout, leave=True)

    def start_rate(self, global_step: int) -> None:
        """All workers are stepping: measure the rate from here, not from the launch."""
        self.rate_t, self.rate_steps = time.time(), int(global_step)
        if self.wants_bar and self.bar is None:
            self.bar = self._open_bar(int(global_step))

    def advance(self, global_step: int) -> None:
        """Move the progress bar (if any) to ``global_step`` (or to the games played)."""
        if self.wants_bar and self.bar is None:
            self.bar = self._open_bar(int(global_step))
        if self.bar is None:
            return
        done = min(int(global_step), self.total_steps) if self.total_steps else \
            min(self.episodes, self.max_episodes)
        if done > self.bar.n:
            if self.running_reward is not None:
                self.bar.set_postfix_str(f"running reward {self.running_reward:.2f}", refresh=False)
            self.bar.update(done - self.bar.n)

    def console(self, line: str) -> None:
        """Print a console line (above the progress bar, when there is one)."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
            sys.stdout.flush()
        else:
            print(line, flush=True)

    def episode(self, worker: int, reward: float, length: int, global_step: int) -> None:
        """Record one finished game."""
        self.episodes += 1
        self.running_reward = running_average(self.running_reward, reward)
        self.max_reward = reward if self.max_reward is None else max(self.max_reward, reward)
        self.last = {"reward": reward, "length": length}
        self.writer.add_scalar("Max Reward", self.max_reward, self.episodes)
        self.writer.add_scalar("Running Reward", self.running_reward, self.episodes)
        self.writer.add_scalar("Episode length", length, self.episodes)
        self.writer.add_scalar("Full games (all workers)/Running Reward", self.running_reward,
                               self.episodes)
        self.csv.writerow((self.episodes, global_step, round(time.time() - self.t0, 3), worker,
                           reward, length, round(self.running_reward, 4)))

    def life(self, worker: int, reward: float, length: int, global_step: int,
             game_over: bool = False) -> None:
        """Record one life a worker ended (the original's episode; raw score); ``game_over``:
        it was the game's last."""
        if self.lives_csv is None:
            self.lives_csv_file, self.lives_csv = open_csv(os.path.join(self.log_dir, "lives.csv"),
                                                           LIFE_FIELDS)
        self.lives += 1
        while len(self.worker_lives) <= worker:
            self.worker_lives.append(0)
        self.worker_lives[worker] += 1
        if worker == 0:
            self.life_running_reward = running_average(self.life_running_reward, reward)
            n = self.worker_lives[0]
            self.writer.add_scalar("Per life (worker 0)/Running Reward", self.life_running_reward, n)
            self.writer.add_scalar("Per life (worker 0)/Reward", reward, n)
        running = "" if self.life_running_reward is None else round(self.life_running_reward, 4)
        self.lives_csv.writerow((self.lives, worker, self.worker_lives[worker], global_step,
                                 round(time.time() - self.t0, 3), reward, length,
                                 int(game_over), running))

    def iteration(self, stats: dict) -> bool:
        """Record one worker iteration's update statistics; True when a report is due (every
        ``interval`` iterations, or with ``interval`` 0 every ``report_seconds``)."""
        self.iterations += 1
        for key in self.running:
            if key in stats:
                self.running[key] = running_average(self.running[key], float(stats[key]))
        if self.interval:
            if self.iterations % self.interval:
                return False
        elif time.time() - self.last_report < self.report_seconds:
            return False
        for key, name in UPDATE_SCALARS.items():
            if self.running[key] is not None:
                self.writer.add_scalar(name, self.running[key], self.iterations)
        return True

    def report(self, global_step: int, replay_len: int | None, skipped: int = 0,
               total_steps: int = 0, max_episodes: int = 0) -> None:
        """Print the console line and log steps per second (``replay_len`` None: no replay;
        ``skipped``: updates skipped for a non-finite loss or gradient, shown when any;
        ``total_steps`` / ``max_episodes``: the run's budget, for percent done and an ETA)."""
        now = time.time()
        self.last_report = now
        self.reports += 1
        if now > self.rate_t and global_step > self.rate_steps:
            self.steps_per_second = (global_step - self.rate_steps) / (now - self.rate_t)
            self.writer.add_scalar("Steps per second", self.steps_per_second, global_step)
            self.rate_t, self.rate_steps = now, global_step
        self.write_updates(global_step, now)
        self.csv_file.flush()
        if self.lives_csv_file is not None:
            self.lives_csv_file.flush()
        mem = psutil.virtual_memory()
        if self.running_reward is None:
            games = "Ep: 0 (no game finished yet)"
        else:
            games = (f"Ep: {self.episodes} | Running reward: {self.running_reward:.2f} "
                     f"(no game finished since the resume)")
            if self.last is not None:
                games = (f"Ep: {self.episodes} | Ep reward: {self.last['reward']:.1f} | "
                         f"Running reward: {self.running_reward:.2f} | Ep len: {self.last['length']}")
        replay = "" if replay_len is None else f"Replay len: {replay_len} | "
        if skipped:
            replay += f"Skipped updates: {skipped} | "
            self.writer.add_scalar("Skipped updates", skipped, global_step)
        entropy = "" if self.running["entropy"] is None else f"Entropy: {self.running['entropy']:.3f} | "
        rate = "" if self.steps_per_second is None else f"{self.steps_per_second:.1f} steps/s | "
        self.console(f"Iter: {self.iterations} | {games} | {entropy}{replay}Steps: {global_step} | "
                     f"{rate}{self.progress(global_step, total_steps, max_episodes, now)}"
                     f"RAM: {mem.used / 2**30:.1f}/{mem.total / 2**30:.1f} GB | "
                     f"Time: {hms(now - self.t0)}")
        self.advance(global_step)

    def write_updates(self, global_step: int, now: float) -> None:
        """Append the running update statistics to ``updates.csv`` (blank: none yet)."""
        if all(v is None for v in self.running.values()):
            return
        if self.updates_csv_file is None:
            self.updates_csv_file, self.updates_csv = open_csv(
                os.path.join(self.log_dir, "updates.csv"), UPDATE_FIELDS)
        values = ["" if v is None else f"{v:.6g}" for v in self.running.values()]
        self.updates_csv.writerow([self.iterations, global_step, round(now - self.t0, 3), *values])
        self.updates_csv_file.flush()

    def progress(self, global_step: int, total_steps: int, max_episodes: int, now: float) -> str:
        """``"12.5% of 2,000 steps, ETA 00:01:10 | "`` for a run with a budget ('' without one);
        the ETA comes from the current rate (steps/s, or games per second of training)."""
        if total_steps:
            done, unit, left = global_step / total_steps, f"{total_steps:,} steps", total_steps - global_step
            rate = self.steps_per_second
        elif max_episodes:
            done, unit, left = self.episodes / max_episodes, f"{max_episodes:,} games", max_episodes - self.episodes
            seconds = now - self.t0
            rate = self.episodes / seconds if self.episodes and seconds > 0 else None
        else:
            return ""
        eta = f", ETA {hms(max(0, left) / rate)}" if rate else ""
        return f"{100 * min(done, 1.0):.1f}% of {unit}{eta} | "

    def state(self) -> dict:
        """Numbers a resumed run needs to continue the curves."""
        return {"episodes": self.episodes, "iterations": self.iterations,
                "running_reward": self.running_reward, "max_reward": self.max_reward,
                "train_seconds": round(time.time() - self.t0, 3), "lives": self.lives,
                "worker_lives": list(self.worker_lives),
                "life_running_reward": self.life_running_reward, "last_game": self.last}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        for extra in (self.lives_csv_file, self.updates_csv_file):
            if extra is not None:
                extra.close()
        self.csv_file.close()
        self.writer.close()
