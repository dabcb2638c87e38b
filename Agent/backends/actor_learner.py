"""The actor-learner mode of the Ray backend (``--backend ray --ray_mode actor_learner``):
actors ship rollouts to one learner, and the learner ships weights back now and then.

* Each **actor** (:class:`RolloutActor`, a Ray actor with one CPU) runs the worker loop's own
  pieces (:func:`Agent.runtime.worker.start_worker`, :func:`Agent.runtime.worker.rollout`): an environment and
  an acting copy of the network (an ``ACERAgent`` that never learns), which records mu for
  every step. Each k-step rollout goes to the learner as the replay stores it: the newest frame
  of each state with its episode-start flag (the learner's replay rebuilds the stacks), action,
  reward, done, mu, the time-limit flags and the rare final frames, plus the actor's counters,
  its console messages and the policy version it acted with. The actor takes new weights every
  ``sync_every`` rollouts (sooner when ``max_policy_lag`` is set and exceeded).
* The **learner** (:class:`Learner`) runs in the driver, the ``main.py`` process (on ``cpu``,
  or on ``cuda`` with ``--learner_device cuda``). It holds one replay per actor with the
  original's per-worker capacity (``total_memory_size // (n_workers * k)``) and, for every
  rollout that arrives, makes ACER's on-policy update on it and ``Poisson(replay_ratio)``
  updates on trajectories drawn from that actor's replay: ``ACERAgent.update`` itself (the
  same loss, gradient clip, Adam and Polyak step as the other backends, one rollout per
  update). The on-policy update starts from the learner's latest weights, which are ahead of
  the ones the actor acted with, so rho != 1 there in general: ACER's truncated importance
  weights correct for that lag as they do for replayed trajectories.
* :class:`ActorLearnerBackend` is the :class:`Agent.runtime.trainer.Backend` of this mode: the trainer's
  one supervision loop (logging, checkpoints, stopping) drives it like the others. Learning
  happens inside :meth:`ActorLearnerBackend.next_messages`, with Ctrl-C held off until the
  update in progress is complete; the learner's networks and Adam are the run state's own (or,
  on a GPU, copied into them for each checkpoint), so a checkpoint is the same file whichever
  backend wrote it.

Requests are pipelined: each actor has two rollout requests queued, so it acts while the
learner learns from its previous rollout, and it waits (backpressure) when the learner is
behind. Weights travel as one flat float32 vector, put in Ray's object store once per policy
version and fetched by the actors that are due for it.

Faults: an actor that dies (its process killed, its node lost) is restarted with a new
environment, up to ``MAX_RESTARTS`` times each; its replay continues, the cut episode stored as
a time-limit truncation (:meth:`Agent.acer.replay.ReplayMemory.restart_stream`). An actor
whose code raises stops the run naming it, as a failing local worker does. A learner that raises
stops the run without writing over the last checkpoint. A run that receives no rollout for
``stall_minutes`` (default 15) stops, naming the actors whose rollouts it waited on.
"""
from __future__ import annotations

import contextlib
import dataclasses
import pickle
import time
import traceback
import warnings

import numpy as np
import torch

from Agent.acer.agent import ACERAgent
from Agent.acer.algorithm import ACER
from Agent.acer.replay import ReplayMemory
from Agent.backends.local import JOIN_TIMEOUT_S
from Agent.backends.transport import Outbox, connect, flatten, unflatten_into
from Agent.interface import EPISODES, ITERATIONS, STEPS
from Agent.runtime.checkpointer import Checkpointer, WorkerFailed
from Agent.runtime.messages import Iteration, Started, WorkerWarning
from Agent.runtime.parameters import SharedParameters
from Agent.runtime.state import RunState, Snapshot, worker_resume_state, worker_state_path
from Agent.runtime.worker import Reporter, rollout, save_worker_state, start_worker, worker_state
from NN.networks import acer_network
from NN.shared_adam import SharedAdam
from Utils.atari_wrappers import make_env
from Utils.config import Config, ConfigError, plural
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


def acting_config(cfg: Config) -> Config:
    """An actor's config: its agent keeps only a staging replay of one trajectory (the
    learner holds the real ones) and saves none of it."""
    return dataclasses.replace(cfg, total_memory_size=cfg.n_workers * cfg.k, save_replay=False)


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


def rollout_message(replay: ReplayMemory, k: int) -> dict:
    """The last ``k`` steps of an actor's staging replay, as the learner's replay stores them:
    the transitions, and the newest frame (with its episode-start flag) of each state they
    lead to; the final frames of the steps a time limit cut, in step order."""
    end = replay.n_transitions
    steps = np.arange(end - k, end)
    slots, next_slots = steps % replay.size, (steps + 1) % replay.size
    truncated = replay.truncated[slots].copy()
    return {"frames": replay.frames[next_slots], "first": replay.first[next_slots],
            "actions": replay.actions[slots], "rewards": replay.rewards[slots],
            "dones": replay.dones[slots], "mus": replay.mus[slots], "truncated": truncated,
            "final_frames": replay.final_frames_of([int(t) for t in steps[truncated]])}


