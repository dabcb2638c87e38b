"""Replay memory size: bytes per stored transition and the projected full budget.

Fills one worker's replay (frames from the real Pong pipeline) and reports the
bytes per transition it holds, measured both from the arrays and as the
process's resident-memory growth, and the projected size of the whole 6e5
transition replay (all workers together), against the original's full-stack
storage (4*84*84 bytes per step).

    python bench/replay_memory.py [--transitions 60000] [--n_workers 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from Agent.replay_memory import ReplayMemory  # noqa: E402
from Utils.atari_wrappers import make_env  # noqa: E402
from Utils.config import Config  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--transitions", type=int, default=60_000, help="transitions to store (one worker)")
    p.add_argument("--n_workers", type=int, default=2)
    p.add_argument("--env_name", default="PongNoFrameskip-v4")
    args = p.parse_args()
    cfg = Config(n_workers=args.n_workers)
    env = make_env(args.env_name)
    n_actions = env.action_space.n
    capacity = args.transitions // cfg.k
    process = psutil.Process()
    rss0 = process.memory_info().rss
    memory = ReplayMemory(capacity, cfg.k, (84, 84), n_actions, stack=cfg.frame_stack)
    # A real frame stream: 500 observed frames, cycled (the emulator is not what is measured).
    obs, _ = env.reset(seed=0)
    frames = []
    for _ in range(500):
        obs, *_ = env.step(env.action_space.sample())
        frames.append(obs[-1].copy())
    mu = np.full(n_actions, 1.0 / n_actions, dtype=np.float32)
    t0 = time.time()
    memory.add_frame(frames[0], True)
    for t in range(memory.size):
        memory.add_transition(t % n_actions, 0.0, False, mu)
        memory.add_frame(frames[t % len(frames)], False)
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


if __name__ == "__main__":
    main()
