"""--precision bf16: the learner's update in bfloat16 agrees with float32 on a real Pong batch
with the real (trained) network, and the native-support check refuses a CPU without bf16."""
import os
import queue

import numpy as np
import pytest
import torch

from Agent.acer.agent import ACERAgent
from Agent.runtime.parameters import SharedParameters
from Agent.interface import N_COUNTERS
from Agent.runtime.worker import Reporter, rollout
from NN.networks import acer_network
from Utils.network_spec import NetworkSpec
from NN.shared_adam import SharedAdam
from Utils.atari_wrappers import make_env
from Utils.checkpoint import load_checkpoint
from Utils.config import Config
from Utils.precision import FORCE_VARIABLE, native_bf16

from conftest import ROOT

PONG_WEIGHTS = os.path.join(ROOT, "Pre-Trained Weights", "Pong_acer.pth")
# Bounds chosen from measurement (shipped Pong weights, the 12 real rollouts this test's seed
# gives, of which it checks the first 5): per parameter tensor the gradient cosine was 0.965 at
# worst over those 5 (the first convolution's weight; 0.90 at worst over all 12, its bias) and
# above 0.99 for every layer after the second; the whole gradient's cosine 0.980 at worst; the
# policy's probabilities (those >= 0.01) 8% off at most, relative (logits 0.08 absolute). This
# is bfloat16's 8-bit mantissa on a trained, peaked policy, and the reason for the Pong parity
# run in docs/speed.md.
MIN_TENSOR_COSINE = 0.95
MIN_WHOLE_COSINE = 0.975
MAX_PROB_RELATIVE_ERROR = 0.10


def pong_agent(precision: str, weights: dict, seed: int = 0):
    cfg = Config(n_workers=1, precision=precision, total_memory_size=2000)
    env = make_env(cfg.env_name, training=True, frame_stack=cfg.frame_stack)
    obs_shape, n_actions = env.observation_space.shape, int(env.action_space.n)
    global_net = acer_network(NetworkSpec.of(obs_shape, n_actions, cfg.to_dict()))
    average_net = acer_network(NetworkSpec.of(obs_shape, n_actions, cfg.to_dict()))
    global_net.load_state_dict(weights["model"])
    average_net.load_state_dict(weights.get("average_model", weights["model"]))
    params = SharedParameters(global_net, average_net, SharedAdam(global_net.parameters()), cfg.polyak)
    counters = torch.zeros(1, N_COUNTERS, dtype=torch.int64)
    agent = ACERAgent(cfg, params, counters, 0, env, np.random.default_rng(seed))
    return agent, env


def real_rollouts(agent, env, n: int, seed: int = 0) -> list[dict]:
    """``n`` trajectories of k steps acted by the agent's own (trained) policy in real Pong."""
    obs, _ = env.reset(seed=seed)
    agent.observe(obs, first=True)
    trajectories, reporter = [], Reporter(0, agent.counters, queue.SimpleQueue())
    for _ in range(n):
        obs = rollout(agent, env, obs, 1.0, reporter)   # the worker loop's own rollout
        trajectories.append(agent.replay.latest())
    return trajectories


def gradients(agent, trajectory) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The local network's gradient of ACER's loss, and the policy on the trajectory."""
    for p in agent.local_params:
        p.grad = None
    loss, _ = agent.loss(trajectory)
    loss.backward()
    with torch.no_grad():
        states = torch.from_numpy(trajectory["states"])
        logits, _ = agent.local_net(states, bf16_trunk=agent.bf16)
    return [p.grad.detach().clone() for p in agent.local_params], torch.softmax(logits, -1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bfloat16")
def test_bf16_update_agrees_with_fp32_on_real_pong():
    torch.manual_seed(0)
    weights = load_checkpoint(PONG_WEIGHTS)
    fp32, env = pong_agent("fp32", weights)
    bf16, env16 = pong_agent("bf16", weights)
    env16.close()
    try:
        trajectories = real_rollouts(fp32, env, 5)
    finally:
        env.close()
    names = [name for name, _ in fp32.local_net.named_parameters()]
    for trajectory in trajectories:
        grads32, probs32 = gradients(fp32, trajectory)
        grads16, probs16 = gradients(bf16, trajectory)
        for name, g32, g16 in zip(names, grads32, grads16):
            assert g16.dtype == torch.float32 and g16.shape == g32.shape
            assert cosine(g32, g16) >= MIN_TENSOR_COSINE, f"{name}: {cosine(g32, g16):.4f}"
        assert cosine(torch.cat([g.flatten() for g in grads32]),
                      torch.cat([g.flatten() for g in grads16])) >= MIN_WHOLE_COSINE
        norm32 = torch.sqrt(sum((g ** 2).sum() for g in grads32))
        norm16 = torch.sqrt(sum((g ** 2).sum() for g in grads16))
        assert abs(float(norm16 / norm32) - 1) < 0.10  # measured: 5.4% at worst
        kept = probs32 >= 0.01
        relative = ((probs16 - probs32).abs() / probs32)[kept]
        assert float(relative.max()) <= MAX_PROB_RELATIVE_ERROR
    # the bf16 agent acts in float32
    obs = torch.from_numpy(trajectories[0]["states"][:1])
    with torch.no_grad():
        torch.testing.assert_close(fp32.local_net(obs)[0], bf16.local_net(obs)[0],
                                   rtol=1e-5, atol=1e-5)


def test_bf16_update_leaves_weights_and_adam_in_fp32():
    weights = load_checkpoint(PONG_WEIGHTS)
    agent, env = pong_agent("bf16", weights)
    try:
        (trajectory,) = real_rollouts(agent, env, 1)
    finally:
        env.close()
    before = [p.detach().clone() for p in agent.params.global_params]
    assert agent.update(trajectory) is not None
    assert all(p.dtype == torch.float32 for p in agent.params.global_params)
    assert all(p.dtype == torch.float32 for p in agent.params.average_params)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.params.global_params))
    state = agent.params.optimizer.state_dict()
    assert all(m.dtype == torch.float32 for m in state["exp_avg"] + state["exp_avg_sq"])


def test_forced_answer_of_the_native_check(monkeypatch):
    monkeypatch.setenv(FORCE_VARIABLE, "0")
    assert native_bf16() is False
    monkeypatch.setenv(FORCE_VARIABLE, "1")
    assert native_bf16() is True


def test_bf16_on_a_cpu_without_it_exits_2_and_writes_nothing(tmp_path, main_cli, monkeypatch):
    monkeypatch.setenv(FORCE_VARIABLE, "0")
    result = main_cli(["--do_train", "--precision", "bf16", "--n_workers", "1",
                       "--total_steps", "100"], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "native bfloat16" in lines[0] and "--precision fp32" in lines[0]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args,reason", [
    (["--env_name", "CartPole-v1"], "vector observations"),
    (["--algo", "a3c"], "--algo acer only"),
])
def test_bf16_refused_where_it_does_not_apply(tmp_path, main_cli, monkeypatch, args, reason):
    monkeypatch.setenv(FORCE_VARIABLE, "1")
    result = main_cli(["--do_train", "--precision", "bf16", "--n_workers", "1", *args], tmp_path)
    assert result.returncode == 2 and reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []
