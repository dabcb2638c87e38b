"""Training run: shared networks and optimizer, workers, supervision, checkpoints.

The main process builds the global network (and, for ACER, the average network) and the
shared Adam, starts ``n_workers`` workers through a :class:`Backend`, and then only listens:
it logs what workers report, saves a checkpoint every ``interval`` iterations, stops the
workers when a budget is reached, and reports a worker that fails with its id and traceback.
:class:`Trainer` is that one supervision loop (start, supervise, stop); the backends only run
the workers: :class:`LocalBackend` spawns processes on this machine that share the tensors in
shared memory (spawn start method, one torch thread each), and Ray's ``RayBackend``
(``Agent/ray_backend.py``) runs them as actors around a parameter server.
:meth:`Trainer.worker_resume_state` is the one rule for resuming a worker from its own
``worker_<i>.pth``, the same for both backends.
"""
from __future__ import annotations

import os
import queue as queue_module
import signal
import sys
import time
from typing import NamedTuple, Protocol

import gymnasium as gym
import psutil

import torch

from Agent.parameters import (BAD_STREAK, EPISODES, ITERATIONS, N_COUNTERS, SAVING, SKIPPED, STEPS,
                              UPDATES)
from Agent.worker import StopFlag, worker_entry
from NN.networks import build_network
from NN.shared_adam import SharedAdam
from Utils.atari_wrappers import box_bounds, make_env
from Utils.checkpoint import (BEST_NAME, CHECKPOINT_NAME, FORMAT_VERSION, WEIGHT_KEYS, CheckpointError,
                              load_checkpoint, read_worker_state, save_checkpoint)
from Utils import interrupts
from Utils.config import Config, plural
from Utils.interrupts import Terminated, fault_point, signals_held
from Utils.logger import RunLogger

JOIN_TIMEOUT_S = 7.0   # a stopping run waits this long for its workers, then ends them
STUCK_TIMEOUT_S = 30.0  # ... and kills one that has not begun to save its state by then
SAVE_TIMEOUT_S = 900.0  # ... but a worker saving its own state (a replay of GBs) gets this long
LOCK_TIMEOUT_S = 5.0   # a save waits this long for the optimizer lock, then copies the weights without it


class WorkerFailed(RuntimeError):
    """A worker process raised or died, or the run had to stop (non-finite updates, a failed save)."""


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
    """Start the worker processes with SIGINT and SIGTERM blocked, a mask that a spawned process
    inherits: a Ctrl-C sent to the whole process group (a terminal, ``timeout -s INT``) while a
    worker is still importing cannot raise KeyboardInterrupt in it (it ignores both, then
    unblocks them). A signal to the main process meanwhile is held, and delivered once the
    workers are started (ignoring it instead, as this did before, lost it: the run trained on)."""
    with signals_held():
        for i, w in enumerate(workers):
            with interrupts.blocked_for_children():  # each time: multiprocessing may unblock them
                w.start()
            if i == 0:
                fault_point("start")


def worker_state_path(run_dir: str, worker_id: int) -> str:
    """Where worker ``worker_id`` keeps its own state between a stop and a resume."""
    return os.path.join(run_dir, f"worker_{worker_id}.pth")


class Snapshot(NamedTuple):
    """What a checkpoint records of the run's global state, copied between two updates."""

    model: dict            # the global network's weights
    optimizer: dict        # the shared Adam's state (SharedAdam.state_dict)
    average: dict | None   # ACER's average network, else None
    counters: dict         # Trainer.counter_totals()


class Backend(Protocol):
    """Where a run's workers execute: :class:`LocalBackend` (processes on this machine) or Ray's
    ``RayBackend``. :class:`Trainer` drives either one the same way: ``start``, then
    ``next_messages`` and ``dead_worker`` until a budget is spent or no worker is ``running``,
    then ``stop``, ``next_messages`` until they ended or ``join_timeout_s`` passed, ``join``,
    a last ``next_messages``, the final ``snapshot`` (the checkpoint), and ``close``.

    A backend keeps the trainer's ``counters`` table and ``optimizer.step_count`` current: the
    local workers write them in shared memory; Ray's are copied in with each ``next_messages``.
    Messages are the tuples workers send (``started``, ``episode``, ``life``, ``iteration``,
    ``warning``, ``error``; see :meth:`Trainer._handle`)."""

    join_timeout_s: float   # how long a stopping run waits for its workers before ending them

    def start(self) -> None:
        """Start the workers; each resumes from the state :meth:`Trainer.worker_resume_state`
        gives it, or starts afresh."""

    def next_messages(self, timeout: float) -> list[tuple]:
        """The workers' messages since the last call, waiting up to ``timeout`` s for some."""

    def running(self) -> bool:
        """Whether a worker is still running."""

    def dead_worker(self) -> str | None:
        """How a worker that failed or died ended ('worker 1 died with exit code -9 ...'), or None."""

    def snapshot(self) -> Snapshot:
        """The global weights, Adam state and counters, for a checkpoint."""

    def stop(self) -> None:
        """Ask the workers to stop; each saves its own state as it stops."""

    def kill(self) -> None:
        """End the workers now (a second Ctrl-C while stopping)."""

    def join(self) -> None:
        """End the workers still running after the wait."""

    def close(self) -> None:
        """Release what the backend holds, after the final checkpoint."""


