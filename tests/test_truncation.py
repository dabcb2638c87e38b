"""Time-limit truncations in ACER: the replay keeps the final observation, and every update
(replayed ones too) bootstraps from V(x_final) under the weights it uses, as Algorithm 2 does
with V(x_k). Checked against a slow reference in the paper's notation on a real CartPole
stream cut by a short time limit, after the global weights have changed."""
import queue

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import RecordEpisodeStatistics

from Agent.acer.agent import ACERAgent, ContinuousACERAgent
from Agent.interface import N_COUNTERS
from Agent.runtime.parameters import SharedParameters
from Agent.acer.replay import ReplayMemory
from Agent.runtime.worker import Reporter, rollout
from NN.networks import acer_network
from Utils.network_spec import NetworkSpec
from NN.shared_adam import SharedAdam
from Utils.atari_wrappers import box_bounds
from Utils.config import Config

from test_acer_math import slow_g_and_k, slow_projection

K, LIMIT = 5, 7   # time limit 7: the first cut is after stream step 6, mid-trajectory 1


class FinalObservations(gym.Wrapper):
    """Keeps the observation each time-limit cut returned (what the replay must rebuild)."""

    def __init__(self, env):
        super().__init__(env)
        self.finals = []

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if truncated and not terminated:
            self.finals.append(np.array(obs, dtype=np.float32))
        return obs, reward, terminated, truncated, info


