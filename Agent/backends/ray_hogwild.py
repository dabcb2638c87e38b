"""The Ray backend (``--backend ray``): the same workers on a Ray cluster, with a parameter
server in place of shared memory.

* :class:`ParameterServer` (one actor, no CPU reserved) holds the global network, ACER's
  average network and the Adam moments, and applies each gradient as it arrives: Adam step,
  then the Polyak update of the average network (the very ``SharedParameters.step`` of the
  local backend). It also keeps the workers' counter rows and their messages for the driver.
* Each worker is an actor (one CPU) running :func:`Agent.runtime.worker.run_worker` unchanged, with
  :class:`RayParameters` as its ``params``: ``pull`` fetches the latest weights (and average
  weights), ``step`` sends a gradient without waiting for it to be applied. Calls from one
  worker reach the server in order, so its next pull sees its own last update, as in the
  Hogwild path, while other workers' updates land whenever they arrive.
* The driver (the main process) runs the trainer's one supervision loop
  (:class:`Agent.runtime.trainer.Trainer`: logging, checkpoints, stopping) over :class:`RayBackend`;
  before each save it copies the server's state into its own networks, so a checkpoint is the
  same file whichever backend wrote it.

Weights and gradients travel as one flat float32 NumPy vector each: Ray moves NumPy arrays
through its object store without pickling them, where a torch tensor is pickled, many times
slower (bench/throughput.py --backend ray prints the round trips).
"""
from __future__ import annotations

import traceback
import warnings

import numpy as np
import torch

from Agent.backends.local import JOIN_TIMEOUT_S
from Agent.backends.transport import (Outbox, connect, flatten, numpy_adam, numpy_state, torch_adam,
                                      torch_state, unflatten_into)
from Agent.runtime.checkpointer import Checkpointer
from Agent.runtime.messages import WorkerError, WorkerWarning
from Agent.runtime.parameters import SharedParameters
from Agent.runtime.state import RunState, Snapshot, worker_resume_state, worker_state_path
from Agent.runtime.worker import run_worker, save_worker_state
from Agent.registry import Algorithm
from NN.shared_adam import SharedAdam
from Utils.network_spec import NetworkSpec

# Arrays from Ray's object store are read-only; they are only ever copied from here.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


class ParameterServer:
    """The global state of a Ray run (made a Ray actor by :func:`_actor_classes`)."""

    def __init__(self, algorithm: Algorithm, spec: NetworkSpec, config: dict, model: dict,
                 average: dict | None, optimizer: dict, counters: np.ndarray):
        torch.set_num_threads(1)
        self.global_net = algorithm.build_network(spec)
        self.global_net.load_state_dict(torch_state(model))
        average_net = None
        if average is not None:
            average_net = algorithm.build_network(spec)
            average_net.load_state_dict(torch_state(average))
        adam = SharedAdam(self.global_net.parameters(), lr=config["lr"], eps=config["adam_eps"])
        adam.load_state_dict(torch_adam(optimizer))
        self.params = SharedParameters(self.global_net, average_net, adam, config["polyak"])
        self.grads = [torch.zeros_like(p) for p in self.params.global_params]
        self.counters = np.array(counters, dtype=np.int64)
        self.received = np.zeros(len(self.counters), dtype=np.int64)   # gradients applied, per worker
        self.messages: list = []
        self.stopped = False

    def pull(self, worker_id: int, counter_row: np.ndarray, messages: list):
        """Record a worker's counters and messages; return the latest weights, the average
        weights (ACER), every worker's counters and whether to stop."""
        self.counters[worker_id] = counter_row
        self.messages.extend(messages)
        average = (flatten(self.params.average_params) if self.params.average_params is not None
                   else None)
        return flatten(self.params.global_params), average, self.counters.copy(), self.stopped

    def push(self, worker_id: int, grads: np.ndarray) -> int:
        """Apply one worker's gradient (Adam, then the average network); return the step."""
        unflatten_into(grads, self.grads)
        self.received[worker_id] += 1
        return self.params.step(self.grads)

    def report(self, worker_id: int, counter_row: np.ndarray, messages: list) -> None:
        """A worker's last counters and messages, as it stops."""
        self.counters[worker_id] = counter_row
        self.messages.extend(messages)

    def drain(self):
        """Messages since the last call, the counters, the optimizer's step and the gradients
        received per worker."""
        messages, self.messages = self.messages, []
        return messages, self.counters.copy(), int(self.params.optimizer.step_count), self.received.copy()

    def stop(self) -> None:
        self.stopped = True

    def state(self) -> dict:
        """The global network, average network and Adam state as NumPy arrays."""
        adam = self.params.optimizer.state_dict()
        return {"model": numpy_state(self.global_net.state_dict()),
                "average": (numpy_state(self.params.average_net.state_dict())
                            if self.params.average_net is not None else None),
                "optimizer": numpy_adam(adam)}


