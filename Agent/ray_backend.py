"""The Ray backend (``--backend ray``): the same workers on a Ray cluster, with a parameter
server in place of shared memory.

* :class:`ParameterServer` (one actor, no CPU reserved) holds the global network, ACER's
  average network and the Adam moments, and applies each gradient as it arrives: Adam step,
  then the Polyak update of the average network (the very ``SharedParameters.step`` of the
  local backend). It also keeps the workers' counter rows and their messages for the driver.
* Each worker is an actor (one CPU) running :func:`Agent.worker.run_worker` unchanged, with
  :class:`RayParameters` as its ``params``: ``pull`` fetches the latest weights (and average
  weights), ``step`` sends a gradient without waiting for it to be applied. Calls from one
  worker reach the server in order, so its next pull sees its own last update, as in the
  Hogwild path, while other workers' updates land whenever they arrive.
* The driver (:class:`RayTrainer`, the main process) logs, saves checkpoints and stops the run
  exactly like the local trainer; before each save it copies the server's state into its own
  networks, so a checkpoint is the same file whichever backend wrote it.

Weights and gradients travel as one flat float32 NumPy vector each: Ray moves NumPy arrays
through its object store without pickling them, where a torch tensor of 4 MB took 1.8 s
instead of 50 ms on the development machine.
"""
from __future__ import annotations

import os
import traceback
import warnings

import numpy as np
import torch

from Agent.parameters import SharedParameters
from Agent.trainer import JOIN_TIMEOUT_S, Trainer, WorkerFailed
from Agent.parameters import ITERATIONS
from Agent.worker import run_worker
from NN.networks import build_network
from NN.shared_adam import SharedAdam

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Arrays from Ray's object store are read-only; they are only ever copied from here.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def flatten(tensors) -> np.ndarray:
    """The tensors' values as one float32 vector."""
    return torch.cat([t.detach().reshape(-1).float() for t in tensors]).numpy()


@torch.no_grad()
def unflatten_into(vector: np.ndarray, tensors) -> None:
    """Copy a :func:`flatten` vector back into ``tensors`` in place."""
    flat, offset = torch.from_numpy(np.asarray(vector)), 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n


def _numpy_state(state_dict: dict) -> dict:
    return {k: v.detach().numpy().copy() for k, v in state_dict.items()}


def _torch_state(state: dict) -> dict:
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


def _numpy_adam(state: dict) -> dict:
    """A :meth:`SharedAdam.state_dict` with its moments as NumPy arrays (for Ray)."""
    return {**state, "exp_avg": [m.numpy() for m in state["exp_avg"]],
            "exp_avg_sq": [v.numpy() for v in state["exp_avg_sq"]]}


def _torch_adam(state: dict) -> dict:
    """The inverse of :func:`_numpy_adam`."""
    return {**state, "exp_avg": [torch.from_numpy(np.array(m)) for m in state["exp_avg"]],
            "exp_avg_sq": [torch.from_numpy(np.array(v)) for v in state["exp_avg_sq"]]}


class ParameterServer:
    """The global state of a Ray run (made a Ray actor by :func:`_actor_classes`)."""

    def __init__(self, algo: str, obs_shape, n_actions: int, config: dict, bounds,
                 model: dict, average: dict | None, optimizer: dict, counters: np.ndarray):
        torch.set_num_threads(1)
        self.global_net = build_network(algo, tuple(obs_shape), n_actions, config, bounds)
        self.global_net.load_state_dict(_torch_state(model))
        average_net = None
        if average is not None:
            average_net = build_network(algo, tuple(obs_shape), n_actions, config, bounds)
            average_net.load_state_dict(_torch_state(average))
        adam = SharedAdam(self.global_net.parameters(), lr=config["lr"], eps=config["adam_eps"])
        adam.load_state_dict(_torch_adam(optimizer))
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
        return {"model": _numpy_state(self.global_net.state_dict()),
                "average": (_numpy_state(self.params.average_net.state_dict())
                            if self.params.average_net is not None else None),
                "optimizer": _numpy_adam(adam)}


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

    def run(self, worker_id: int, cfg, server, obs_shape, n_actions: int, bounds,
            counters: np.ndarray, resume_state: dict | None):
        torch.set_num_threads(1)
        table = torch.from_numpy(np.array(counters, dtype=np.int64))
        average_net = None
        if cfg.algo == "acer":
            average_net = build_network(cfg.algo, tuple(obs_shape), n_actions, cfg.to_dict(), bounds)
        params = RayParameters(server, worker_id, table, obs_shape, n_actions, average_net)
        try:
            state = run_worker(worker_id, cfg, params, table, _StopFlag(params), _Outbox(params),
                               state_path=None, resume_state=resume_state)
        except BaseException:
            params.outbox.append(("error", worker_id, traceback.format_exc()))
            params.finish()
            raise
        params.finish()
        return state