class RolloutActor:
    """One actor (made a Ray actor by :func:`_actor_class`): an environment and an acting
    network; each :meth:`rollout` call acts ``k`` steps and returns them."""

    def __init__(self, worker_id: int, cfg: Config, obs_shape, n_actions: int,
                 counters: np.ndarray, resume_state: dict | None, weights: np.ndarray, version: int):
        torch.set_num_threads(1)
        self.worker_id, self.k = worker_id, cfg.k
        self.cfg = acting_config(cfg)
        self.table = torch.from_numpy(np.array(counters, dtype=np.int64))
        self.params = ActorParameters(obs_shape, n_actions, weights, version)
        self.outbox = Outbox()
        self.env, self.agent, self.rng, self.obs = start_worker(
            ACER, worker_id, self.cfg, self.params, self.table, resume_state)
        self.reporter = Reporter(worker_id, self.table, self.outbox)
        # the first rollout also carries the state it starts from: the learner's replay needs
        # it when it starts afresh, and it replaces the cut state when this actor is a restart
        replay = self.agent.replay
        self.start = (replay.frames[(replay.n_frames - 1) % replay.size].copy(),
                      bool(replay.first[(replay.n_frames - 1) % replay.size]), resume_state is not None)

    def rollout(self, weights: np.ndarray | None, version: int | None, table: np.ndarray) -> dict:
        """Act ``k`` steps (with ``weights``, policy ``version``, when given); the rollout."""
        t0 = time.perf_counter()
        if weights is not None:
            self.params.set(weights, version)
        i = self.worker_id
        mine = self.table[i].clone()
        self.table.copy_(torch.from_numpy(np.array(table, dtype=np.int64)))
        self.table[i] = mine          # this actor's row is its own
        self.obs = rollout(self.agent, self.env, self.obs, self.cfg.reward_scale, self.reporter)
        self.table[i, ITERATIONS] += 1
        message = rollout_message(self.agent.replay, self.k)
        message.update(worker_id=i, version=self.params.version, start=self.start,
                       counters=self.table[i].numpy().copy(), messages=list(self.outbox),
                       seconds=time.perf_counter() - t0)
        self.start = None
        self.outbox.clear()
        message["bytes"] = serialized_bytes(message)
        return message

    def state(self) -> dict:
        """This actor's own state for ``worker_<i>.pth`` (its replay is the learner's)."""
        return worker_state(self.worker_id, self.table, self.rng, self.env, self.obs, self.agent)


