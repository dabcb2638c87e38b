"""The actor-learner mode of the Ray backend (``--backend ray --ray_mode actor_learner``):
actors ship rollouts to one learner, and the learner ships weights back now and then. It runs
an algorithm whose registry record has :class:`Agent.registry.ActorLearnerParts` (ACER's are
in :mod:`Agent.acer.learner`); this module knows no algorithm.

* Each **actor** (:class:`RolloutActor`, a Ray actor with one CPU) runs the worker loop's own
  pieces (:func:`Agent.runtime.worker.start_worker`, :func:`Agent.runtime.worker.rollout`): an
  environment and the algorithm's agent, acting with the config of ``acting_config`` (it never
  learns). After each rollout it sends the algorithm's ``rollout_message`` with its counters,
  its console messages and the policy version it acted with; its first rollout also carries
  ``actor_start``. The actor takes new weights every ``sync_every`` rollouts (sooner when
  ``max_policy_lag`` is set and exceeded).
* The **learner** (:class:`Learner`) runs in the driver, the ``main.py`` process (on ``cpu``,
  or on ``cuda`` with ``--learner_device cuda``). It holds the run's networks and Adam (or
  copies of them on the GPU), the counters and the policy version, and feeds each rollout to
  the algorithm's :class:`Agent.interface.ReplayLearner`, which stores it and learns from
  batches of ``learner_batch`` rollouts.
* :class:`ActorLearnerBackend` is the :class:`Agent.runtime.trainer.Backend` of this mode: the
  trainer's one supervision loop (logging, checkpoints, stopping) drives it like the others.
  Learning happens inside :meth:`ActorLearnerBackend.next_messages`, with Ctrl-C held off until
  the update in progress is complete; the learner's networks and Adam are the run state's own
  (or, on a GPU, copied into them for each checkpoint), so a checkpoint is the same file
  whichever backend wrote it.

Requests are pipelined: each actor has two rollout requests queued, so it acts while the
learner learns from its previous rollout, and it waits (backpressure) when the learner is
behind. Weights travel as one flat float32 vector, put in Ray's object store once per policy
version and fetched by the actors that are due for it.

Faults: an actor that dies (its process killed, its node lost) is restarted with a new
environment, up to ``MAX_RESTARTS`` times each; its stored rollouts continue (ACER's replay
stores the cut episode as a time-limit truncation,
:meth:`Agent.acer.replay.ReplayMemory.restart_stream`). An actor whose code raises stops the run
naming it, as a failing local worker does. A learner that raises stops the run without writing
over the last checkpoint. A run that receives no rollout for ``stall_minutes`` (default 15)
stops, naming the actors whose rollouts it waited on.
"""
from __future__ import annotations

import contextlib
import pickle
import time
import traceback
import warnings

import numpy as np
import torch

from Agent.backends.local import JOIN_TIMEOUT_S
from Agent.backends.transport import Outbox, connect, flatten, unflatten_into
from Agent.interface import EPISODES, ITERATIONS, STEPS
from Agent.runtime.checkpointer import Checkpointer, WorkerFailed
from Agent.runtime.messages import Iteration, Started, WorkerWarning
from Agent.runtime.parameters import SharedParameters
from Agent.runtime.state import RunState, Snapshot, worker_resume_state, worker_state_path
from Agent.runtime.worker import Reporter, rollout, save_worker_state, start_worker, worker_state
from Agent.registry import Algorithm
from NN.shared_adam import SharedAdam
from Utils.atari_wrappers import make_env
from Utils.config import Config, ConfigError, plural
from Utils.network_spec import NetworkSpec
from Utils.interrupts import signals_held

PIPELINE = 2          # rollout requests queued per actor
MAX_RESTARTS = 3      # restarts of one actor before the run stops naming it
STARTUP_GRACE_S = 180.0  # before any actor stepped, a stall is reported after at least this long
                         # (Ray workers importing torch on loaded cores take over a minute)
# Weights from Ray's object store are read-only; they are only ever copied from.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def serialized_bytes(obj) -> int:
    """Bytes ``obj`` takes pickled with out-of-band buffers (protocol 5, as Ray moves NumPy
    arrays): the pickle stream plus the arrays' buffers."""
    buffers: list = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return len(head) + sum(b.raw().nbytes for b in buffers)


