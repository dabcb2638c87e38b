"""The real training objects, built as a training run builds them, for the benches to time.

A bench never re-types the training loop (``tests/test_benches.py`` checks it): it builds a
worker from the run's own pieces, :func:`Agent.training.build_trainer` for the shared state
(global network, ACER's average network, shared Adam, counters) and
:func:`Agent.runtime.worker.start_worker` for the worker (seeding, environment, agent), steps
it with :func:`Agent.runtime.worker.rollout` and a real :class:`Agent.runtime.worker.Reporter`,
and learns with the agent's own ``learn`` (or its ``update`` / ``update_batch`` where a bench
measures one update). Times are taken from outside: :meth:`Timer.patch` replaces a real
object's method with a wrapper that times it and calls through.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from collections import Counter, defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from Agent.algorithms import get
from Agent.runtime.parameters import SharedParameters
from Agent.runtime.worker import Reporter, rollout, start_worker
from Agent.training import build_trainer
from Utils.config import Config, load_config


def bench_config(algo: str, overrides: dict) -> Config:
    """The config training would use: ``training_configs.yml`` for ``algo`` <- ``overrides``."""
    return load_config(os.path.join(ROOT, "training_configs.yml"), algo, overrides)


class Discard:
    """The queue a bench's :class:`Reporter` sends to: no main process reads it here."""

    def put(self, message) -> None:
        pass


class RunShell:
    """A run's shared state, as ``build_trainer`` builds it for ``main.py``, in a temporary
    folder; its workers are never started (the bench runs one itself, :class:`Worker`)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.folder = tempfile.mkdtemp(prefix="bench_run_")
        self.trainer = build_trainer(cfg, os.path.join(self.folder, "Models", "run"),
                                     os.path.join(self.folder, "Logs", "run"))

    def params(self) -> SharedParameters:
        """A worker's view of the shared weights, as the local backend's workers build it."""
        t = self.trainer
        return SharedParameters(t.global_net, t.average_net, t.optimizer, self.cfg.polyak)

    def close(self) -> None:
        self.trainer.logger.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class Worker:
    """Worker ``worker_id`` of a run: its environment, agent and observation from
    ``start_worker``, and a real ``Reporter`` (counting into ``counters``)."""

    def __init__(self, cfg: Config, params, counters, worker_id: int = 0):
        self.cfg, self.worker_id = cfg, worker_id
        self.env, self.agent, self.rng, self.obs = start_worker(get(cfg.algo), worker_id, cfg,
                                                                params, counters, None)
        self.reporter = Reporter(worker_id, counters, Discard())

    def rollout(self) -> None:
        """One rollout, :func:`Agent.runtime.worker.rollout` itself."""
        self.obs = rollout(self.agent, self.env, self.obs, self.cfg.reward_scale, self.reporter)

    def close(self) -> None:
        self.env.close()


class Timer:
    """Seconds per call of wrapped methods, by key, while :attr:`recording`."""

    def __init__(self):
        self.times: dict[str, list[float]] = defaultdict(list)
        self.recording = True
        self._open: Counter = Counter()   # calls of each key under way

    def wrap(self, key: str, fn, within: str | None = None):
        """``fn``, timed under ``key``; with ``within``, timed only in calls made while a call
        timed under ``within`` is under way."""
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if within is not None and not self._open[within]:
                return fn(*args, **kwargs)
            self._open[key] += 1
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t
                self._open[key] -= 1
                if self.recording:
                    self.times[key].append(elapsed)
        return timed

    def patch(self, obj, name: str, key: str | None = None, within: str | None = None) -> None:
        """Replace ``obj.name`` (a bound method) by its timed wrapper, on this object only."""
        setattr(obj, name, self.wrap(key or name, getattr(obj, name), within))

    def mean(self, key: str) -> float:
        values = self.times.get(key, [])
        return sum(values) / len(values) if values else 0.0

    def count(self, key: str) -> int:
        return len(self.times.get(key, []))
