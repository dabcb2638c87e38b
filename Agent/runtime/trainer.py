"""The supervision loop of a training run: start the workers, listen, checkpoint, stop.

The main process holds the run's shared state (:class:`Agent.runtime.state.RunState`: global
network, ACER's average network, shared Adam, counters), hands it to a :class:`Backend` that
runs ``n_workers`` workers, and then only listens: :class:`Trainer` logs what the workers
report, saves a checkpoint every ``interval`` iterations (through its
:class:`Agent.runtime.checkpointer.Checkpointer`), stops the workers when a budget is reached,
and reports a worker that fails with its id and traceback. The backends (``Agent.backends``:
local processes, Ray's parameter server, Ray's actor-learner) only run the workers; the
trainer is given one and drives each the same way.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Protocol

import psutil


from Agent.interface import BAD_STREAK, SKIPPED
from Agent.runtime.checkpointer import Checkpointer, WorkerFailed
from Agent.runtime.messages import Episode, Iteration, Life, Message, Started, WorkerError, WorkerWarning
from Agent.runtime.state import RunState, Snapshot
from Utils import interrupts
from Utils.checkpoint import FORMAT_VERSION
from Utils.config import Config, plural
from Utils.interrupts import Terminated, fault_point, signals_held  # noqa: F401 (main imports Terminated here)
from Utils.logger import RunLogger

__all__ = ["Backend", "Terminated", "Trainer", "WorkerFailed"]


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


class Backend(Protocol):
    """Where a run's workers execute (``Agent.backends``: ``LocalBackend``, processes on this
    machine; ``RayBackend``; ``ActorLearnerBackend``). A backend is built on the run's
    :class:`Agent.runtime.state.RunState`; :class:`Trainer` drives each the same way: ``start``, then
    ``next_messages`` and ``dead_worker`` until a budget is spent or no worker is ``running``,
    then ``stop``, ``next_messages`` until they ended or ``join_timeout_s`` passed, ``join``,
    a last ``next_messages``, the final ``snapshot`` (the checkpoint), and ``close``.

    A backend keeps the run state's ``counters`` table and ``optimizer.step_count`` current: the
    local workers write them in shared memory; Ray's are copied in with each ``next_messages``.
    Messages are :mod:`Agent.runtime.messages`' records (see :meth:`Trainer._handle`)."""

    join_timeout_s: float   # how long a stopping run waits for its workers before ending them

    def start(self) -> None:
        """Start the workers; each resumes from the state
        :func:`Agent.runtime.state.worker_resume_state` gives it, or starts afresh."""

    def next_messages(self, timeout: float) -> list[Message]:
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