def interrupts_held():
    """Hold SIGINT and SIGTERM off until the block is done, then deliver them (the main thread
    only; elsewhere a no-op): a learner update is never cut in half by Ctrl-C, so the final
    checkpoint holds whole updates. :func:`Utils.interrupts.signals_held`, which swaps no
    handler during a run (a swap here could lose a signal, or leave one held for good)."""
    return signals_held()


class ActorParameters:
    """An actor's :class:`Agent.interface.ParameterStore`: the latest weights it was sent,
    copied into the acting network at a rollout's start when they are new. Actors never step."""

    average_net = None

    def __init__(self, obs_shape, n_actions: int, weights: np.ndarray, version: int):
        self.obs_shape, self.n_actions = tuple(obs_shape), n_actions
        self.weights, self.version, self.loaded = weights, version, None

    def set(self, weights: np.ndarray, version: int) -> None:
        self.weights, self.version = weights, version

    def pull(self, local_params: list[torch.Tensor]) -> None:
        if self.loaded != self.version:
            unflatten_into(self.weights, local_params)
            self.loaded = self.version

    def step(self, grads) -> int:
        raise RuntimeError("an actor does not update the weights; the learner does")


class RolloutActor:
    """One actor (made a Ray actor by :func:`_actor_class`): an environment and the
    algorithm's acting agent; each :meth:`rollout` call acts one rollout and returns it."""

    def __init__(self, algorithm: Algorithm, worker_id: int, cfg: Config, obs_shape, n_actions: int,
                 counters: np.ndarray, resume_state: dict | None, weights: np.ndarray, version: int):
        torch.set_num_threads(1)
        self.parts = algorithm.actor_learner
        self.worker_id, self.cfg = worker_id, self.parts.acting_config(cfg)
        self.n_steps = algorithm.rollout_length(self.cfg)
        self.table = torch.from_numpy(np.array(counters, dtype=np.int64))
        self.params = ActorParameters(obs_shape, n_actions, weights, version)
        self.outbox = Outbox()
        self.env, self.agent, self.rng, self.obs = start_worker(
            algorithm, worker_id, self.cfg, self.params, self.table, resume_state)
        self.reporter = Reporter(worker_id, self.table, self.outbox)
        self.start = self.parts.actor_start(self.agent, resume_state is not None)

    def rollout(self, weights: np.ndarray | None, version: int | None, table: np.ndarray) -> dict:
        """Act one rollout (with ``weights``, policy ``version``, when given); its message."""
        t0 = time.perf_counter()
        if weights is not None:
            self.params.set(weights, version)
        i = self.worker_id
        mine = self.table[i].clone()
        self.table.copy_(torch.from_numpy(np.array(table, dtype=np.int64)))
        self.table[i] = mine          # this actor's row is its own
        self.obs = rollout(self.agent, self.env, self.obs, self.cfg.reward_scale, self.reporter)
        self.table[i, ITERATIONS] += 1
        message = {"rollout": self.parts.rollout_message(self.agent, self.n_steps),
                   "steps": self.n_steps, "worker_id": i, "version": self.params.version,
                   "start": self.start, "counters": self.table[i].numpy().copy(),
                   "messages": list(self.outbox), "seconds": time.perf_counter() - t0}
        self.start = None
        self.outbox.clear()
        message["bytes"] = serialized_bytes(message)
        return message

    def state(self) -> dict:
        """This actor's own state for ``worker_<i>.pth`` (what it stored is the learner's)."""
        return worker_state(self.worker_id, self.table, self.rng, self.env, self.obs, self.agent)


