"""The local backend: the workers as processes on this machine, sharing the run's tensors.

:class:`LocalBackend` spawns ``n_workers`` processes (spawn start method, one torch thread
each) that run :func:`Agent.runtime.worker.worker_entry` on the run state's networks, Adam and
counter table in shared memory, so the run state's own tensors are always the live ones.
"""
from __future__ import annotations

import os
import queue as queue_module
import signal
import sys
import time

import torch

from Agent.interface import SAVING
from Agent.runtime.state import RunState, Snapshot, worker_state_path
from Agent.runtime.worker import StopFlag, worker_entry
from Utils import interrupts
from Utils.interrupts import fault_point, signals_held

JOIN_TIMEOUT_S = 7.0   # a stopping run waits this long for its workers, then ends them
STUCK_TIMEOUT_S = 30.0  # ... and kills one that has not begun to save its state by then
SAVE_TIMEOUT_S = 900.0  # ... but a worker saving its own state (a replay of GBs) gets this long


def _signal_name(exitcode: int) -> str:
    """' (killed by SIGKILL)' for a negative exit code, else ''."""
    if exitcode is not None and exitcode < 0:
        try:
            return f" (killed by {signal.Signals(-exitcode).name})"
        except ValueError:
            pass
    return ""



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



class LocalBackend:
    """The workers as processes on this machine (:func:`Agent.runtime.worker.worker_entry`), on
    the run ``state``'s shared tensors; each resumed worker reads its own state file in
    ``run_dir``."""

    join_timeout_s = JOIN_TIMEOUT_S

    def __init__(self, state: RunState, run_dir: str, checkpoints=None):
        self.state, self.run_dir = state, run_dir
        self.queue = self.stop_event = None
        self.processes: list = []
        self.pending: list = []  # messages read while joining, for the next next_messages
        self.stop_time: float | None = None

    def start(self) -> None:
        """Spawn the worker processes, one intra-op thread each. In a resumed run each reads its
        own ``worker_<i>.pth`` by :func:`Utils.checkpoint.read_worker_state`'s rule (a warning
        arrives as a message)."""
        t = self.state
        ctx = torch.multiprocessing.get_context("spawn")
        self.queue, self.stop_event = ctx.Queue(), StopFlag()
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers
        torch.set_num_threads(1)  # this process only logs and saves; the cores are the workers'
        self.processes = [
            ctx.Process(target=worker_entry, name=f"worker-{i}", daemon=True,
                        args=(t.algorithm, i, t.cfg, t.global_net, t.average_net, t.optimizer, t.counters,
                              self.stop_event, self.queue, worker_state_path(self.run_dir, i),
                              t.resumed, os.getpid()))
            for i in range(t.cfg.n_workers)]
        start_ignoring_interrupts(self.processes)

    def next_messages(self, timeout: float) -> list:
        messages, self.pending = self.pending, []
        return messages + self._read(0.0 if messages else timeout)

    def _read(self, timeout: float) -> list:
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
        return self.state.snapshot()

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
        :func:`Agent.runtime.worker.worker_entry`). A killed worker's own state is not saved; a resume
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
        marks = self.state.counters[:, SAVING].tolist()
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