def copy_shared_state(trainer: "Trainer") -> Snapshot:
    """Copies of the trainer's shared weights and Adam state, taken between two updates, and
    its counters.

    The copy is taken under the optimizer's lock, so weights and moments belong to the same
    step. Checking the shared tensors while a worker writes them is not safe: torch's
    ``isfinite(x)`` is ``(x == x) & (x.abs() != inf)``, which reads ``x`` twice and calls
    a value that changed in between non-finite (measured: 9 false alarms in 2,000 checks
    of 1.7M weights under a stepping worker; none on a copy). A worker killed while holding
    the lock would block the final save, so after a wait the copy is taken without it."""
    optimizer = trainer.optimizer
    locked = optimizer.lock.acquire(timeout=LOCK_TIMEOUT_S)
    try:
        model = {k: v.detach().clone() for k, v in trainer.global_net.state_dict().items()}
        adam = optimizer.state_dict()
    finally:
        if locked:
            optimizer.lock.release()
    average = trainer.average_net.state_dict() if trainer.average_net is not None else None
    return Snapshot(model, adam, average, trainer.counter_totals())


class LocalBackend:
    """The workers as processes on this machine (:func:`Agent.worker.worker_entry`), holding
    the trainer's networks, Adam and counter table in shared memory: the trainer's own tensors
    are always the live ones."""

    join_timeout_s = JOIN_TIMEOUT_S

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.queue = self.stop_event = None
        self.processes: list = []
        self.pending: list[tuple] = []  # messages read while joining, for the next next_messages
        self.stop_time: float | None = None

    def start(self) -> None:
        """Spawn the worker processes, one intra-op thread each. In a resumed run each reads its
        own ``worker_<i>.pth`` by :func:`Utils.checkpoint.read_worker_state`'s rule (a warning
        arrives as a message)."""
        t = self.trainer
        ctx = torch.multiprocessing.get_context("spawn")
        self.queue, self.stop_event = ctx.Queue(), StopFlag()
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers
        torch.set_num_threads(1)  # this process only logs and saves; the cores are the workers'
        self.processes = [
            ctx.Process(target=worker_entry, name=f"worker-{i}", daemon=True,
                        args=(i, t.cfg, t.global_net, t.average_net, t.optimizer, t.counters,
                              self.stop_event, self.queue, worker_state_path(t.run_dir, i),
                              t.resumed, os.getpid()))
            for i in range(t.cfg.n_workers)]
        start_ignoring_interrupts(self.processes)

    def next_messages(self, timeout: float) -> list[tuple]:
        messages, self.pending = self.pending, []
        return messages + self._read(0.0 if messages else timeout)

    def _read(self, timeout: float) -> list[tuple]:
        """The messages in the queue, waiting up to ``timeout`` s for the first."""
        messages = []
        if self.queue is None:
            return messages
        try:
            messages.append(self.queue.get(timeout=timeout) if timeout > 0 else self.queue.get_nowait())
            while True:
                messages.append(self.queue.get_nowait())
        except queue_module.Empty:
            pass
        return messages

    def running(self) -> bool:
        return any(w.is_alive() for w in self.processes)

    def dead_worker(self) -> str | None:
        for i, w in enumerate(self.processes):
            if w.exitcode not in (None, 0):
                return f"worker {i} died with exit code {w.exitcode}{_signal_name(w.exitcode)}"
        return None

    def snapshot(self) -> Snapshot:
        return copy_shared_state(self.trainer)

    def stop(self) -> None:
        if self.stop_event is not None:
            self.stop_event.set()
            self.stop_time = time.monotonic()

    def kill(self) -> None:
        for w in self.processes:
            if w.is_alive():
                w.kill()

    def join(self) -> None:
        """Wait for the workers still running: one that is saving its own state gets up to
        ``SAVE_TIMEOUT_S`` after the stop, one that has not begun to save ``STUCK_TIMEOUT_S``;
        then kill every worker still alive. One that never began to save is stuck (on a lock
        that a killed worker held, say), and SIGTERM would not reach it (workers ignore it, see
        :func:`Agent.worker.worker_entry`). A killed worker's own state is not saved; a resume
        starts it afresh."""
        announced = False
        while self._worth_waiting(saving := self._saving()):
            if not announced and saving:
                print(f"waiting for worker(s) {', '.join(map(str, saving))} to finish saving "
                      "their state", file=sys.stderr, flush=True)
                announced = True
            self.pending.extend(self._read(timeout=0.5))  # a full pipe would block a worker's exit
        for i, w in enumerate(self.processes):
            if w.is_alive():
                w.kill()
                print(f"warning: worker {i} did not stop; killed (its own state is not saved)",
                      file=sys.stderr, flush=True)
            w.join(timeout=2.0)

    def _saving(self) -> list[int]:
        """The live workers that are saving their own state."""
        marks = self.trainer.counters[:, SAVING].tolist()
        return [i for i, w in enumerate(self.processes) if w.is_alive() and marks[i]]

    def _worth_waiting(self, saving: list[int]) -> bool:
        """Whether a live worker is ``saving`` (before its deadline) or may still begin to."""
        if self.stop_time is None:   # never asked to stop: nothing to wait for
            return False
        waited = time.monotonic() - self.stop_time
        return any(w.is_alive() and waited < (SAVE_TIMEOUT_S if i in saving else STUCK_TIMEOUT_S)
                   for i, w in enumerate(self.processes))

    def close(self) -> None:
        pass