def _on_device(device: torch.device, algorithm: Algorithm, spec: NetworkSpec, cfg: Config,
               global_net, average_net, optimizer) -> tuple:
    """Copies of the run's networks and Adam on ``device``."""
    copies = []
    for net in (global_net, average_net):
        copy = None
        if net is not None:
            copy = algorithm.build_network(spec).to(device)
            copy.load_state_dict(net.state_dict())
        copies.append(copy)
    adam = SharedAdam(copies[0].parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    adam.load_state_dict(optimizer.state_dict())
    return copies[0], copies[1], adam


class Learner:
    """The learner: the run's networks and Adam (copies of them on a GPU), its counters, the
    policy version, and the algorithm's :class:`Agent.interface.ReplayLearner`, which stores
    the rollouts and makes the updates. Plain Python: no Ray needed (the unit tests drive it)."""

    def __init__(self, cfg: Config, algorithm: Algorithm, spec: NetworkSpec, global_net,
                 average_net, optimizer, counters: torch.Tensor, device: str = "cpu"):
        self.cfg, self.counters = cfg, counters
        self.device = torch.device(device)
        if self.device.type != "cpu":
            global_net, average_net, optimizer = _on_device(self.device, algorithm, spec, cfg,
                                                            global_net, average_net, optimizer)
        self.global_net, self.optimizer = global_net, optimizer
        self.params = SharedParameters(global_net, average_net, optimizer, cfg.polyak)
        seed = np.random.SeedSequence([cfg.seed, 0x1EA4, int(optimizer.step_count)])
        self.rng = np.random.default_rng(seed)
        env = make_env(cfg.env_name, training=True, frame_stack=cfg.frame_stack)
        try:
            self.replay_learner = algorithm.actor_learner.make_learner(
                cfg, self.params, counters, env, self.rng)
        finally:
            env.close()
        if self.device.type != "cpu":
            self.replay_learner.to_device(self.device)
        self.updates = 0
        self.busy_s = 0.0
        self.waiting: list[tuple[int, dict]] = []  # (actor, trajectory) received, not yet learned

    @property
    def version(self) -> int:
        """The policy version: optimizer steps so far."""
        return int(self.optimizer.step_count)

    def weights(self) -> np.ndarray:
        return flatten(self.params.global_params)

    def learn(self, batch: list[tuple[int, dict]]) -> dict | None:
        """The algorithm's updates for a batch of (actor, trajectory); the first's statistics."""
        stats, n_updates = self.replay_learner.learn(batch)
        self.updates += n_updates
        return stats

    def ingest(self, message: dict) -> list:
        """Store a rollout, and learn once ``learner_batch`` rollouts are waiting; the trainer's
        messages for it (its statistics only when it completed a batch)."""
        t0 = time.perf_counter()
        i = message["worker_id"]
        row = message["counters"]
        with interrupts_held():
            trajectory, held = self.replay_learner.add(i, message["rollout"], message["start"])
            self.counters[i, STEPS] = int(row[STEPS])
            self.counters[i, EPISODES] = int(row[EPISODES])
            self.counters[i, ITERATIONS] += 1
            self.waiting.append((i, trajectory))
            stats = None
            if len(self.waiting) >= self.cfg.learner_batch:
                batch, self.waiting = self.waiting, []
                stats = self.learn(batch)
        self.busy_s += time.perf_counter() - t0
        return [Iteration(i, stats or {}, held)]

    def device_state(self) -> tuple[dict, dict | None, dict] | None:
        """On a GPU, the learner's weights, average weights and Adam state (for the run
        state's CPU copies, :meth:`Agent.runtime.state.RunState.load_snapshot`); None on the
        CPU, where they are the run state's own objects."""
        if self.device.type == "cpu":
            return None
        average = self.params.average_net
        return (self.global_net.state_dict(),
                average.state_dict() if average is not None else None,
                self.optimizer.state_dict())


def _actor_class():
    import ray
    return ray.remote(num_cpus=1)(RolloutActor)


def pull_due(since_sync: int, lag: int, sync_every: int, max_policy_lag: int) -> bool:
    """Whether an actor's next rollout request carries the learner's weights: after
    ``sync_every`` rollouts on its weights, or sooner when ``max_policy_lag`` (0: no limit) is
    set and its last rollout was acted with weights more than that many updates old."""
    return since_sync >= sync_every or bool(max_policy_lag and lag > max_policy_lag)


class ActorLearnerBackend:
    """The :class:`Agent.runtime.trainer.Backend` of ``--ray_mode actor_learner``: ``n_workers`` actors
    and the learner in this process. Counters: the actors' steps and games come with their
    rollouts; iterations and updates are the learner's."""

    join_timeout_s = JOIN_TIMEOUT_S * 2

    def __init__(self, state: RunState, run_dir: str, checkpoints: Checkpointer):
        cfg, algorithm = state.cfg, state.algorithm
        if state.action_bounds is not None and not algorithm.actor_learner.box_actions:
            raise ConfigError(f"--ray_mode actor_learner runs {algorithm.banner(cfg)} with discrete "
                              f"actions; {cfg.env_name} has a Box action space: use --ray_mode hogwild")
        if cfg.learner_device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--learner_device cuda: torch sees no CUDA device here "
                              f"(torch {torch.__version__}); use --learner_device cpu")
        self.state, self.run_dir, self.checkpoints, self.cfg = state, run_dir, checkpoints, cfg
        self.rollout_steps = algorithm.rollout_length(cfg)
        self.learner = Learner(cfg, algorithm, state.network_spec, state.global_net,
                               state.average_net, state.optimizer, state.counters,
                               cfg.learner_device)
        self.ray = None
        n = cfg.n_workers
        self.actors: list = [None] * n
        self.pending: dict = {}       # rollout ref -> actor id
        self.states: dict = {}        # state ref -> actor id
        self.state_asked = [False] * n
        self.since_sync = [0] * n
        self.lag = [0] * n
        self.restarts = [0] * n
        self.stepping: set[int] = set()
        self.published = None         # (version, ref, bytes) of the weights in the object store
        self.stopping = False
        self.failures: list[str] = []
        self.learner_failure: str | None = None
        self.notes = Outbox()
        self.stats = {"rollouts": 0, "steps": 0, "rollout_bytes": 0, "weight_pulls": 0,
                      "weight_bytes": 0, "lag_sum": 0, "lag_max": 0, "actor_s": 0.0}
        self.t_start = self.last_progress = time.time()

    # -- starting and requesting --
    def start(self) -> None:
        cfg = self.cfg
        self.ray = connect(cfg)
        self.actor_class = _actor_class()
        for i in range(cfg.n_workers):
            state, warning = worker_resume_state(self.state, self.run_dir, i)
            if warning:
                self.notes.put(WorkerWarning(i, warning))
            if state is not None:
                try:
                    self.learner.replay_learner.load_actor_state(i, state.get("agent", state))
                except ValueError as err:
                    raise WorkerFailed(f"worker {i}'s saved state cannot be used here: {err}") from None
                state = {**state, "agent": {}}
            self._start_actor(i, state)
        print(f"Actor-learner: {plural(cfg.n_workers, 'actor')} (1 CPU each) "
              f"{'sends' if cfg.n_workers == 1 else 'send'} rollouts to the learner "
              f"in this process ({cfg.learner_device}); actors pull weights every "
              f"{cfg.sync_every} rollouts"
              + (f" or when they lag by more than {cfg.max_policy_lag} updates"
                 if cfg.max_policy_lag else ""), flush=True)
        self.t_start = self.last_progress = time.time()

    def _weights(self):
        """The object-store reference of the current weights (put once per version)."""
        version = self.learner.version
        if self.published is None or self.published[0] != version:
            weights = self.learner.weights()
            self.published = (version, self.ray.put(weights), serialized_bytes(weights))
        return self.published

    def _start_actor(self, i: int, resume_state: dict | None) -> None:
        t = self.state
        version, ref, nbytes = self._weights()
        self.actors[i] = self.actor_class.remote(t.algorithm, i, self.cfg, t.obs_shape, t.n_actions,
                                                 t.counters.numpy().copy(), resume_state, ref, version)
        self.stats["weight_pulls"] += 1
        self.stats["weight_bytes"] += nbytes
        self.since_sync[i] = 0
        for _ in range(PIPELINE):
            self._request(i)

    def _request(self, i: int) -> None:
        """Queue one more rollout on actor ``i``, with the weights when it is due for them;
        none once the step budget is covered by the rollouts received and in flight."""
        cfg = self.cfg
        if cfg.total_steps and (self.state.global_steps + len(self.pending) * self.rollout_steps
                                >= cfg.total_steps):
            return
        weights = version = None
        if pull_due(self.since_sync[i], self.lag[i], cfg.sync_every, cfg.max_policy_lag):
            version, weights, nbytes = self._weights()
            self.since_sync[i] = 0
            self.lag[i] = 0
            self.stats["weight_pulls"] += 1
            self.stats["weight_bytes"] += nbytes
        self.since_sync[i] += 1
        ref = self.actors[i].rollout.remote(weights, version, self.state.counters.numpy().copy())
        self.pending[ref] = i

    # -- the Backend interface --
    def next_messages(self, timeout: float) -> list:
        messages: list = []
        deadline = time.time() + timeout
        while self.pending or self.states:
            # each actor's rollouts in the order they were requested (its stream): wait on the
            # oldest of each (ray.wait may return later ones first when several are ready)
            oldest: dict = {}
            for ref, i in self.pending.items():
                oldest.setdefault(i, ref)
            ready, _ = self.ray.wait(list(oldest.values()) + list(self.states), num_returns=1,
                                     timeout=max(0.0, deadline - time.time()))
            for ref in ready:
                self._take(ref, messages)
            if not ready or time.time() >= deadline or self.failures:
                break
        stall_s = 60.0 * self.cfg.stall_minutes
        if not self.stepping:   # actors still starting (Ray workers importing torch) get longer
            stall_s = max(stall_s, STARTUP_GRACE_S)
        if (self.pending and not self.stopping and not self.failures
                and time.time() - self.last_progress > stall_s):
            waiting = ", ".join(f"actor {i}" for i in sorted(set(self.pending.values())))
            self.failures.append(f"no rollout arrived for {stall_s:.0f} s (--stall_minutes "
                                 f"{self.cfg.stall_minutes:g}); the learner waited on {waiting} "
                                 f"(their rollout requests are queued in Ray: see `ray status` "
                                 f"for CPUs and `ray list actors`)")
        notes, self.notes = self.notes, Outbox()
        return notes + messages

    def _take(self, ref, messages: list) -> None:
        """Handle one finished call: a rollout (learn from it, queue the next) or a state.
        Ctrl-C waits until it is done, so that no rollout is lost between an actor and the
        learner (the actor's iteration count and the learner's stay equal)."""
        with interrupts_held():
            self._take_now(ref, messages)

    def _take_now(self, ref, messages: list) -> None:
        ex = self.ray.exceptions
        if ref in self.states:
            i = self.states.pop(ref)
            try:
                state = self.ray.get(ref)
            except (ex.RayActorError, ex.RayTaskError) as err:
                self.notes.put(WorkerWarning(i, f"actor {i} ended before returning its state "
                                              f"({_first_line(err)}); it starts afresh on resume"))
                return
            state["agent"] = self.learner.replay_learner.actor_state(i)
            save_worker_state(state, worker_state_path(self.run_dir, i), self.notes, i)
            return
        i = self.pending.pop(ref, None)
        if i is None:
            return
        try:
            message = self.ray.get(ref)
        except ex.RayTaskError as err:
            self.failures.append(f"worker {i} (actor) failed:\n{err}")
            return
        except ex.RayActorError as err:
            self._actor_died(i, err)
            return
        self.last_progress = time.time()
        s = self.stats
        s["rollouts"] += 1
        s["steps"] += message["steps"]
        s["rollout_bytes"] += message["bytes"]
        s["actor_s"] += message["seconds"]
        lag = self.learner.version - message["version"]
        self.lag[i] = lag
        s["lag_sum"] += lag
        s["lag_max"] = max(s["lag_max"], lag)
        for m in message["messages"]:
            if isinstance(m, Started):
                if i in self.stepping:
                    continue   # a restarted actor: the run's start-up was reported already
                self.stepping.add(i)
            messages.append(m)
        if self.learner_failure is not None:
            return
        try:
            messages.extend(self.learner.ingest(message))
        except Exception:
            self.learner_failure = traceback.format_exc()
            raise WorkerFailed(f"the learner failed; the last checkpoint (step "
                               f"{self.checkpoints.last_saved_step:,}) is kept, not overwritten:\n"
                               f"{self.learner_failure}") from None
        if self.stopping:
            self._ask_state(i)
        else:
            self._request(i)

    def _actor_died(self, i: int, err) -> None:
        """Restart actor ``i`` with a new environment, or, past ``MAX_RESTARTS`` (or when it
        cannot even start), stop the run naming it."""
        for ref in [r for r, j in self.pending.items() if j == i]:
            del self.pending[ref]                  # its other requests died with it
        reason = _first_line(err)
        if self.stopping:
            self.notes.put(WorkerWarning(i, f"actor {i} died while stopping ({reason}); it starts "
                                          "afresh on resume"))
            return
        self.restarts[i] += 1
        if getattr(err, "actor_init_failed", False) or self.restarts[i] > MAX_RESTARTS:
            why = ("it could not start" if getattr(err, "actor_init_failed", False)
                   else f"it died {self.restarts[i]} times")
            self.failures.append(f"worker {i} (actor) died and is not restarted ({why}): {err}")
            return
        with contextlib.suppress(Exception):
            self.ray.kill(self.actors[i])
        self.notes.put(WorkerWarning(i, f"actor {i} died ({reason}); restarted with a new "
                                      f"environment (restart {self.restarts[i]} of {MAX_RESTARTS})"))
        self._start_actor(i, None)

    def _ask_state(self, i: int) -> None:
        if not self.state_asked[i] and i not in self.pending.values():
            self.state_asked[i] = True
            self.states[self.actors[i].state.remote()] = i

    def running(self) -> bool:
        return bool(self.pending or self.states)

    def dead_worker(self) -> str | None:
        return self.failures[0] if self.failures else None

    def snapshot(self) -> Snapshot:
        if self.learner_failure is not None:
            raise WorkerFailed("the learner failed; the last checkpoint is kept")
        on_device = self.learner.device_state()
        if on_device is not None:
            self.state.load_snapshot(*on_device)
        return self.state.snapshot()

    def stop(self) -> None:
        """Queue no more rollouts; each actor returns its state once its queued ones are in."""
        self.stopping = True
        if self.learner_failure is not None and self.ray is not None:
            self.kill()                    # nothing more is learned or saved
            self.pending, self.states = {}, {}
            return
        if self.ray is not None:
            for i in range(self.cfg.n_workers):
                self._ask_state(i)

    def kill(self) -> None:
        for actor in self.actors:
            if actor is not None:
                self.ray.kill(actor)

    def join(self) -> None:
        """End the actors whose rollouts or states are still outstanding (states not saved)."""
        for i in set(self.pending.values()) | set(self.states.values()):
            self.ray.kill(self.actors[i])
        self.pending, self.states = {}, {}

    def close(self) -> None:
        if self.ray is None:
            return
        print(self.summary(), flush=True)
        for actor in self.actors:
            if actor is not None:
                self.ray.kill(actor)
        self.ray.shutdown()
        self.ray = None

    def summary(self) -> str:
        """What moved and what the learner did, for the console (bench/throughput.py reads it)."""
        s, learner = self.stats, self.learner
        wall = max(1e-9, time.time() - self.t_start)
        steps = max(1, s["steps"])
        moved = s["rollout_bytes"] + s["weight_bytes"]
        return (f"Actor-learner summary: {s['rollouts']} rollouts, {s['steps']} agent steps, "
                f"rollouts {s['rollout_bytes'] / 1e6:.2f} MB, weights {s['weight_pulls']} pulls "
                f"{s['weight_bytes'] / 1e6:.2f} MB, bytes per agent step {moved / steps:.0f} "
                f"(rollouts {s['rollout_bytes'] / steps:.0f}, weights {s['weight_bytes'] / steps:.0f}); "
                f"learner {learner.updates} updates in {wall:.1f} s ({learner.updates / wall:.2f}/s), "
                f"busy {learner.busy_s:.1f} s ({1e3 * learner.busy_s / max(1, learner.updates):.2f} "
                f"ms per update); actor {1e3 * s['actor_s'] / steps:.3f} ms per step; policy lag "
                f"mean {s['lag_sum'] / max(1, s['rollouts']):.1f}, max {s['lag_max']} updates")


def _first_line(err) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
