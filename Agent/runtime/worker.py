"""The worker process loop, the same for every algorithm.

A worker owns one environment and one agent, which its algorithm's registry record
(:class:`Agent.registry.Algorithm`, handed in) makes. Each iteration it lets the agent sync with the global network, steps the
environment for the agent's rollout length (the agent chooses actions and
records what happened), reports finished games, and then lets the agent learn
(one or more updates of the shared network). Everything that is not the
algorithm lives here: seeding, the environment, counters, messages to the main
process, the step budget, reward scaling (``reward_scale``; reported scores stay raw), and
the worker's own state for an exact resume.

An agent is anything that satisfies :class:`Agent.interface.Agent`; it reaches the global
weights only through a :class:`Agent.interface.ParameterStore`, and does not import this module.
"""
from __future__ import annotations

import os
import random
import signal
import sys
import time
import traceback

import numpy as np
import torch

from Agent.interface import EPISODES, ITERATIONS, SAVING, STEPS, Agent
from Agent.runtime.messages import Episode, Iteration, Life, Started, WorkerError, WorkerWarning
from Agent.runtime.parameters import SharedParameters
from Utils.atari_wrappers import make_env
from Utils.env_state import env_state, restore_env_state
from Utils.checkpoint import read_worker_state, save_checkpoint
from Utils.interrupts import unblock_in_child

def worker_seed(seed: int, worker_id: int, iteration: int) -> int:
    """``seed + worker_id`` for a new run, as in the original; a run resumed without its
    workers' saved states draws new streams instead of repeating the first ones."""
    if iteration == 0:
        return seed + worker_id
    return int(np.random.SeedSequence([seed, worker_id, iteration]).generate_state(1)[0])


def run_worker(algorithm, worker_id: int, cfg, params, counters: torch.Tensor, stop_event, queue,
               state_path: str | None = None, resume_state: dict | None = None,
               main_pid: int | None = None) -> dict | None:
    """Act and learn until ``stop_event`` is set or the step budget is spent.

    On a clean stop the worker's own state (RNGs, environment, current observation and
    the agent's state: ACER's replay with ``cfg.save_replay``, A3C's LSTM state) is written
    to ``state_path`` (or, without one, returned), and ``resume_state`` (such a file, loaded)
    continues exactly there.
    """
    env, agent, rng, obs = start_worker(algorithm, worker_id, cfg, params, counters, resume_state)
    parent_pid = main_pid if main_pid is not None else os.getppid()
    reporter = Reporter(worker_id, counters, queue)
    # A worker whose main process died (kill -9) stops instead of running on as an orphan.
    while not stop_event.is_set() and os.getppid() == parent_pid:
        if cfg.total_steps and int(counters[:, STEPS].sum()) >= cfg.total_steps:
            break
        obs = rollout(agent, env, obs, cfg.reward_scale, reporter)
        stats = agent.learn()
        counters[worker_id, ITERATIONS] += 1
        queue.put(Iteration(worker_id, stats or {}, agent.memory_size()))
    state = None
    if os.getppid() == parent_pid:
        counters[worker_id, SAVING] = 1   # the main process waits for a worker that is saving
        state = worker_state(worker_id, counters, rng, env, obs, agent)
        save_worker_state(state, state_path, queue, worker_id)
    env.close()
    return state


def start_worker(algorithm, worker_id: int, cfg, params, counters, resume_state: dict | None):
    """Seed the worker, build its environment and agent, and start a new game or continue
    from ``resume_state``: ``(env, agent, rng, observation)``."""
    seed = worker_seed(cfg.seed, worker_id, int(counters[worker_id, ITERATIONS]))
    torch.manual_seed(seed)
    random.seed(seed)
    rng = np.random.default_rng(seed)
    env = make_env(cfg.env_name, training=True, frame_stack=cfg.frame_stack)
    agent = algorithm.make_agent(cfg, params, counters, worker_id, env, rng)
    if resume_state is None:
        obs, _ = env.reset(seed=seed)
        agent.observe(obs, first=True)
        return env, agent, rng, obs
    restore_env_state(env, resume_state["env"])
    obs = resume_state["obs"].numpy()
    # files written before agents had their own entry kept the replay at the top level
    agent.load_state_dict(resume_state.get("agent", resume_state), obs)
    torch.set_rng_state(resume_state["torch_rng"])
    rng.bit_generator.state = resume_state["numpy_rng"]
    random.setstate(_python_rng(resume_state["python_rng"]))
    return env, agent, rng, obs