def agent_on(env_id: str, seed: int = 0):
    """A real ACER agent on ``env_id`` cut at LIMIT steps, that environment and the final
    observations it returns."""
    torch.manual_seed(seed)
    cfg = Config(env_name=env_id, n_workers=1, k=K, total_memory_size=200)
    env = recorder = FinalObservations(RecordEpisodeStatistics(gym.make(env_id, max_episode_steps=LIMIT)))
    if isinstance(env.action_space, gym.spaces.Box):
        env = gym.wrappers.ClipAction(env)
    bounds = box_bounds(env)
    shape = env.observation_space.shape
    n = env.action_space.shape[0] if bounds is not None else int(env.action_space.n)
    nets = [acer_network(NetworkSpec.of(shape, n, cfg.to_dict(), bounds)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    params = SharedParameters(nets[0], nets[1], SharedAdam(nets[0].parameters()), cfg.polyak)
    counters = torch.zeros(1, N_COUNTERS, dtype=torch.int64)
    agent_class = ACERAgent if bounds is None else ContinuousACERAgent
    return agent_class(cfg, params, counters, 0, env, np.random.default_rng(seed)), env, recorder.finals


def play_rollouts(agent, env, n: int, seed: int = 0) -> None:
    obs, _ = env.reset(seed=seed)
    agent.observe(obs, first=True)
    reporter = Reporter(0, agent.counters, queue.SimpleQueue())
    for _ in range(n):
        obs = rollout(agent, env, obs, 1.0, reporter)


def change_global_weights(agent) -> None:
    """What other workers' updates do between acting and replaying."""
    with torch.no_grad():
        for p in agent.params.global_params:
            p.add_(0.3 * torch.randn_like(p))


def slow_retrace_with_truncations(r, d, cut, v_final, q, f, mu, a, v_xk, gamma):
    """Q_ret by the paper's recursion, scalar by scalar; a terminal step restarts from r_i,
    a time-limit cut from r_i + gamma * V(x_final) (``v_final``: one value per cut)."""
    T, finals = len(r), iter(v_final)
    values = {i: float(next(finals)) for i in range(T) if cut[i]}
    q_ret = float(v_xk)
    out = [0.0] * T
    for i in reversed(range(T)):
        if d[i]:
            q_ret = values.get(i, 0.0)
        q_ret = float(r[i]) + gamma * q_ret
        out[i] = q_ret
        V_i = sum(float(f[i, b]) * float(q[i, b]) for b in range(f.shape[1]))
        rho_i = float(f[i, a[i]]) / float(mu[i, a[i]])
        q_ret = min(1.0, rho_i) * (q_ret - float(q[i, a[i]])) + V_i
    return torch.tensor(out)


def slow_acer_loss(agent, trajectory, finals: np.ndarray) -> torch.Tensor:
    """ACER's per-step objective (Wang et al. 2016, Algorithm 2) averaged over the k steps,
    written loop by loop, with V(x_final) of the true final observations under the agent's
    current local weights."""
    cfg, net = agent.cfg, agent.local_net
    states = torch.from_numpy(trajectory["states"])
    logits, q = net(states)
    with torch.no_grad():
        f_avg = torch.softmax(agent.params.average_net(states[:-1])[0], -1)
        f_all = torch.softmax(logits.detach(), -1)
        v_xk = float((f_all[-1] * q.detach()[-1]).sum())
        lf, qf = net(torch.from_numpy(finals))
        v_final = (torch.softmax(lf, -1) * qf).sum(-1)
    a = torch.from_numpy(trajectory["actions"])
    mu = torch.from_numpy(trajectory["mus"])
    f = f_all[:-1]
    q_ret = slow_retrace_with_truncations(trajectory["rewards"], trajectory["dones"],
                                          trajectory["truncated"], v_final, q.detach()[:-1], f,
                                          mu, a, v_xk, cfg.gamma)
    total = 0.0
    for i in range(K):
        g_i, k_i = slow_g_and_k(f[i], q.detach()[i], mu[i], int(a[i]), float(q_ret[i]), f_avg[i])
        z_i = slow_projection(g_i, k_i, cfg.delta)
        f_i = torch.softmax(logits[i], -1)
        h_i = -(f_i * torch.log(f_i)).sum()
        total = total + (-(z_i * f_i).sum() + cfg.critic_coef * (q_ret[i] - q[i, a[i]]) ** 2
                         - cfg.entropy_coef * h_i) / K
    return total


def gradient(agent, loss) -> list[torch.Tensor]:
    for p in agent.local_params:
        p.grad = None
    loss.backward()
    return [p.grad.clone() for p in agent.local_params]


def test_replayed_truncation_bootstraps_with_the_current_weights():
    agent, env, finals = agent_on("CartPole-v1", seed=3)
    play_rollouts(agent, env, 3)
    trajectory = agent.replay.trajectory(1)               # stream steps 5..9, cut after step 6
    assert trajectory["truncated"].tolist() == [False, True, False, False, False], \
        "this seed's CartPole must survive to the time limit"
    assert trajectory["dones"][1]
    np.testing.assert_array_equal(trajectory["final_states"], finals[:1])
    with torch.no_grad():                                 # the acting weights' V(x_final)
        stale_value = agent.values(torch.from_numpy(finals[0])[None])[0]

    change_global_weights(agent)
    agent.sync()                                          # a replayed update's weights
    fast = agent.loss(trajectory)[0]
    grads = gradient(agent, fast)
    slow = slow_acer_loss(agent, trajectory, np.stack(finals[:1]))
    torch.testing.assert_close(fast.detach(), slow.detach())
    for g_fast, g_slow in zip(grads, gradient(agent, slow)):
        torch.testing.assert_close(g_fast, g_slow)

    # the old target, r + gamma * V(x_final) under the acting weights, differs: the test can
    # tell a stale bootstrap from a current one
    rewards = trajectory["rewards"].copy()
    rewards[1] += agent.cfg.gamma * float(stale_value)
    stale = dict(trajectory, final_states=trajectory["final_states"][:0],
                 truncated=np.zeros(K, bool), rewards=rewards)
    assert not torch.allclose(agent.loss(stale)[0], fast)


def test_continuous_truncation_target_uses_the_current_critic():
    agent, env, finals = agent_on("Pendulum-v1", seed=0)
    play_rollouts(agent, env, 2)                           # Pendulum never terminates
    trajectory = agent.replay.trajectory(1)
    assert trajectory["truncated"].tolist() == [False, True, False, False, False]
    change_global_weights(agent)
    agent.sync()
    with torch.no_grad():
        expected = torch.from_numpy(trajectory["rewards"]).clone()
        expected[1] += agent.cfg.gamma * agent.local_net.value(torch.from_numpy(finals[0])[None])[0]
        got = agent.rewards_with_truncations(
            trajectory, lambda: agent.values(torch.from_numpy(trajectory["final_states"])))
    torch.testing.assert_close(got, expected)
    assert agent.update(trajectory) is not None


def image_memory(capacity=3, k=4, stack=4):
    return ReplayMemory(capacity=capacity, k=k, frame_shape=(2, 2), mu_width=2, stack=stack)


def frame(t: int) -> np.ndarray:
    return np.full((2, 2), t % 256, np.uint8)


def test_final_state_of_a_frame_stack_is_the_stack_shifted_by_the_final_frame():
    memory = image_memory()
    for t in range(12):
        memory.add_frame(frame(t), first=t in (0, 7))
        cut = t == 6                                      # the episode 0..6 hits its time limit
        memory.add_transition(0, 1.0, cut, np.array([0.5, 0.5]), frame(100) if cut else None)
    memory.add_frame(frame(12), first=False)
    trajectory = memory.trajectory(1)                     # steps 4..7
    assert trajectory["truncated"].tolist() == [False, False, True, False]
    (final,) = trajectory["final_states"]
    assert [int(f[0, 0]) for f in final] == [4, 5, 6, 100]
    # the next state starts a new episode: padded with its own first frame
    assert [int(f[0, 0]) for f in trajectory["states"][3]] == [7, 7, 7, 7]


def test_final_frames_survive_a_save_and_leave_with_the_ring():
    memory = image_memory(capacity=2, k=2, stack=2)      # ring of 2*2 + 2 + 1 = 7 slots
    for t in range(4):
        memory.add_frame(frame(t), first=t in (0, 2))
        memory.add_transition(0, 0.0, t == 1, np.array([0.5, 0.5]), frame(50) if t == 1 else None)
    memory.add_frame(frame(4), first=False)
    copy = image_memory(capacity=2, k=2, stack=2)
    copy.load_state_dict(memory.state_dict())
    for saved in (memory, copy):
        np.testing.assert_array_equal(saved.trajectory(0)["final_states"][0][:, 0, 0], [1, 50])
    for t in range(4, 20):                                # step 1 is overwritten: its frame goes
        memory.add_transition(0, 0.0, False, np.array([0.5, 0.5]))
        memory.add_frame(frame(t + 1), first=False)
    assert memory.final_frames == {}


def test_replay_saved_with_acting_time_values_resumes_with_its_old_targets():
    """A replay file written before this change holds ``truncation_values`` (V(x_final) at
    acting time): they fold into the rewards of those (terminal) steps."""
    memory = image_memory()
    for t in range(8):
        memory.add_frame(frame(t), first=t == 0)
        memory.add_transition(0, 1.0, t == 5, np.array([0.5, 0.5]))
    memory.add_frame(frame(8), first=False)
    state = memory.state_dict()
    for key in ("truncated", "final_steps", "final_frames"):
        del state[key]
    values = torch.zeros(len(state["rewards"]))
    values[5] = 2.0
    state["truncation_values"] = values
    old = image_memory()
    with pytest.raises(ValueError, match="gamma"):
        old.load_state_dict(state)
    old.load_state_dict(state, gamma=0.5)
    trajectory = old.trajectory(1)
    assert trajectory["rewards"].tolist() == [1.0, 2.0, 1.0, 1.0]   # 1 + 0.5 * 2 at step 5
    assert trajectory["dones"].tolist() == [False, True, False, False]
    assert not trajectory["truncated"].any() and len(trajectory["final_states"]) == 0