def _actor_classes():
    import ray
    return (ray.remote(num_cpus=0)(ParameterServer), ray.remote(num_cpus=1)(RayWorker))


class RayTrainer(Trainer):
    """The local trainer's logging, checkpoints and stopping, with Ray actors as workers."""

    def _connect(self):
        import ray
        runtime_env = {"env_vars": {"PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}}
        address = self.cfg.ray_address or None
        ray.init(address=address, runtime_env=runtime_env, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=True)
        return ray

    def _pull_server_state(self, ray, server) -> None:
        """Copy the server's weights and Adam state into this process's networks (the ones
        :meth:`checkpoint_state` reads)."""
        state = ray.get(server.state.remote())
        self.global_net.load_state_dict(_torch_state(state["model"]))
        if self.average_net is not None:
            self.average_net.load_state_dict(_torch_state(state["average"]))
        self.optimizer.load_state_dict(_torch_adam(state["optimizer"]))

    def _drain_server(self, ray, server) -> None:
        messages, table, step, received = ray.get(server.drain.remote())
        self.counters.copy_(torch.from_numpy(table))
        self.optimizer.step_count.fill_(step)
        self.received = received
        for message in messages:
            self._handle(message)

    def save(self) -> bool:
        if getattr(self, "_server", None) is not None:
            self._pull_server_state(self._ray, self._server)
        return super().save()

    def train(self) -> dict:
        """Run the worker actors until a budget is spent; return the final counters."""
        cfg = self.cfg
        ray = self._ray = self._connect()
        server_class, worker_class = _actor_classes()
        self._server = server = server_class.remote(
            cfg.algo, self.obs_shape, self.n_actions, cfg.to_dict(), self.action_bounds,
            _numpy_state(self.global_net.state_dict()),
            _numpy_state(self.average_net.state_dict()) if self.average_net is not None else None,
            _numpy_adam(self.optimizer.state_dict()),
            self.counters.numpy().copy())
        self.received = np.zeros(cfg.n_workers, dtype=np.int64)
        workers = [worker_class.options(name=None).remote() for _ in range(cfg.n_workers)]
        runs = [w.run.remote(i, cfg, server, self.obs_shape, self.n_actions, self.action_bounds,
                             self.counters.numpy().copy(), self._worker_resume_state(i))
                for i, w in enumerate(workers)]
        failure, states = None, [None] * cfg.n_workers
        try:
            pending = list(runs)
            while pending:
                self._drain_server(ray, server)
                self._check_updates()
                if self._budget_spent():
                    break
                done, pending = ray.wait(pending, timeout=0.2)
                for ref in done:
                    states[runs.index(ref)] = self._result(ray, ref, runs.index(ref))
        except WorkerFailed as err:
            failure = err
        finally:
            try:
                ray.get(server.stop.remote())
                ready, _ = ray.wait(runs, num_returns=len(runs), timeout=JOIN_TIMEOUT_S * 2)
                for ref in ready:
                    try:
                        states[runs.index(ref)] = self._result(ray, ref, runs.index(ref))
                    except WorkerFailed as err:
                        failure = failure or err
                self._drain_server(ray, server)
            except WorkerFailed as err:
                failure = failure or err
            for i, state in enumerate(states):
                if state is not None:
                    self._save_worker_state(i, state)
            try:
                self.save()
            except WorkerFailed as err:
                failure = failure or err
            self._server = None
            for actor in workers + [server]:
                ray.kill(actor)
            ray.shutdown()
            self.logger.close()
        return self.finish(failure)

    def _result(self, ray, ref, worker_id: int):
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            raise WorkerFailed(f"worker {worker_id} failed:\n{err}") from None
        except ray.exceptions.RayActorError as err:
            raise WorkerFailed(f"worker {worker_id} died: {err}") from None

    def _worker_resume_state(self, worker_id: int) -> dict | None:
        """The worker's saved state, when it matches the checkpoint (as in the local backend)."""
        from Utils.checkpoint import CheckpointError, load_checkpoint
        path = os.path.join(self.run_dir, f"worker_{worker_id}.pth")
        if not (self.resumed and os.path.exists(path)):
            return None
        try:
            saved = load_checkpoint(path)
        except CheckpointError:
            return None
        return saved if saved.get("iteration") == int(self.counters[worker_id, ITERATIONS]) else None

    def _save_worker_state(self, worker_id: int, state: dict) -> None:
        from Utils.checkpoint import save_checkpoint
        path = os.path.join(self.run_dir, f"worker_{worker_id}.pth")
        try:
            save_checkpoint(state, path)
        except OSError as err:
            print(f"warning: worker {worker_id}: state not saved to {path}: {err.strerror or err}")