class Learner:
    """ACER's learner: one replay per actor and one ``ACERAgent`` that makes the updates
    (its ``worker_id`` set to the actor whose rollout it learns from, so each update is
    counted in that actor's row). Plain Python: no Ray needed (the unit tests drive it)."""

    def __init__(self, cfg: Config, obs_shape, n_actions: int, global_net, average_net, optimizer,
                 counters: torch.Tensor, device: str = "cpu"):
        self.cfg, self.counters = cfg, counters
        self.device = torch.device(device)
        self.shared = (global_net, average_net, optimizer)   # the run state's (CPU) copies
        if self.device.type != "cpu":
            global_net = acer_network(tuple(obs_shape), n_actions, cfg.to_dict()).to(self.device)
            global_net.load_state_dict(self.shared[0].state_dict())
            average_net = acer_network(tuple(obs_shape), n_actions, cfg.to_dict()).to(self.device)
            average_net.load_state_dict(self.shared[1].state_dict())
            optimizer = SharedAdam(global_net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
            optimizer.load_state_dict(self.shared[2].state_dict())
        self.global_net, self.optimizer = global_net, optimizer
        self.params = SharedParameters(global_net, average_net, optimizer, cfg.polyak)
        seed = np.random.SeedSequence([cfg.seed, 0x1EA4, int(optimizer.step_count)])
        self.rng = np.random.default_rng(seed)
        env = make_env(cfg.env_name, training=True, frame_stack=cfg.frame_stack)
        try:
            self.agent = ACERAgent(cfg, self.params, counters, 0, env, self.rng)
        finally:
            env.close()
        if self.device.type != "cpu":
            self.agent.local_net = self.agent.local_net.to(self.device)
            self.agent.local_params = list(self.agent.local_net.parameters())
            self.agent.device = self.device
        r = self.agent.replay
        self.replays = [r] + [ReplayMemory(r.capacity, r.k, r.frame_shape, r.mus.shape[1], r.stack,
                                           r.frames.dtype, r.actions.shape[1:], r.actions.dtype)
                             for _ in range(cfg.n_workers - 1)]
        self.updates = 0
        self.busy_s = 0.0
        self.waiting: list[tuple[int, dict]] = []  # (actor, trajectory) received, not yet learned

    @property
    def version(self) -> int:
        """The policy version: optimizer steps so far."""
        return int(self.optimizer.step_count)

    def weights(self) -> np.ndarray:
        return flatten(self.params.global_params)

    def load_replay(self, worker_id: int, state: dict) -> None:
        """Continue actor ``worker_id``'s replay from a saved one (``worker_<i>.pth``)."""
        self.replays[worker_id].load_state_dict(state, gamma=self.cfg.gamma)

    def agent_state(self, worker_id: int) -> dict:
        """What a worker's state file keeps of its agent: the replay, with ``save_replay``."""
        return {"replay": self.replays[worker_id].state_dict()} if self.cfg.save_replay else {}

    def add(self, message: dict) -> ReplayMemory:
        """Append a rollout to its actor's replay."""
        replay = self.replays[message["worker_id"]]
        if message["start"] is not None:
            frame, first, continues = message["start"]
            if replay.n_frames == replay.n_transitions:
                replay.add_frame(frame, first)           # a replay that starts afresh
            elif not continues:
                replay.restart_stream(frame)             # an actor that started afresh
        finals = iter(message["final_frames"])
        for j in range(len(message["actions"])):
            replay.add_transition(message["actions"][j], float(message["rewards"][j]),
                                  bool(message["dones"][j]), message["mus"][j],
                                  next(finals) if message["truncated"][j] else None)
            replay.add_frame(message["frames"][j], first=bool(message["first"][j]))
        return replay

    def learn(self, batch: list[tuple[int, dict]]) -> dict | None:
        """ACER's updates for a batch of rollouts, each (actor, its trajectory as it arrived,
        copied out of the replay): the on-policy update on them, from the latest weights, then
        Poisson(replay_ratio) updates on one trajectory drawn from each of their actors'
        replays (each ``ACERAgent.update_batch``); the first's statistics. With one rollout per
        batch (``--learner_batch 1``) these are ``ACERAgent.update``'s updates, one Adam step
        per trajectory as in the other modes. A batch's updates (and skipped ones) are counted
        in its first actor's row, so ``--max_bad_updates`` names that actor."""
        agent = self.agent
        agent.worker_id = batch[0][0]
        stats = agent.update_batch([trajectory for _, trajectory in batch])
        n_updates = 1
        if self.cfg.replay_ratio > 0:
            for _ in range(self.rng.poisson(self.cfg.replay_ratio)):
                agent.update_batch([self.replays[i].sample(self.rng) for i, _ in batch])
                n_updates += 1
        self.updates += n_updates
        return stats

    def ingest(self, message: dict) -> list:
        """Add a rollout, and learn once ``learner_batch`` rollouts are waiting; the trainer's
        messages for it (its statistics only when it completed a batch)."""
        t0 = time.perf_counter()
        i = message["worker_id"]
        row = message["counters"]
        with interrupts_held():
            replay = self.add(message)
            self.counters[i, STEPS] = int(row[STEPS])
            self.counters[i, EPISODES] = int(row[EPISODES])
            self.counters[i, ITERATIONS] += 1
            # a copy: a later rollout (or an actor's restart) can change or evict it in the replay
            self.waiting.append((i, replay.latest()))
            stats = None
            if len(self.waiting) >= self.cfg.learner_batch:
                batch, self.waiting = self.waiting, []
                stats = self.learn(batch)
        self.busy_s += time.perf_counter() - t0
        return [Iteration(i, stats or {}, len(replay))]

    def copy_to_trainer(self) -> None:
        """On a GPU: the learner's weights, average weights and Adam state into the run state's
        CPU copies (on the CPU they are the same objects)."""
        if self.device.type == "cpu":
            return
        global_net, average_net, optimizer = self.shared
        global_net.load_state_dict(self.global_net.state_dict())
        average_net.load_state_dict(self.params.average_net.state_dict())
        optimizer.load_state_dict(self.optimizer.state_dict())


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
        cfg = state.cfg
        if state.action_bounds is not None:
            raise ConfigError(f"--ray_mode actor_learner runs ACER with discrete actions; "
                              f"{cfg.env_name} has a Box action space: use --ray_mode hogwild")
        if cfg.learner_device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--learner_device cuda: torch sees no CUDA device here "
                              f"(torch {torch.__version__}); use --learner_device cpu")
        self.state, self.run_dir, self.checkpoints, self.cfg = state, run_dir, checkpoints, cfg
        self.learner = Learner(cfg, state.obs_shape, state.n_actions, state.global_net,
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
                replay = state.get("agent", state).get("replay")
                if replay is not None:
                    try:
                        self.learner.load_replay(i, replay)
                    except ValueError as err:
                        raise WorkerFailed(f"worker {i}'s saved replay cannot be used here: {err}") from None
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
        self.actors[i] = self.actor_class.remote(i, self.cfg, t.obs_shape, t.n_actions,
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
        if cfg.total_steps and (self.state.global_steps + len(self.pending) * cfg.k
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
            state["agent"] = self.learner.agent_state(i)
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
        s["steps"] += len(message["actions"])
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
        self.learner.copy_to_trainer()
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
