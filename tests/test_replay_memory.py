"""Replay memory: rebuilt stacks equal the observations the real game produced."""
import numpy as np
import pytest

from Agent.acer.replay import ReplayMemory
from Utils.atari_wrappers import make_env


def fill_from_game(env_id, capacity, k, steps, seed=0):
    env = make_env(env_id)
    n_actions = env.action_space.n
    memory = ReplayMemory(capacity, k, (84, 84), n_actions, stack=4)
    obs, _ = env.reset(seed=seed)
    seen, actions, dones = [obs], [], []
    memory.add_frame(obs[-1], first=True)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        a = int(rng.integers(n_actions))
        mu = rng.dirichlet(np.ones(n_actions)).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(a)
        done = terminated or truncated
        memory.add_transition(a, reward, done, mu)
        actions.append(a)
        dones.append(done)
        if done:
            obs, _ = env.reset()
        memory.add_frame(obs[-1], first=done)
        seen.append(obs)
    env.close()
    return memory, seen, actions, dones


def test_stacks_equal_observations_across_episode_ends_and_ring_wrap():
    k, capacity = 20, 6
    memory, seen, actions, dones = fill_from_game("BreakoutNoFrameskip-v4", capacity, k, 1500)
    lo, hi = memory._range()
    assert memory.n_frames > memory.size          # the ring wrapped
    assert hi - lo + 1 == capacity == len(memory)
    crossing = 0
    for n in range(lo, hi + 1):
        traj = memory.trajectory(n)
        steps = slice(n * k, n * k + k)
        assert np.array_equal(traj["states"], np.stack(seen[n * k: n * k + k + 1]))
        assert traj["actions"].tolist() == actions[steps]
        assert traj["dones"].tolist() == dones[steps]
        crossing += any(dones[steps])
    assert crossing >= 2                            # episode boundaries inside trajectories
    with pytest.raises(IndexError):
        memory.trajectory(lo - 1)


def test_sample_is_uniform_over_stored_trajectories_and_latest_is_newest():
    memory, seen, *_ = fill_from_game("PongNoFrameskip-v4", 5, 10, 200)
    assert np.array_equal(memory.latest()["states"][-1], seen[-1])
    rng = np.random.default_rng(0)
    lo, hi = memory._range()
    firsts = [memory.sample(rng)["states"][0] for _ in range(200)]
    hits = {n: sum(np.array_equal(f, seen[n * 10]) for f in firsts) for n in range(lo, hi + 1)}
    assert all(count > 15 for count in hits.values())


def test_vector_observations_and_capacity_accounting():
    memory = ReplayMemory(capacity=3, k=4, frame_shape=(2,), mu_width=2, stack=1, frame_dtype=np.float32)
    assert len(memory) == 0
    for t in range(40):
        memory.add_frame(np.array([t, -t], np.float32), first=(t == 0))
        if len(memory) == 0 and t >= 4:
            raise AssertionError("a complete trajectory must be available")
        truncated = t == 38  # a time limit cut the episode here: the final observation is kept
        memory.add_transition(t % 2, 1.0, truncated, np.array([0.5, 0.5]),
                              np.array([99, -99], np.float32) if truncated else None)
    memory.add_frame(np.array([40, -40], np.float32), first=False)
    assert len(memory) == 3
    traj = memory.latest()
    assert traj["states"][:, 0].tolist() == list(range(36, 41))
    assert traj["truncated"].tolist() == [False, False, True, False]
    assert traj["final_states"].tolist() == [[99.0, -99.0]]
    assert traj["dones"].tolist() == [False, False, True, False]
    with pytest.raises(RuntimeError):
        memory.add_frame(np.zeros(2), first=False)  # a frame needs a transition in between


def test_bytes_per_transition_within_budget():
    memory = ReplayMemory(capacity=100, k=20, frame_shape=(84, 84), mu_width=18, stack=4)
    assert memory.nbytes_per_transition() <= 7500
