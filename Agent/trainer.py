"""Training run: shared networks and optimizer, worker processes, supervision, checkpoints.

The main process builds the global network (and, for ACER, the average
network) in shared memory and the shared Adam, spawns ``n_workers`` processes (spawn start method, one torch
thread each), and then only listens: it logs what workers report, saves a
checkpoint every ``interval`` iterations, stops the workers when a budget is
reached, and reports a worker that fails with its id and traceback.
"""
from __future__ import annotations

import os
import queue as queue_module
import signal
import sys
import time

import gymnasium as gym
import psutil

import torch

from Agent.parameters import (BAD_STREAK, EPISODES, ITERATIONS, N_COUNTERS, SKIPPED, STEPS,
                              UPDATES)
from Agent.worker import worker_entry
from NN.networks import build_network
from NN.shared_adam import SharedAdam
from Utils.atari_wrappers import box_bounds, make_env
from Utils.checkpoint import (BEST_NAME, CHECKPOINT_NAME, FORMAT_VERSION, WEIGHT_KEYS, CheckpointError,
                              load_checkpoint, save_checkpoint)
from Utils.config import Config
from Utils.logger import RunLogger

JOIN_TIMEOUT_S = 7.0   # a stopping run waits this long for its workers, then terminates them
LOCK_TIMEOUT_S = 5.0   # a save waits this long for the optimizer lock, then copies the weights without it


class WorkerFailed(RuntimeError):
    """A worker process raised or died, or the run had to stop (non-finite updates, a failed save)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop like Ctrl-C (final checkpoint), but exit with 143."""


def _signal_name(exitcode: int) -> str:
    """' (killed by SIGKILL)' for a negative exit code, else ''."""
    if exitcode is not None and exitcode < 0:
        try:
            return f" (killed by {signal.Signals(-exitcode).name})"
        except ValueError:
            pass
    return ""


def env_spec(cfg: Config) -> tuple[tuple[int, ...], int, int, tuple | None]:
    """Observation shape, action count (or a Box's dimension), bytes per observation value and
    the action bounds ((low, high) lists for a Box, None for discrete actions) of the training
    environment."""
    env = make_env(cfg.env_name, training=True, frame_stack=cfg.frame_stack)
    try:
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) not in (1, 3):
            raise ValueError(f"{cfg.env_name} has observations {space}; the networks take vectors "
                             "or image stacks (a Box of 1 or 3 dimensions)")
        obs = (tuple(space.shape), int(space.dtype.itemsize))
        bounds = box_bounds(env)
        if bounds is not None:
            return obs[0], len(bounds[0]), obs[1], bounds
        if not hasattr(env.action_space, "n"):
            raise ValueError(f"--algo {cfg.algo} needs a discrete or a Box action space; "
                             f"{cfg.env_name} has {env.action_space}")
        return obs[0], int(env.action_space.n), obs[1], None
    finally:
        env.close()