class Reporter:
    """Counts a worker's steps and games and sends the main process what happened."""

    def __init__(self, worker_id: int, counters: torch.Tensor, queue):
        self.worker_id, self.counters, self.queue = worker_id, counters, queue
        self.first_step = True

    def step(self, info: dict) -> None:
        """After each environment step: the first step's time (for the start-up time the main
        process reports), a finished life (Atari: the original's episode) or game."""
        i, counters = self.worker_id, self.counters
        if self.first_step:
            self.queue.put(Started(i, time.time()))
            self.first_step = False
        counters[i, STEPS] += 1
        if "life" in info:
            life = info["life"]
            self.queue.put(Life(i, float(life["r"]), int(life["l"]),
                                int(counters[:, STEPS].sum()), bool(life["game_over"])))
        if "episode" in info:
            counters[i, EPISODES] += 1
            self.queue.put(Episode(i, float(info["episode"]["r"]), int(info["episode"]["l"]),
                                   int(counters[:, STEPS].sum())))


def rollout(agent: Agent, env, obs, reward_scale: float, reporter: Reporter):
    """The agent's rollout: it acts ``rollout_length`` steps and records them (a finished
    episode starts the next); returns the observation the next rollout starts from."""
    agent.begin_rollout()
    for _ in range(agent.rollout_length):
        action = agent.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        agent.record(action, reward * reward_scale, terminated, truncated, obs)
        reporter.step(info)
        done = terminated or truncated
        if done:
            obs, _ = env.reset()
        agent.observe(obs, first=done)
    return obs


def worker_state(worker_id: int, counters, rng, env, obs, agent: Agent) -> dict:
    """Everything this worker needs to continue exactly: RNGs, environment, observation, agent."""
    return {"format_version": 1, "worker_id": worker_id,
            "iteration": int(counters[worker_id, ITERATIONS]),
            "torch_rng": torch.get_rng_state(), "numpy_rng": rng.bit_generator.state,
            "python_rng": list(random.getstate()), "env": env_state(env),
            "obs": torch.from_numpy(np.array(obs)), "agent": agent.state_dict()}


def save_worker_state(state: dict, state_path: str | None, queue, worker_id: int) -> None:
    """Write the worker's state; a failed write is reported (a resume then starts it afresh)."""
    if state_path is None:
        return
    try:
        save_checkpoint(state, state_path)
    except OSError as err:
        queue.put(WorkerWarning(worker_id, f"state not saved to {state_path}: {err.strerror or err}"))


def worker_entry(algorithm, worker_id: int, cfg, global_net, average_net, optimizer, counters,
                 stop_event, queue, state_path: str, resume: bool, main_pid: int) -> None:
    """Process target: run the worker; on an exception, report it with the worker id.

    It lives here, not beside the trainer, so that a spawned worker imports only what it
    runs (not the main process's logging stack).

    With ``resume``, the worker continues from its saved state at ``state_path`` by
    :func:`Utils.checkpoint.read_worker_state`'s rule (the same as Ray's). ``main_pid`` is
    the process that started this worker: when it is gone, the worker stops.
    """
    # Ctrl-C reaches the whole process group: only the main process handles it (and SIGTERM),
    # and stops the workers through the stop event so that a final checkpoint is consistent.
    # They were blocked while it started (Agent.runtime.trainer.start_ignoring_interrupts): ignored
    # now, they can be unblocked (one pending is discarded).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    unblock_in_child()
    _die_with_parent(main_pid)
    torch.set_num_threads(1)
    try:
        resume_state = None
        if resume:
            resume_state, warning = read_worker_state(
                state_path, int(counters[worker_id, ITERATIONS]), algorithm.fresh_worker)
            if warning:
                queue.put(WorkerWarning(worker_id, warning))
        params = SharedParameters(global_net, average_net, optimizer, cfg.polyak)
        run_worker(algorithm, worker_id, cfg, params, counters, stop_event, queue, state_path, resume_state,
                   main_pid)
    except BaseException:
        queue.put(WorkerError(worker_id, traceback.format_exc()))
        sys.exit(1)


class StopFlag:
    """The local workers' ``stop_event``: one byte in shared memory, set by the main process and
    read by the workers without a lock. A ``multiprocessing.Event`` takes a lock even to read,
    and a worker killed while holding it would block the main process's ``set`` for good."""

    def __init__(self):
        self._flag = torch.zeros(1, dtype=torch.uint8).share_memory_()

    def set(self) -> None:
        self._flag.fill_(1)

    def is_set(self) -> bool:
        return bool(self._flag[0])


def _die_with_parent(main_pid: int) -> None:
    """Linux: have the kernel kill this worker the moment its main process dies (kill -9), even
    while it is still starting up; elsewhere the worker loop notices at its next iteration."""
    if os.getppid() != main_pid:  # the main process died while this one was starting
        os._exit(1)
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != main_pid:  # the main process died before the request took effect
        os._exit(1)


def _python_rng(saved: list) -> tuple:
    """``random.getstate()`` as stored (lists) back to the tuple ``setstate`` takes."""
    version, internal, gauss = saved
    return version, tuple(internal), gauss