class RayParameters:
    """A worker's view of the parameter server, with the members agents use (``pull``,
    ``step``, ``average_net``); it also carries the worker's messages and counters."""

    def __init__(self, server, worker_id: int, counters: torch.Tensor, obs_shape, n_actions: int,
                 average_net: torch.nn.Module | None):
        import ray
        self._ray, self.server, self.worker_id, self.counters = ray, server, worker_id, counters
        self.obs_shape, self.n_actions = tuple(obs_shape), n_actions
        self.average_net = average_net
        self.average_params = list(average_net.parameters()) if average_net is not None else None
        self.outbox: list = []
        self.stopped = False
        self._last_push = None

    def pull(self, local_params: list[torch.Tensor]) -> None:
        weights, average, table, stopped = self._ray.get(self.server.pull.remote(
            self.worker_id, self.counters[self.worker_id].numpy().copy(), self.outbox))
        self.outbox = []
        unflatten_into(weights, local_params)
        if average is not None:
            unflatten_into(average, self.average_params)
        mine = self.counters[self.worker_id].clone()
        self.counters.copy_(torch.from_numpy(table))
        self.counters[self.worker_id] = mine          # this worker's row is its own
        self.stopped = bool(stopped)

    def step(self, grads: list[torch.Tensor]) -> int:
        """Send the gradient; the server applies it when it arrives (the call does not wait)."""
        self._last_push = self.server.push.remote(self.worker_id, flatten(grads))
        return 0

    def finish(self) -> None:
        """Wait for the last gradient to be applied, then send the last counters and messages."""
        if self._last_push is not None:
            self._ray.get(self._last_push)
        self._ray.get(self.server.report.remote(self.worker_id,
                                                self.counters[self.worker_id].numpy().copy(),
                                                self.outbox))
        self.outbox = []


class _Outbox:
    """The worker loop's ``queue``: messages wait in the worker and travel with its next pull."""

    def __init__(self, params: RayParameters):
        self.params = params

    def put(self, message) -> None:
        self.params.outbox.append(message)


class _StopFlag:
    """The worker loop's ``stop_event``: the server's stop flag, as of the last pull."""

    def __init__(self, params: RayParameters):
        self.params = params

    def is_set(self) -> bool:
        return self.params.stopped


class RayWorker:
    """One worker (made a Ray actor by :func:`_actor_classes`): the local backend's loop."""

    def run(self, algorithm: Algorithm, worker_id: int, cfg, server, spec: NetworkSpec,
            counters: np.ndarray, resume_state: dict | None):
        torch.set_num_threads(1)
        table = torch.from_numpy(np.array(counters, dtype=np.int64))
        average_net = algorithm.build_network(spec) if algorithm.needs_average else None
        params = RayParameters(server, worker_id, table, spec.obs_shape, spec.n_actions, average_net)
        try:
            state = run_worker(algorithm, worker_id, cfg, params, table, _StopFlag(params), _Outbox(params),
                               state_path=None, resume_state=resume_state)
        except BaseException:
            params.outbox.append(WorkerError(worker_id, traceback.format_exc()))
            params.finish()
            raise
        params.finish()
        return state


def _actor_classes():
    import ray
    return (ray.remote(num_cpus=0)(ParameterServer), ray.remote(num_cpus=1)(RayWorker))


