"""Replay memory size: bytes per stored transition, and a whole run's memory at full replay.

1. Fills one replay (the frames of a real worker's rollouts on Pong, cycled) and reports the bytes
   per transition it holds, measured both from the arrays and as the process's
   resident-memory growth, and the projected size of the whole 6e5-transition
   replay, against the original's full-stack storage (4*84*84 bytes per step).
2. ``--full_run``: the layout of a real training run with the full budget: the
   trainer's shared networks and Adam in this process, ``--n_workers`` spawned
   worker processes, each a worker built as training builds it (``bench/harness.py``) with
   its replay of 6e5 / n_workers transitions, filled to capacity (real frames, cycled, so
   that filling takes seconds rather than the hour of play it would take), then a few of
   its real iterations (the worker's ``rollout``, the agent's ``learn``). It reports the proportional set size (PSS:
   shared pages split between the processes that map them) of the whole process
   tree, which is what the run costs the machine.

    python bench/replay_memory.py [--transitions 60000] [--n_workers 2] [--full_run]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import psutil
import torch

from Agent.acer.replay import ReplayMemory
from Agent.runtime.parameters import SharedParameters
from Utils.config import default
from bench.harness import RunShell, Worker, bench_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMES = 500   # real frames, cycled to fill a replay


def real_frames(worker: Worker, steps: int = FRAMES) -> np.ndarray:
    """The newest frames of ``steps`` or more states of the worker's own real rollouts
    (``Agent.runtime.worker.rollout``), as its replay stored them."""
    for _ in range(-(-steps // worker.agent.rollout_length)):
        worker.rollout()
    replay = worker.agent.replay
    return replay.frames[:min(replay.n_frames, replay.size)].copy()


def fill(replay: ReplayMemory, frames: np.ndarray, n_actions: int, steps: int) -> None:
    """Write ``steps`` transitions of cycled real ``frames`` into ``replay`` (storage only:
    the memory is what is measured, not the play)."""
    mu = np.full(replay.mus.shape[1], 1.0 / n_actions, dtype=np.float32)
    for t in range(steps):
        replay.add_transition(t % n_actions, 0.0, False, mu)
        replay.add_frame(frames[t % len(frames)], False)


def fill_worker(worker_id, cfg, global_net, average_net, optimizer, counters, ready, stop_event):
    """Worker ``worker_id`` of the run, built as training builds it: fill its replay to
    capacity, run a few of its real iterations (``rollout`` and the agent's ``learn``), wait."""
    torch.set_num_threads(1)
    params = SharedParameters(global_net, average_net, optimizer, cfg.polyak)
    worker = Worker(cfg, params, counters, worker_id)
    replay = worker.agent.replay
    fill(replay, real_frames(worker), worker.env.action_space.n, replay.size)
    # the filler ends as an episode does; the real game goes on from the worker's observation
    replay.add_transition(0, 0.0, True, replay.mus[0].copy())
    worker.agent.observe(worker.obs, first=True)
    for _ in range(5):  # real iterations: act on the real game, on- and off-policy updates
        worker.rollout()
        worker.agent.learn()
    ready.put((worker_id, len(replay), replay.capacity, os.getpid()))
    stop_event.wait()
    worker.close()


def tree_pss(pid: int) -> dict[int, int]:
    """PSS in bytes of a process and all its descendants."""
    root = psutil.Process(pid)
    out = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            out[p.pid] = p.memory_full_info().pss
        except psutil.Error:
            pass
    return out


def full_run(n_workers: int, env_name: str) -> None:
    """Measure the whole process tree of a run holding the full default replay."""
    cfg = bench_config("acer", {"env_name": env_name, "n_workers": n_workers})
    run = RunShell(cfg)
    trainer = run.trainer
    ctx = torch.multiprocessing.get_context("spawn")
    ready, stop_event = ctx.Queue(), ctx.Event()
    os.environ["OMP_NUM_THREADS"] = "1"
    workers = [ctx.Process(target=fill_worker, args=(i, cfg, trainer.global_net, trainer.average_net,
                                                     trainer.optimizer, trainer.counters, ready, stop_event))
               for i in range(n_workers)]
    t0 = time.time()
    try:
        for w in workers:
            w.start()
        reports = [ready.get(timeout=1800) for _ in workers]
        fill_s = time.time() - t0
        pss = tree_pss(os.getpid())
        total = sum(pss.values())
        for worker_id, trajectories, capacity, pid in sorted(reports):
            print(f"worker {worker_id}: replay {trajectories}/{capacity} trajectories "
                  f"({trajectories * cfg.k} transitions), PSS {pss.get(pid, 0) / 2**30:.2f} GiB")
        print(f"main process PSS {pss[os.getpid()] / 2**30:.2f} GiB; other processes "
              f"{(total - pss[os.getpid()] - sum(pss.get(r[3], 0) for r in reports)) / 2**30:.2f} GiB")
        print(f"full run, {n_workers} workers, replay {cfg.total_memory_size:.0e} transitions: "
              f"total PSS {total / 2**30:.2f} GiB ({total / 1e9:.2f} GB; target < 6 GB), "
              f"ready after {fill_s:.0f} s")
    finally:
        stop_event.set()
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.terminate()
        run.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--transitions", type=int, default=60_000, help="transitions to store (one worker)")
    p.add_argument("--n_workers", type=int, default=2)
    p.add_argument("--env_name", default=default("env_name"))
    p.add_argument("--full_run", action="store_true",
                   help="also measure a whole run's PSS with the full 6e5 replay (needs ~5 GB)")
    args = p.parse_args()
    torch.set_num_threads(1)   # as a worker acts
    cfg = bench_config("acer", {"env_name": args.env_name, "n_workers": args.n_workers})
    # A real frame stream: the frames of a worker's real rollouts, cycled (the emulator is not
    # what is measured).
    run = RunShell(cfg)
    worker = Worker(cfg, run.params(), run.trainer.counters)
    frames, n_actions = real_frames(worker), int(worker.env.action_space.n)
    worker.close()
    run.close()
    del worker, run
    capacity = args.transitions // cfg.k
    process = psutil.Process()
    rss0 = process.memory_info().rss
    memory = ReplayMemory(capacity, cfg.k, frames.shape[1:], n_actions, stack=cfg.frame_stack)
    t0 = time.time()
    memory.add_frame(frames[0], True)
    fill(memory, frames, n_actions, memory.size)
    fill_s = time.time() - t0
    rss_growth = process.memory_info().rss - rss0
    per_step = memory.nbytes_per_transition()
    total = cfg.total_memory_size
    print(f"worker replay: {len(memory)} trajectories of {cfg.k} steps ({memory.size} step slots), "
          f"filled in {fill_s:.1f} s")
    print(f"bytes per transition (arrays): {per_step:.0f} B  (target <= 7500 B)")
    print(f"bytes per transition (RSS growth): {rss_growth / memory.size:.0f} B")
    print(f"full replay of {total:.0e} transitions over {args.n_workers} workers: "
          f"{per_step * total / 2**30:.2f} GiB projected "
          f"(original, one 4x84x84 stack per step: {4 * 84 * 84 * total / 2**30:.2f} GiB)")
    if args.full_run:
        del memory
        full_run(args.n_workers, args.env_name)


if __name__ == "__main__":
    main()