def process_start_time() -> float:
    """Wall-clock time at which this process was launched (Linux: exact to a clock tick from
    /proc, where psutil's ``create_time`` can be a second off; elsewhere psutil's)."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        since_start = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - since_start
    except (OSError, ValueError, IndexError, AttributeError):
        return psutil.Process().create_time()


def start_ignoring_interrupts(workers) -> None:
    """Start the worker processes with SIGINT and SIGTERM ignored, a disposition that a spawned
    process inherits: a Ctrl-C sent to the whole process group (a terminal, ``timeout -s INT``)
    while a worker is still importing cannot raise KeyboardInterrupt in it. The main process's
    handlers are back in place once the workers are started; a signal in between is lost."""
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        for w in workers:
            w.start()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Trainer:
    """Owns the shared state of a run and the worker processes."""

    def __init__(self, cfg: Config, run_dir: str, log_dir: str, resume_state: dict | None = None,
                 spec: tuple | None = None):
        self.cfg, self.run_dir, self.log_dir = cfg, run_dir, log_dir
        self.obs_shape, self.n_actions, _, self.action_bounds = spec or env_spec(cfg)
        torch.manual_seed(cfg.seed)
        self.global_net = build_network(cfg.algo, self.obs_shape, self.n_actions, cfg.to_dict(),
                                        self.action_bounds)
        self.global_net.share_memory()
        self.average_net = None  # ACER's average policy network
        if cfg.algo == "acer":
            self.average_net = build_network(cfg.algo, self.obs_shape, self.n_actions,
                                             cfg.to_dict(), self.action_bounds)
            self.average_net.load_state_dict(self.global_net.state_dict())
            self.average_net.share_memory()
        self.optimizer = SharedAdam(self.global_net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        self.counters = torch.zeros(cfg.n_workers, N_COUNTERS, dtype=torch.int64).share_memory_()
        logger_start = None
        if resume_state is not None:
            self.global_net.load_state_dict(resume_state["model"])
            if self.average_net is not None:
                self.average_net.load_state_dict(resume_state["average_model"])
            self.optimizer.load_state_dict(resume_state["optimizer"])
            self._restore_counters(resume_state["counters"])
            logger_start = resume_state.get("logger")
        os.makedirs(run_dir, exist_ok=True)
        self.logger = RunLogger(log_dir, cfg.interval, logger_start)
        self.replay_len = 0
        self.started: dict[int, float] = {}   # worker id -> time of its first environment step
        self.last_saved_step = int(resume_state["counters"]["global_steps"]) if resume_state else 0
        self.save_failed = False               # the latest save attempt failed
        self.saved = False                     # a checkpoint was written by this process
        self.last_save_time = time.time()
        self.resumed = resume_state is not None
        self.best_reward = self._best_so_far()

    def _best_so_far(self) -> float | None:
        """The running reward ``best.pth`` was written at (a resumed run continues from it)."""
        path = os.path.join(self.run_dir, BEST_NAME)
        if not os.path.exists(path):
            return None
        try:
            return float(load_checkpoint(path)["best_running_reward"])
        except (CheckpointError, KeyError, TypeError, ValueError):
            print(f"warning: {path} is unreadable; it will be replaced by the next best weights",
                  file=sys.stderr, flush=True)
            return None

    def _restore_counters(self, saved: dict) -> None:
        columns = {"worker_steps": STEPS, "worker_episodes": EPISODES,
                   "worker_iterations": ITERATIONS, "worker_updates": UPDATES,
                   "worker_skipped_updates": SKIPPED}
        for key, col in columns.items():
            values = list(saved.get(key, []))
            if len(values) == self.cfg.n_workers:
                self.counters[:, col] = torch.tensor(values)
            elif values:  # worker count changed: keep the totals on worker 0
                self.counters[0, col] = sum(values)

    @property
    def global_steps(self) -> int:
        return int(self.counters[:, STEPS].sum())

    def _snapshot_weights(self) -> tuple[dict, dict]:
        """Copies of the shared weights and Adam state, taken between two updates.

        The copy is taken under the optimizer's lock, so weights and moments belong to the same
        step. Checking the shared tensors while a worker writes them is not safe: torch's
        ``isfinite(x)`` is ``(x == x) & (x.abs() != inf)``, which reads ``x`` twice and calls
        a value that changed in between non-finite (measured: 9 false alarms in 2,000 checks
        of 1.7M weights under a stepping worker; none on a copy). A worker killed while holding
        the lock would block the final save, so after a wait the copy is taken without it."""
        locked = self.optimizer.lock.acquire(timeout=LOCK_TIMEOUT_S)
        try:
            model = {k: v.detach().clone() for k, v in self.global_net.state_dict().items()}
            return model, self.optimizer.state_dict()
        finally:
            if locked:
                self.optimizer.lock.release()

    def counter_totals(self) -> dict:
        """The run's counters as plain numbers: steps, episodes, iterations and updates per worker."""
        c = self.counters.clone()
        return {"global_steps": int(c[:, STEPS].sum()),
                "worker_steps": c[:, STEPS].tolist(), "worker_episodes": c[:, EPISODES].tolist(),
                "worker_iterations": c[:, ITERATIONS].tolist(),
                "worker_updates": c[:, UPDATES].tolist(),
                "worker_skipped_updates": c[:, SKIPPED].tolist(),
                "optimizer_steps": int(self.optimizer.step_count)}

    def checkpoint_state(self) -> dict:
        """Everything needed to continue or play this run, as plain tensors and numbers."""
        model, optimizer = self._snapshot_weights()
        state = {
            "format_version": FORMAT_VERSION, "algo": self.cfg.algo, "env_name": self.cfg.env_name,
            "obs_shape": list(self.obs_shape), "n_actions": self.n_actions,
            "network_kind": self.global_net.kind, "config": self.cfg.to_dict(),
            "counters": self.counter_totals(),
            "logger": self.logger.state(),
            "model": model, "optimizer": optimizer,
        }
        if self.average_net is not None:
            state["average_model"] = self.average_net.state_dict()
        if self.action_bounds is not None:
            state["action_low"], state["action_high"] = map(list, self.action_bounds)
        return state

    def _checkpoint_due(self) -> bool:
        """An explicit ``interval``: a checkpoint with every console line; else every
        ``checkpoint_minutes``."""
        return bool(self.cfg.interval) or \
            time.time() - self.last_save_time >= 60.0 * self.cfg.checkpoint_minutes

    def save(self) -> bool:
        """Write the checkpoint; True if it was written.

        Weights with a non-finite value are never saved over a good checkpoint. A failed write
        (disk full, no permission, file too large) leaves the previous checkpoint as it was,
        is reported, and stops the run only with ``stop_on_save_error``."""
        path = os.path.join(self.run_dir, CHECKPOINT_NAME)
        state = self.checkpoint_state()
        if not all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()):
            print(f"warning: the shared weights hold a non-finite value; {path} is not overwritten",
                  file=sys.stderr, flush=True)
            return False
        try:
            save_checkpoint(state, path)
            self.last_saved_step = state["counters"]["global_steps"]
            self.last_save_time = time.time()
            self.saved = True
            return True
        except OSError as err:
            kept = (f"the previous one (step {self.last_saved_step}) is kept"
                    if os.path.exists(path) else "no checkpoint exists yet")
            message = f"checkpoint not saved to {path}: {err.strerror or err}; {kept}"
            if self.cfg.stop_on_save_error:
                raise WorkerFailed(f"stopping: {message}") from None
            print(f"warning: {message}", file=sys.stderr, flush=True)
            self.save_failed = True
            return False

    def save_best(self) -> bool:
        """Write ``best.pth`` (the playable weights, as ``--export`` writes them) when the
        full-game running reward is above the one it was last written at; True if written."""
        running = self.logger.running_reward
        if running is None or (self.best_reward is not None and running <= self.best_reward):
            return False
        path = os.path.join(self.run_dir, BEST_NAME)
        full = self.checkpoint_state()
        if not all(torch.isfinite(v).all() for v in full["model"].values() if v.is_floating_point()):
            return False
        state = {key: full[key] for key in WEIGHT_KEYS if key in full}
        state["best_running_reward"] = float(running)
        state["episodes"] = int(self.logger.episodes)
        try:
            save_checkpoint(state, path)
        except OSError as err:
            print(f"warning: best weights not saved to {path}: {err.strerror or err}",
                  file=sys.stderr, flush=True)
            return False
        self.best_reward = float(running)
        return True

    def _budget_spent(self) -> bool:
        cfg = self.cfg
        return bool((cfg.total_steps and self.global_steps >= cfg.total_steps)
                    or (cfg.max_episodes and self.logger.episodes >= cfg.max_episodes))

    def _handle(self, message) -> None:
        kind, worker_id = message[0], message[1]
        if kind == "started":
            self.started[worker_id] = message[2]
            if len(self.started) == self.cfg.n_workers:
                launch = process_start_time()
                print(f"All {self.cfg.n_workers} workers stepping: first environment step "
                      f"{min(self.started.values()) - launch:.1f} s after launch, last "
                      f"{max(self.started.values()) - launch:.1f} s", flush=True)
        elif kind == "episode":
            _, _, reward, length, step = message
            self.logger.episode(worker_id, reward, length, step)
        elif kind == "life":
            _, _, reward, length, step, game_over = message
            self.logger.life(worker_id, reward, length, step, game_over)
        elif kind == "iteration":
            _, _, stats, replay_len = message
            if worker_id == 0:
                self.replay_len = replay_len
            if self.logger.iteration(stats):
                self.logger.report(self.global_steps,
                                   self.replay_len if self.cfg.algo == "acer" else None,
                                   int(self.counters[:, SKIPPED].sum()), self.cfg.total_steps,
                                   self.cfg.max_episodes)
                if self._checkpoint_due():
                    self.save()
                self.save_best()
        elif kind == "warning":
            print(f"warning: worker {worker_id}: {message[2]}", file=sys.stderr, flush=True)
        elif kind == "error":
            raise WorkerFailed(f"worker {worker_id} failed:\n{message[2]}")

    def _check_updates(self) -> None:
        """Stop the run when a worker's updates have been non-finite too many times in a row."""
        limit = self.cfg.max_bad_updates
        if not limit:
            return
        for worker_id, streak in enumerate(self.counters[:, BAD_STREAK].tolist()):
            if streak >= limit:
                raise WorkerFailed(
                    f"stopping: worker {worker_id} made {streak} updates in a row with a non-finite "
                    f"loss or gradient (none was applied; {int(self.counters[:, SKIPPED].sum())} "
                    f"skipped in all). The weights are those of the last good update; check the "
                    f"environment's rewards and observations, or lower --lr")

    def _drain(self, q, timeout: float) -> None:
        try:
            self._handle(q.get(timeout=timeout))
            while True:
                self._handle(q.get_nowait())
        except queue_module.Empty:
            pass

    def train(self) -> dict:
        """Run the workers until a budget is spent; return the final counters."""
        ctx = torch.multiprocessing.get_context("spawn")
        q, stop_event = ctx.Queue(), ctx.Event()
        workers = self._worker_processes(ctx, q, stop_event)
        failure = None
        try:
            start_ignoring_interrupts(workers)
            self._supervise(q, workers)
        except WorkerFailed as err:
            failure = err
        finally:
            stopping_failure = self._stop(q, stop_event, workers)
            failure = failure or stopping_failure
        return self.finish(failure)

    def _worker_processes(self, ctx, q, stop_event) -> list:
        """The worker processes (not started), one intra-op thread each."""
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers
        torch.set_num_threads(1)  # this process only logs and saves; the cores are the workers'
        return [ctx.Process(target=worker_entry, name=f"worker-{i}", daemon=True,
                            args=(i, self.cfg, self.global_net, self.average_net, self.optimizer,
                                  self.counters, stop_event, q,
                                  os.path.join(self.run_dir, f"worker_{i}.pth"), self.resumed,
                                  os.getpid()))
                for i in range(self.cfg.n_workers)]

    def _supervise(self, q, workers) -> None:
        """Handle the workers' messages until a budget is spent or they all stopped; raise
        :class:`WorkerFailed` for a worker that died or a run that must stop."""
        while True:
            self._drain(q, timeout=0.2)
            self._check_updates()
            if self._budget_spent() or not any(w.is_alive() for w in workers):
                return
            for i, w in enumerate(workers):
                if w.exitcode not in (None, 0):
                    self._drain(q, timeout=0.5)  # collect its traceback if it sent one
                    raise WorkerFailed(f"worker {i} died with exit code {w.exitcode}"
                                       f"{_signal_name(w.exitcode)}")

    def _stop(self, q, stop_event, workers) -> WorkerFailed | None:
        """Stop the workers (their final states are saved by themselves), write the final
        checkpoint and best weights, close the logs; the first failure met on the way, if any.

        A second Ctrl-C (or SIGTERM) while stopping kills the workers instead of waiting for
        them, then saves as usual (about a second); further signals are ignored."""
        def hurry(signum, frame):
            for w in workers:
                if w.is_alive():
                    w.kill()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
        previous = {sig: signal.signal(sig, hurry) for sig in (signal.SIGINT, signal.SIGTERM)}
        failures: list[WorkerFailed] = []
        stop_event.set()
        deadline = time.time() + JOIN_TIMEOUT_S
        while any(w.is_alive() for w in workers) and time.time() < deadline:
            # keep draining: a worker cannot exit while its queue buffer is full
            self._collect(failures, self._drain, q, 0.1)
        for w in workers:
            if w.is_alive():
                w.terminate()
            w.join(timeout=2.0)
        self._collect(failures, self._drain, q, 0.05)
        self._collect(failures, self._final_save)
        self.logger.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return failures[0] if failures else None

    def _final_save(self) -> None:
        self.save()
        self.save_best()

    @staticmethod
    def _collect(failures: list, fn, *args) -> None:
        """Run ``fn``; keep a :class:`WorkerFailed` it raises in ``failures``."""
        try:
            fn(*args)
        except WorkerFailed as err:
            failures.append(err)

    def finish(self, failure: WorkerFailed | None) -> dict:
        """After the workers stopped and the final save: raise the run's failure, or one for a
        final checkpoint that could not be written; else return the final counters."""
        if failure is not None:
            raise failure
        if self.save_failed:
            raise WorkerFailed(f"the final checkpoint could not be written; the last one saved "
                               f"(step {self.last_saved_step}) is kept")
        return self.counter_totals()