class Trainer:
    """Owns the shared state of a run and supervises its workers, which a :class:`Backend`
    runs (:class:`LocalBackend` here; Ray's ``RayTrainer`` only changes the backend)."""

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
        self.logger = RunLogger(log_dir, cfg.interval, logger_start,
                                start_steps=int(self.counters[:, STEPS].sum()),
                                budget=(cfg.total_steps, cfg.max_episodes))
        self.replay_len = 0
        self.started: dict[int, float] = {}   # worker id -> time of its first environment step
        self.last_saved_step = int(resume_state["counters"]["global_steps"]) if resume_state else 0
        self.save_failed = False               # the latest save attempt failed
        self.saved = False                     # a checkpoint was written by this process
        self.stopping = False                  # the run is in its stop (Trainer._stop)
        self.last_save_time = time.time()
        self.resumed = resume_state is not None
        self.best_reward = self._best_so_far()
        self.backend: Backend = self._make_backend()

    def _make_backend(self) -> Backend:
        return LocalBackend(self)

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

    def worker_resume_state(self, worker_id: int) -> dict | None:
        """The saved state (``worker_<i>.pth``) that worker ``worker_id`` continues from, or None
        when it starts afresh, by :func:`Utils.checkpoint.read_worker_state`'s rule (a warning
        goes to the console). Ray's workers get it from here; a local worker process applies
        the same function itself, so that the file is read once, in the process that uses it."""
        if not self.resumed:
            return None
        state, warning = read_worker_state(worker_state_path(self.run_dir, worker_id),
                                           int(self.counters[worker_id, ITERATIONS]), self.cfg.algo)
        if warning:
            self._handle(("warning", worker_id, warning))
        return state

    @property
    def global_steps(self) -> int:
        return int(self.counters[:, STEPS].sum())

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
        snapshot = self.backend.snapshot()
        state = {
            "format_version": FORMAT_VERSION, "algo": self.cfg.algo, "env_name": self.cfg.env_name,
            "obs_shape": list(self.obs_shape), "n_actions": self.n_actions,
            "network_kind": self.global_net.kind, "config": self.cfg.to_dict(),
            "counters": snapshot.counters,
            "logger": self.logger.state(),
            "model": snapshot.model, "optimizer": snapshot.optimizer,
        }
        if snapshot.average is not None:
            state["average_model"] = snapshot.average
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
        is reported, and stops the run only with ``stop_on_save_error``. SIGINT and SIGTERM
        wait until it is done, the copy of the weights included (a KeyboardInterrupt in the copy
        could leave the optimizer's lock taken, and the workers waiting for it)."""
        with signals_held():
            fault_point("final checkpoint" if self.stopping else "checkpoint")
            return self._save()

    def _save(self) -> bool:
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
        full-game running reward is above the one it was last written at; True if written.
        Signals wait as for :meth:`save`."""
        with signals_held():
            fault_point("final best" if self.stopping else "best")
            return self._save_best()

    def _save_best(self) -> bool:
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
                self.logger.console(
                    f"{'All ' if self.cfg.n_workers > 1 else ''}{plural(self.cfg.n_workers, 'worker')} "
                    f"stepping: first environment step "
                    f"{min(self.started.values()) - launch:.1f} s after launch, last "
                    f"{max(self.started.values()) - launch:.1f} s")
                self.logger.start_rate(self.global_steps)
        elif kind == "episode":
            _, _, reward, length, step = message
            self.logger.episode(worker_id, reward, length, step)
            self.logger.advance(self.global_steps)
        elif kind == "life":
            _, _, reward, length, step, game_over = message
            self.logger.life(worker_id, reward, length, step, game_over)
        elif kind == "iteration":
            _, _, stats, replay_len = message
            if worker_id == 0:
                self.replay_len = replay_len
            if self.logger.iteration(stats):
                self._report()
                if self._checkpoint_due():
                    self.save()
                self.save_best()
            else:
                self.logger.advance(self.global_steps)
        elif kind == "warning":
            print(f"warning: worker {worker_id}: {message[2]}", file=sys.stderr, flush=True)
        elif kind == "error":
            raise WorkerFailed(f"worker {worker_id} failed:\n{message[2]}")

    def _report(self) -> None:
        """The console line (steps, rate, budget done and ETA, rewards) and its logs."""
        self.logger.report(self.global_steps, self.replay_len if self.cfg.algo == "acer" else None,
                           int(self.counters[:, SKIPPED].sum()), self.cfg.total_steps,
                           self.cfg.max_episodes)

    def _final_report(self) -> None:
        """A last console line once the workers stopped, so that every run ends with one, even a
        run shorter than the console period."""
        if self.logger.iterations:
            self._report()

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

    def _handle_all(self, messages: list[tuple]) -> None:
        """Handle every message; then raise the first :class:`WorkerFailed` one of them raised."""
        failures: list[WorkerFailed] = []
        for message in messages:
            self._collect(failures, self._handle, message)
        if failures:
            raise failures[0]

    def _handle_messages(self, timeout: float) -> None:
        self._handle_all(self.backend.next_messages(timeout))

    def train(self) -> dict:
        """Run the workers until a budget is spent; return the final counters.

        A SIGINT or SIGTERM at any moment of it (see :mod:`Utils.interrupts`) stops the run
        with its final checkpoint, then raises KeyboardInterrupt or :class:`Terminated`; one
        that arrives while a run that spent its budget is stopping too."""
        failure = None
        with interrupts.training():
            try:
                try:
                    self.backend.start()
                    interrupts.install()   # a backend may have set its own (ray.init: SIGTERM)
                    self._supervise()
                finally:   # from here on a signal is counted, never raised into the stop,
                    interrupts.begin_stop()   # which it would cut short (no final checkpoint)
            except WorkerFailed as err:
                failure = err
            finally:
                stopping_failure = self._stop()
                failure = failure or stopping_failure
            signals = interrupts.received()
            if signals and failure is None:   # it came while the stop was under way
                raise interrupts.stop_exception(signals[0])
        return self.finish(failure)

    def _supervise(self) -> None:
        """Handle the workers' messages until a budget is spent or they all stopped; raise
        :class:`WorkerFailed` for a worker that died or a run that must stop."""
        backend = self.backend
        while True:
            self._handle_messages(timeout=0.2)
            self._check_updates()
            dead = backend.dead_worker()
            if dead:
                self._handle_messages(timeout=0.5)  # its traceback, if it sent one, comes first
                raise WorkerFailed(dead)
            if self._budget_spent() or not backend.running():
                return

    def _stop(self) -> WorkerFailed | None:
        """Stop the workers (their final states are saved by themselves), write the final
        checkpoint and best weights, close the logs; the first failure met on the way, if any.

        The run's second Ctrl-C (or SIGTERM) kills the workers instead of waiting for them,
        then saves as usual (about a second); further signals are only counted. The signals
        are :mod:`Utils.interrupts`' (no handler is swapped here, so none is lost)."""
        backend = self.backend
        self.stopping = True
        fault_point("stopping")
        killed: list[bool] = []

        def hurry(count: int) -> None:   # count: the run's signals so far, this one included
            if count >= 2 and not killed:
                killed.append(True)
                backend.kill()
        interrupts.begin_stop(hurry)
        failures: list[WorkerFailed] = []
        try:
            backend.stop()
            fault_point("stop")
            deadline = time.time() + backend.join_timeout_s
            while backend.running() and time.time() < deadline:
                # keep draining: a worker cannot exit while its queue buffer is full
                self._collect(failures, self._handle_messages, 0.1)
            backend.join()
            self._collect(failures, self._handle_messages, 0.05)
            self._collect(failures, self._final_report)
            self._collect(failures, self._final_save)
        finally:
            try:
                backend.close()
            finally:
                self.logger.close()
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
