"""The actor-learner mode's learner: milliseconds per ACER update against ``--learner_batch``.

    python bench/learner_batch.py [--env_name PongNoFrameskip-v4] [--batches 1 2 4 8 16]
                                  [--threads 1] [--repeats 20]

Fills one replay with real rollouts of the untrained policy (worker 0 of a run, built and
stepped as training does, ``bench/harness.py``), then times the agent's own
``ACERAgent.update_batch``, which the actor-learner mode's learner calls for each update
(forward and backward of B trajectories of k steps, the average network's forward, the Adam
step and the Polyak step), on B trajectories drawn from it, for each B, in this process with ``--threads`` intra-op threads. Prints per B:
ms per update, ms per trajectory, and the learner's limit in agent steps/s,
k B / ((1 + replay_ratio) U_B), the rate at which one learner keeps up with its actors.
Numbers are for this machine's CPU; a quiet machine is needed for them to mean anything.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from Utils.config import default
from bench.harness import RunShell, Worker, bench_config


def filled_agent(env_name: str, rollouts: int):
    """An ACER agent on ``env_name``, built as a run's worker 0 is, whose replay holds
    ``rollouts`` trajectories of its own real rollouts (``Agent.runtime.worker.rollout``)."""
    cfg = bench_config("acer", {"env_name": env_name})
    run = RunShell(cfg)
    worker = Worker(cfg, run.params(), run.trainer.counters)
    try:
        for _ in range(rollouts):
            worker.rollout()
    finally:
        worker.close()
    return cfg, worker.agent, run


def time_batches(agent, batches: list[int], repeats: int, rng: np.random.Generator) -> dict:
    """Median seconds per ``update_batch`` for each batch size (after one untimed update)."""
    out = {}
    for b in batches:
        samples = []
        for r in range(repeats + 1):
            trajectories = [agent.replay.sample(rng) for _ in range(b)]
            t = time.perf_counter()
            agent.update_batch(trajectories)
            if r:
                samples.append(time.perf_counter() - t)
        out[b] = float(np.median(samples))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env_name", default=default("env_name"))
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg, agent, run = filled_agent(args.env_name, rollouts=max(args.batches) + 4)
    try:
        seconds = time_batches(agent, args.batches, args.repeats, np.random.default_rng(1))
    finally:
        run.close()
    updates_per_rollout = 1 + cfg.replay_ratio
    print(f"{args.env_name}, k {cfg.k}, replay ratio {cfg.replay_ratio:g}, {args.threads} thread(s), "
          f"torch {torch.__version__}; median of {args.repeats} updates")
    print("batch | ms per update | ms per trajectory | learner limit (agent steps/s)")
    for b, s in seconds.items():
        limit = cfg.k * b / (updates_per_rollout * s)
        print(f"{b:5d} | {1e3 * s:13.1f} | {1e3 * s / b:17.1f} | {limit:10.0f}")


if __name__ == "__main__":
    main()