class RayBackend:
    """The :class:`Agent.runtime.trainer.Backend` of ``--backend ray``: a parameter-server actor and one
    actor per worker. The run state's networks, Adam and counter table are the driver's copies:
    the counters and the optimizer's step come in with every :meth:`next_messages`, the
    weights and moments with every :meth:`snapshot`. Workers return their own state when they
    stop, and this driver writes it to ``worker_<i>.pth``."""

    join_timeout_s = JOIN_TIMEOUT_S * 2

    def __init__(self, state: RunState, run_dir: str, checkpoints: Checkpointer | None = None):
        self.state, self.run_dir = state, run_dir
        self.ray = self.server = None
        self.workers: list = []
        self.runs: list = []         # one ObjectRef per worker: its run's result
        self.pending: list = []      # the runs still going
        self.failures: list[str] = []
        self.notes = Outbox()      # messages from this driver (a worker state it could not write)
        self.received = np.zeros(state.cfg.n_workers, dtype=np.int64)

    def start(self) -> None:
        t, cfg = self.state, self.state.cfg
        self.ray = connect(cfg)
        server_class, worker_class = _actor_classes()
        self.server = server_class.remote(
            t.algorithm, t.network_spec, cfg.to_dict(),
            numpy_state(t.global_net.state_dict()),
            numpy_state(t.average_net.state_dict()) if t.average_net is not None else None,
            numpy_adam(t.optimizer.state_dict()),
            t.counters.numpy().copy())
        self.workers = [worker_class.options(name=None).remote() for _ in range(cfg.n_workers)]
        self.runs = [w.run.remote(t.algorithm, i, cfg, self.server, t.network_spec, t.counters.numpy().copy(), self._resume_state(i))
                     for i, w in enumerate(self.workers)]
        self.pending = list(self.runs)

    def _resume_state(self, worker_id: int) -> dict | None:
        """Worker ``worker_id``'s saved state, read here in the driver (a warning goes to the
        console with the next messages)."""
        state, warning = worker_resume_state(self.state, self.run_dir, worker_id)
        if warning:
            self.notes.put(WorkerWarning(worker_id, warning))
        return state

    def next_messages(self, timeout: float) -> list:
        if self.server is None:
            return []
        if self.pending:
            self.ray.wait(self.pending, timeout=timeout)
            self._collect_finished()
        messages, table, step, self.received = self.ray.get(self.server.drain.remote())
        self.state.counters.copy_(torch.from_numpy(table))
        self.state.optimizer.step_count.fill_(step)
        notes, self.notes = self.notes, Outbox()
        return notes + messages

    def running(self) -> bool:
        self._collect_finished()
        return bool(self.pending)

    def dead_worker(self) -> str | None:
        return self.failures[0] if self.failures else None

    def _collect_finished(self) -> None:
        """Take the results of the runs that ended: write a worker's returned state to its
        ``worker_<i>.pth``, or note how it failed."""
        if not self.pending:
            return
        ready, self.pending = self.ray.wait(self.pending, num_returns=len(self.pending), timeout=0)
        for ref in ready:
            worker_id = self.runs.index(ref)
            try:
                state = self.ray.get(ref)
            except self.ray.exceptions.RayTaskError as err:
                self.failures.append(f"worker {worker_id} failed:\n{err}")
            except self.ray.exceptions.RayActorError as err:
                self.failures.append(f"worker {worker_id} died: {err}")
            else:
                if state is not None:
                    save_worker_state(state, worker_state_path(self.run_dir, worker_id),
                                      self.notes, worker_id)

    def snapshot(self) -> Snapshot:
        """The server's weights and Adam state, copied into the driver's networks first (so a
        checkpoint is the same file whichever backend wrote it)."""
        if self.server is not None:
            state = self.ray.get(self.server.state.remote())
            self.state.load_snapshot(torch_state(state["model"]),
                                     torch_state(state["average"]) if state["average"] is not None else None,
                                     torch_adam(state["optimizer"]))
        return self.state.snapshot()

    def stop(self) -> None:
        if self.server is not None:
            self.ray.get(self.server.stop.remote())

    def kill(self) -> None:
        for actor in self.workers:
            self.ray.kill(actor)

    def join(self) -> None:
        """End the worker actors whose runs are still going (their states are not saved)."""
        if self.pending:
            for ref in self.pending:
                self.ray.kill(self.workers[self.runs.index(ref)])
            self.pending = []

    def close(self) -> None:
        if self.ray is None:
            return
        for actor in self.workers + ([self.server] if self.server is not None else []):
            self.ray.kill(actor)
        self.server = None
        self.ray.shutdown()