class Trainer:
    """Supervises a run's workers, which the given :class:`Backend` runs on the run's shared
    ``state``; logs them, checkpoints the run through ``checkpoints`` and stops them.
    :func:`Agent.training.build_trainer` puts the pieces together."""

    def __init__(self, cfg: Config, run_dir: str, log_dir: str, state: RunState, backend: Backend,
                 checkpoints: Checkpointer, resume_state: dict | None = None):
        self.cfg, self.run_dir, self.log_dir = cfg, run_dir, log_dir
        self.state, self.backend = state, backend
        os.makedirs(run_dir, exist_ok=True)
        self.logger = RunLogger(log_dir, cfg.interval,
                                resume_state.get("logger") if resume_state else None,
                                start_steps=state.global_steps,
                                budget=(cfg.total_steps, cfg.max_episodes))
        self.checkpoints = checkpoints
        self.replay_len = 0
        self.started: dict[int, float] = {}   # worker id -> time of its first environment step
        self.stopping = False                  # the run is in its stop (Trainer._stop)

    # what main.py and the tests read of the run
    resumed = property(lambda self: self.state.resumed)
    global_steps = property(lambda self: self.state.global_steps)
    counters = property(lambda self: self.state.counters)
    global_net = property(lambda self: self.state.global_net)
    average_net = property(lambda self: self.state.average_net)
    optimizer = property(lambda self: self.state.optimizer)
    saved = property(lambda self: self.checkpoints.saved)
    last_saved_step = property(lambda self: self.checkpoints.last_saved_step)
    best_reward = property(lambda self: self.checkpoints.best_reward)

    def checkpoint_state(self) -> dict:
        """Everything needed to continue or play this run, as plain tensors and numbers."""
        snapshot: Snapshot = self.backend.snapshot()
        st = self.state
        state = {
            "format_version": FORMAT_VERSION, "algo": self.cfg.algo, "env_name": self.cfg.env_name,
            "obs_shape": list(st.obs_shape), "n_actions": st.n_actions,
            "network_kind": st.global_net.kind, "config": self.cfg.to_dict(),
            "counters": snapshot.counters,
            "logger": self.logger.state(),
            "model": snapshot.model, "optimizer": snapshot.optimizer,
        }
        if snapshot.average is not None:
            state["average_model"] = snapshot.average
        if st.action_bounds is not None:
            state["action_low"], state["action_high"] = map(list, st.action_bounds)
        return state

    def _checkpoint_due(self) -> bool:
        """An explicit ``interval``: a checkpoint with every console line; else every
        ``checkpoint_minutes``."""
        return bool(self.cfg.interval) or \
            self.checkpoints.minutes_since_save() >= self.cfg.checkpoint_minutes

    def save(self) -> bool:
        """Write the checkpoint; True if it was written (see :meth:`Checkpointer.save`). SIGINT
        and SIGTERM wait until it is done, the copy of the weights included (a
        KeyboardInterrupt in the copy could leave the optimizer's lock taken, and the workers
        waiting for it)."""
        with signals_held():
            fault_point("final checkpoint" if self.stopping else "checkpoint")
            return self.checkpoints.save(self.checkpoint_state())

    def save_best(self) -> bool:
        """Write ``best.pth`` (the playable weights, as ``--export`` writes them) when the
        full-game running reward is above the one it was last written at; True if written.
        Signals wait as for :meth:`save`."""
        with signals_held():
            fault_point("final best" if self.stopping else "best")
            running = self.logger.running_reward
            if not self.checkpoints.is_better(running):
                return False
            return self.checkpoints.save_best(self.checkpoint_state(), running, self.logger.episodes)

    def _budget_spent(self) -> bool:
        cfg = self.cfg
        return bool((cfg.total_steps and self.global_steps >= cfg.total_steps)
                    or (cfg.max_episodes and self.logger.episodes >= cfg.max_episodes))

    def _handle(self, message: Message) -> None:
        """One worker message, by its type (:mod:`Agent.runtime.messages`)."""
        handler = {Started: self._on_started, Episode: self._on_episode, Life: self._on_life,
                   Iteration: self._on_iteration, WorkerWarning: self._on_warning,
                   WorkerError: self._on_error}[type(message)]
        handler(message)

    def _on_started(self, message: Started) -> None:
        self.started[message.worker_id] = message.time
        if len(self.started) == self.cfg.n_workers:
            launch = process_start_time()
            n = self.cfg.n_workers
            self.logger.console(
                f"{'All ' if n > 1 else ''}{plural(n, 'worker')} stepping: first environment step "
                f"{min(self.started.values()) - launch:.1f} s after launch, last "
                f"{max(self.started.values()) - launch:.1f} s")
            self.logger.start_rate(self.global_steps)

    def _on_episode(self, m: Episode) -> None:
        fault_point("episode")
        self.logger.episode(m.worker_id, m.reward, m.length, m.step)
        self.logger.advance(self.global_steps)

    def _on_life(self, m: Life) -> None:
        self.logger.life(m.worker_id, m.reward, m.length, m.step, m.game_over)

    def _on_iteration(self, m: Iteration) -> None:
        if m.worker_id == 0:
            self.replay_len = m.replay_len
        if self.logger.iteration(m.stats):
            self._report()
            if self._checkpoint_due():
                self.save()
            self.save_best()
        else:
            self.logger.advance(self.global_steps)

    def _on_warning(self, m: WorkerWarning) -> None:
        print(f"warning: worker {m.worker_id}: {m.text}", file=sys.stderr, flush=True)

    def _on_error(self, m: WorkerError) -> None:
        raise WorkerFailed(f"worker {m.worker_id} failed:\n{m.traceback}")

    def _report(self) -> None:
        """The console line (steps, rate, budget done and ETA, rewards) and its logs."""
        self.logger.report(self.global_steps, self.replay_len if self.state.algorithm.has_replay else None,
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

    def _handle_all(self, messages: list[Message]) -> None:
        """Handle every message; then raise the first :class:`WorkerFailed` one of them raised."""
        failures: list[WorkerFailed] = []
        for message in messages:
            self._collect(failures, self._handle, message)
        if failures:
            raise failures[0]

    def _handle_messages(self, timeout: float) -> None:
        """Read and handle one batch of messages with SIGINT and SIGTERM held (delivered
        after it): a Ctrl-C raised inside a handler would leave the logger half-written (a
        game counted without its curve point or CSV row, so a resumed curve skips a number)
        and drop the rest of the batch."""
        with signals_held():
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
        if self.checkpoints.save_failed:
            raise WorkerFailed(f"the final checkpoint could not be written; the last one saved "
                               f"(step {self.last_saved_step}) is kept")
        return self.state.counter_totals()
