"""Each agent's update, end to end, on one fixed small batch, against slow references.

For discrete ACER (CartPole-v1 shapes), continuous ACER (Pendulum-v1), recurrent and
feed-forward A3C (CartPole-v1) and Gaussian A3C (Pendulum-v1), the agent is built as a worker
builds it (``SharedParameters`` over a global network, ACER's average network and a
``SharedAdam``; the per-worker counter table), with fixed weights drawn from numpy (so that
they do not depend on the networks' initialisers) and a shared Adam that has already taken two
steps (non-zero moments, so its step depends on the gradient's size, not only its sign). Then
ONE update runs on a hand-made batch with an episode end in the middle:

* ACER: a trajectory dict of k = 4 steps (as the replay hands it), through ``agent.update``;
* A3C: a rollout of 5 steps acted through ``begin_rollout/act/record/observe``, then ``learn``.

What the update did is checked against a reference computed here, in float64, in the papers'
notation, with the loop-based references of tests/test_acer_math.py,
tests/test_continuous_math.py and tests/test_a3c_math.py (Wang et al. 2016: Retrace's Q_ret,
truncated importance weights with bias correction, the trust-region projection; Algorithm 2
for continuous actions; Mnih et al. 2016: n-step returns) on a float64 copy of the network:

1. the loss (discrete ACER: ``agent.loss``; A3C: the sum of the reported terms) and the
   statistics the agent reports;
2. the gradient handed to the global parameters (``params.step``, after norm clipping), and
   the pre-clip gradient norm the agent reports; the reference clips by hand;
3. the global parameters after the one shared-Adam step (Adam's formula, by hand), and for
   ACER the average network after the Polyak step (by hand);
4. a few literal golden numbers computed once (``GOLDEN``), so that a silent change of the
   math shows even if the implementation and the reference changed together. They depend on
   torch's float32 kernels only to about 1e-6 relative; if one of them fails after an
   intended change of the math, recompute them
   (``GOLDEN_PRINT=1 python -m pytest tests/test_agent_golden.py -s`` prints them) and say
   why in the commit.

Each case runs twice: with a gradient-norm clip far above the gradient's norm, and with one
below it (the clip then scales the gradient handed to Adam). Batches hold no time-limit
truncation; :func:`trajectory_dict` fills both the old ("truncation_values") and the new
("truncated", "final_states") replay keys with "none", so the tests do not depend on which
of the two the agent reads.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os

import numpy as np
import pytest
import torch

# tests/ is on sys.path: pytest's default (prepend) import mode puts it there (it is no package)
import test_a3c_math as a3c_ref
import test_acer_math as acer_ref
import test_continuous_math as cont_ref
from Agent.a3c.agent import A3CAgent
from Agent.acer.agent import ACERAgent, ContinuousACERAgent
from Agent.interface import N_COUNTERS
from Agent.runtime.parameters import SharedParameters
from Agent.algorithms import get
from NN.shared_adam import SharedAdam
from Utils.atari_wrappers import box_bounds, make_env
from Utils.config import Config
from Utils.network_spec import NetworkSpec

# Tolerances: the agent runs in float32, the reference in float64.
GRAD_TOL = 1e-6     # gradient handed to Adam: |error| <= GRAD_TOL * its largest |entry|
PARAM_TOL = dict(rtol=2e-7, atol=1.5e-7)    # parameters after the step (|entries| up to ~3)
STAT_REL = 1e-5                             # loss, statistics, gradient norm
GOLDEN_REL = 2e-5                           # the literal numbers below

LR, ADAM_EPS, POLYAK = 1e-3, 1e-8, 0.25
BETAS = (0.9, 0.999)
PRIOR_ADAM_STEPS = 2
BIG_CLIP = 1e3   # far above every gradient norm below; the small clips are below each one


@contextlib.contextmanager
def float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


# ---------------------------------------------------------------------------------------
# Building an agent as a worker does, with fixed weights and a used shared Adam
# ---------------------------------------------------------------------------------------

def fill_weights(net: torch.nn.Module, seed: int) -> None:
    """Every parameter from numpy's generator: matrices N(0, 1.5^2/fan_in), vectors N(0, 0.1^2)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for _, p in sorted(net.named_parameters()):
            if p.dim() >= 2:
                values = rng.normal(0.0, 1.5 / math.sqrt(p[0].numel()), size=tuple(p.shape))
            else:
                values = rng.normal(0.0, 0.1, size=tuple(p.shape))
            p.copy_(torch.from_numpy(values))


def build_agent(cfg: Config, seed: int):
    """The agent, its SharedParameters and the counters, built as ``Agent/runtime/worker.py`` and
    ``Agent/runtime/trainer.py`` build them (global and average networks in shared memory)."""
    env = make_env(cfg.env_name, training=True, frame_stack=cfg.frame_stack)
    bounds = box_bounds(env)
    obs_shape = tuple(env.observation_space.shape)
    n_actions = len(bounds[0]) if bounds is not None else int(env.action_space.n)
    algorithm = get(cfg.algo)
    global_net = algorithm.build_network(NetworkSpec.of(obs_shape, n_actions, cfg.to_dict(), bounds))
    fill_weights(global_net, seed)
    global_net.share_memory()
    average_net = None
    if algorithm.needs_average:
        average_net = algorithm.build_network(NetworkSpec.of(obs_shape, n_actions, cfg.to_dict(), bounds))
        average_net.load_state_dict(global_net.state_dict())
        rng = np.random.default_rng(seed + 1)
        with torch.no_grad():   # an average policy a little away from the current one
            for _, p in sorted(average_net.named_parameters()):
                p.add_(torch.from_numpy(rng.normal(0.0, 0.2, size=tuple(p.shape))).float()
                       * (p.abs().mean() + 0.05))
        average_net.share_memory()
    optimizer = SharedAdam(global_net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    rng = np.random.default_rng(seed + 2)   # Adam after two earlier steps
    optimizer.load_state_dict({
        "step": PRIOR_ADAM_STEPS,
        "exp_avg": [torch.from_numpy(rng.normal(0.0, 0.01, size=tuple(p.shape))).float()
                    for p in optimizer.params],
        "exp_avg_sq": [torch.from_numpy(rng.uniform(0.5e-4, 2e-4, size=tuple(p.shape))).float()
                       for p in optimizer.params]})
    params = SharedParameters(global_net, average_net, optimizer, cfg.polyak)
    counters = torch.zeros(1, N_COUNTERS, dtype=torch.int64)
    if cfg.algo == "acer":
        agent_class = ACERAgent if bounds is None else ContinuousACERAgent
        agent = agent_class(cfg, params, counters, 0, env, np.random.default_rng(seed))
    else:
        agent = A3CAgent(cfg, params, counters, 0, env)
    env.close()
    return agent, params


class Snapshot:
    """Global weights, average weights and Adam's state before the update (copies)."""

    def __init__(self, params: SharedParameters):
        self.global_params = [p.detach().clone() for p in params.global_params]
        self.average_params = ([p.detach().clone() for p in params.average_params]
                               if params.average_params is not None else None)
        opt = params.optimizer
        self.exp_avg = [m.clone() for m in opt.exp_avg]
        self.exp_avg_sq = [v.clone() for v in opt.exp_avg_sq]
        self.step = int(opt.step_count)
        self.global_net64 = copy.deepcopy(params.global_net).double()
        self.average_net64 = (copy.deepcopy(params.average_net).double()
                              if params.average_net is not None else None)


def spy_on_step(monkeypatch, params: SharedParameters) -> list:
    """Record the gradient the agent hands to the global parameters (after its clip)."""
    handed = []
    original = params.step

    def step(grads):
        missing = [i for i, g in enumerate(grads) if g is None]
        assert not missing, f"parameters {missing} of the network got no gradient"
        handed.append([g.detach().clone() for g in grads])
        return original(grads)

    monkeypatch.setattr(params, "step", step)
    return handed


# ---------------------------------------------------------------------------------------
# What the update should have done, by hand
# ---------------------------------------------------------------------------------------

def clip_by_hand(grads: list[torch.Tensor], max_norm: float) -> tuple[list[torch.Tensor], float]:
    """Scale the whole gradient by max_norm / ||g|| when ||g|| > max_norm (torch adds 1e-6 to
    the norm in that quotient); the pre-clip norm."""
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
    scale = min(1.0, max_norm / (norm + 1e-6))
    return [g * scale for g in grads], norm


def adam_by_hand(p, g, m, v, t: int):
    """Kingma & Ba (2015), Algorithm 1, step t from moments m, v (float64)."""
    b1, b2 = BETAS
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return p - LR * m_hat / (v_hat.sqrt() + ADAM_EPS)


def check_update(result, stats, handed, snap: Snapshot, params: SharedParameters, cfg: Config,
                 ref_grads: list[torch.Tensor]):
    """The gradient handed over, the reported norm, Adam's step and the Polyak step."""
    assert stats is not None, "the update was skipped"
    assert len(handed) == 1, "one update hands over one gradient"
    clipped, norm = clip_by_hand(ref_grads, cfg.max_grad_norm)
    assert stats["grad_norm"] == pytest.approx(norm, rel=STAT_REL)
    # the case clips as it says: far below the big clip, or well above the small one
    assert norm < BIG_CLIP / 10 if cfg.max_grad_norm == BIG_CLIP else norm > 1.5 * cfg.max_grad_norm
    scale = max(float(g.abs().max()) for g in clipped)
    for got, want, p in zip(handed[0], clipped, snap.global_params):
        assert got.shape == p.shape
        torch.testing.assert_close(got.double(), want, rtol=0.0, atol=GRAD_TOL * scale)
    t = snap.step + 1
    assert int(params.optimizer.step_count) == t
    for got, p, g, m, v in zip(params.global_params, snap.global_params, clipped, snap.exp_avg,
                               snap.exp_avg_sq):
        want = adam_by_hand(p.double(), g, m.double(), v.double(), t)
        torch.testing.assert_close(got.detach().double(), want, **PARAM_TOL)
        # the step moved the weight: the comparison above is not vacuous
        assert float((want - p.double()).abs().max()) > 100 * PARAM_TOL["atol"]
    if snap.average_params is not None:
        for got, avg, new in zip(params.average_params, snap.average_params, params.global_params):
            want = avg.double() + cfg.polyak * (new.detach().double() - avg.double())
            torch.testing.assert_close(got.detach().double(), want, **PARAM_TOL)
    result["grad_norm"] = stats["grad_norm"]
    result["grad_l1"] = sum(float(g.double().abs().sum()) for g in handed[0])
    result["grad_sum"] = sum(float(g.double().sum()) for g in handed[0])


def network_grads(net64: torch.nn.Module, outputs, grad_outputs) -> list[torch.Tensor]:
    grads = torch.autograd.grad(outputs, list(net64.parameters()), grad_outputs=grad_outputs,
                                allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, net64.parameters())]


def check_golden(name: str, clip: str, got: dict) -> None:
    """The agent's numbers against the literal ones; GOLDEN_PRINT=1 prints them instead."""
    if os.environ.get("GOLDEN_PRINT"):
        numbers = ", ".join(f"{k!r}: {v:.7g}" for k, v in got.items())
        print(f"\n    ({name!r}, {clip!r}): {{{numbers}}},")
        return
    golden = GOLDEN[name, clip]
    assert set(golden) == set(got)
    for key, value in golden.items():
        # the signed sum of the gradient cancels: its error is relative to the sum of |g|
        tol = (dict(abs=GOLDEN_REL * golden["grad_l1"]) if key == "grad_sum"
               else dict(rel=GOLDEN_REL))
        assert got[key] == pytest.approx(value, **tol), \
            f"{name}/{clip}: {key} = {got[key]!r}, golden {value!r}"


# ---------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------

def trajectory_dict(states, actions, rewards, dones, mus) -> dict[str, np.ndarray]:
    """A trajectory as the replay hands it, without time-limit truncations, in both the
    current and the coming layout (unused keys are ignored by the agent)."""
    k = len(rewards)
    states = np.asarray(states, dtype=np.float32)
    actions = np.asarray(actions)
    return {"states": states,
            "actions": actions.astype(np.int64 if actions.dtype.kind in "iu" else np.float32),
            "rewards": np.asarray(rewards, dtype=np.float32),
            "dones": np.asarray(dones, dtype=bool),
            "mus": np.asarray(mus, dtype=np.float32),
            "truncation_values": np.zeros(k, dtype=np.float32),
            "truncated": np.zeros(k, dtype=bool),
            "final_states": np.zeros((0, *states.shape[1:]), dtype=np.float32)}


# CartPole-like states x_0..x_4; the episode ends after the action at x_1, and x_2 is the
# first observation of the next episode.
CARTPOLE_STATES = [[1.2, 1.9, -0.15, -2.6],
                   [1.6, 2.5, -0.21, -3.1],
                   [-0.3, 0.4, 0.02, 0.3],
                   [-0.2, -1.5, 0.03, 2.2],
                   [-0.5, -2.7, 0.09, 2.9]]
CARTPOLE_ACTIONS = [1, 0, 1, 1]
CARTPOLE_REWARDS = [1.0, -1.0, 0.5, 2.0]
CARTPOLE_DONES = [False, True, False, False]
# mu(.|x_i), against f(.|x_i) of the fixed weights (about [0.41, 0.59], [0.41, 0.59], [0.51,
# 0.49], [0.37, 0.63]): rho_i(1) = f(1|x_i)/mu(1|x_i) > c = 10 on steps 0 and 2 (the bias
# correction, and min(c, rho_i) truncates at the taken action 1); rho_1 in (1, c) (min(1, rho)
# clips the trace at 1); rho_3 < 1 (the trace is cut)
CARTPOLE_MUS = [[0.98, 0.02], [0.3, 0.7], [0.97, 0.03], [0.1, 0.9]]

# Pendulum-like states (cos, sin, angular velocity); the episode ends after step 1.
PENDULUM_STATES = [[0.9, 0.43, -0.5],
                   [0.85, 0.52, -1.2],
                   [-0.6, 0.8, 0.3],
                   [-0.55, 0.83, 0.9],
                   [-0.5, 0.87, 1.4]]
PENDULUM_ACTIONS = [[0.7], [-1.5], [0.2], [1.9]]
PENDULUM_REWARDS = [-1.2, -3.5, -0.4, -6.0]
PENDULUM_DONES = [False, True, False, False]
# mu's mean and std: a wide behaviour policy on steps 0 and 2, so that f(a'_i)/mu(a'_i) > c
PENDULUM_MUS = [[0.5, 4.0], [-1.0, 0.5], [0.0, 4.0], [1.2, 0.8]]


# ---------------------------------------------------------------------------------------
# Discrete ACER
# ---------------------------------------------------------------------------------------

def acer_config(**overrides) -> Config:
    values = dict(algo="acer", n_workers=1, k=4, mlp_hidden=16, total_memory_size=40,
                  lr=LR, adam_eps=ADAM_EPS, polyak=POLYAK, replay_ratio=0.0, seed=0,
                  gamma=acer_ref.GAMMA, c=acer_ref.C, delta=acer_ref.DELTA,
                  entropy_coef=0.01, critic_coef=0.5, trust_region=True)
    values.update(overrides)
    return Config(**values)


def acer_net_forward(net, states):
    """ACERNet's (MLP) policy logits and Q-values, in the network's dtype (its own forward
    runs in float32)."""
    h = net.trunk(states)
    return net.policy_head(h), net.q_head(h)


def discrete_acer_reference(snap: Snapshot, traj: dict, cfg: Config) -> dict:
    """Wang et al. (2016), the discrete update step by step (tests/test_acer_math.py's slow
    Retrace, g_i, k_i and projection), averaged over the k steps as the project does."""
    assert (cfg.gamma, cfg.c) == (acer_ref.GAMMA, acer_ref.C)   # the references' constants
    net, avg = snap.global_net64, snap.average_net64
    with float64_default():
        states = torch.from_numpy(traj["states"]).double()
        a = torch.from_numpy(traj["actions"])
        r = torch.from_numpy(traj["rewards"]).double()
        d = torch.from_numpy(traj["dones"])
        mu = torch.from_numpy(traj["mus"]).double()
        T = len(a)
        logits, q = acer_net_forward(net, states)
        f = torch.softmax(logits.detach(), -1)
        q_fixed = q.detach()
        v_xk = float((f[T] * q_fixed[T]).sum())                   # V(x_k), current network
        with torch.no_grad():
            f_avg = torch.softmax(acer_net_forward(avg, states[:T])[0], -1)
        q_ret = acer_ref.slow_retrace(r, d, q_fixed[:T], f[:T], mu, a, v_xk)
        total, objective, value_loss, ent = 0.0, 0.0, 0.0, 0.0
        n_projected = n_corrected = 0
        for i in range(T):
            ai = int(a[i])
            g_i, k_i = acer_ref.slow_g_and_k(f[i], q_fixed[i], mu[i], ai, float(q_ret[i]), f_avg[i])
            z_i = acer_ref.slow_projection(g_i, k_i, cfg.delta) if cfg.trust_region else g_i
            n_projected += int(float(k_i @ g_i) > cfg.delta)
            f_i = torch.softmax(logits[i], -1)
            h_i = -(f_i * torch.log(f_i)).sum()
            total = total + (-(z_i * f_i).sum() + cfg.critic_coef * (q_ret[i] - q[i, ai]) ** 2
                             - cfg.entropy_coef * h_i) / T
            # the paper's objective (eq. 8) at x_i, with python floats
            V_i = sum(float(f[i, b]) * float(q_fixed[i, b]) for b in range(f.shape[1]))
            rho = [float(f[i, b]) / float(mu[i, b]) for b in range(f.shape[1])]
            obj = min(cfg.c, rho[ai]) * math.log(float(f[i, ai])) * (float(q_ret[i]) - V_i)
            for b in range(f.shape[1]):
                w = max(0.0, 1.0 - cfg.c / rho[b])
                n_corrected += int(w > 0)
                obj += w * float(f[i, b]) * math.log(float(f[i, b])) * (float(q_fixed[i, b]) - V_i)
            objective += obj / T
            value_loss += (float(q_ret[i]) - float(q_fixed[i, ai])) ** 2 / T
            ent += float(h_i.detach()) / T
        grads = network_grads(net, total, None)
    assert n_projected > 0, "the batch must exercise the trust region"
    assert n_corrected > 0, "the batch must exercise the bias correction"
    return {"loss": float(total.detach()), "pg_loss": -objective, "value_loss": value_loss,
            "entropy": ent, "grads": grads}


@pytest.mark.parametrize("clip", ["no_clip", "clip"])
def test_discrete_acer_update_matches_the_slow_reference(monkeypatch, clip):
    cfg = acer_config(env_name="CartPole-v1", max_grad_norm=BIG_CLIP if clip == "no_clip" else 0.5)
    agent, params = build_agent(cfg, seed=0)
    traj = trajectory_dict(CARTPOLE_STATES, CARTPOLE_ACTIONS, CARTPOLE_REWARDS, CARTPOLE_DONES,
                           CARTPOLE_MUS)
    snap = Snapshot(params)
    ref = discrete_acer_reference(snap, traj, cfg)

    loss, loss_stats = agent.loss(traj)
    loss = loss.detach()
    assert float(loss) == pytest.approx(ref["loss"], rel=STAT_REL)
    handed = spy_on_step(monkeypatch, params)
    stats = agent.update(traj)

    got = {"loss": float(loss)}
    for key in ("pg_loss", "value_loss", "entropy"):
        assert stats[key] == pytest.approx(ref[key], rel=STAT_REL), key
        got[key] = stats[key]
    assert float(loss_stats["value_loss"]) == pytest.approx(ref["value_loss"], rel=STAT_REL)
    check_update(got, stats, handed, snap, params, cfg, ref["grads"])
    check_golden("discrete_acer", clip, got)


# ---------------------------------------------------------------------------------------
# Continuous ACER
# ---------------------------------------------------------------------------------------

DRAW_SEED = 2024


def continuous_acer_reference(snap: Snapshot, traj: dict, cfg: Config) -> dict:
    """Wang et al. (2016), Algorithm 2, step by step (tests/test_continuous_math.py's slow
    reference), on the network through the chain rule. a'_i and u_j are the draws the agent
    makes after ``torch.manual_seed(DRAW_SEED)``: first a'_i ~ f, then the SDN's u_j ~ f."""
    assert (cfg.gamma, cfg.c, cfg.critic_coef) == (cont_ref.GAMMA, cont_ref.C, cont_ref.CRITIC)
    net, avg = snap.global_net64, snap.average_net64
    T, d, n = len(traj["rewards"]), traj["actions"].shape[-1], cfg.sdn_samples
    draws = torch.Generator().manual_seed(DRAW_SEED)
    eps_prime = torch.randn(T, d, generator=draws).double()
    eps_samples = torch.randn(T, n, d, generator=draws).double()
    with float64_default():
        states = torch.from_numpy(traj["states"]).double()
        actions = torch.from_numpy(traj["actions"]).double()
        mus = torch.from_numpy(traj["mus"]).double()
        mean, std = net.policy(states[:T])
        m, s = mean.detach(), std.detach()
        actions_prime = m + s * eps_prime
        samples = m.unsqueeze(1) + s.unsqueeze(1) * eps_samples
        candidates = torch.cat([actions.unsqueeze(1), actions_prime.unsqueeze(1), samples], 1)
        values, adv = net.critic(states[:T], candidates)
        with torch.no_grad():
            average_mean = avg.policy(states[:T])[0]
            bootstrap = net.value(states[T:])[0]
        t = dict(mean=m, std=s, average_mean=average_mean, values=values.detach(), adv=adv.detach(),
                 actions=actions, actions_prime=actions_prime, mu_mean=mus[:, :d],
                 mu_std=mus[:, d:], rewards=torch.from_numpy(traj["rewards"]).double(),
                 dones=torch.from_numpy(traj["dones"]), bootstrap=bootstrap)
        q_rets, q_opcs, z, (g_mean, g_values, g_adv) = cont_ref.slow_continuous_acer(
            t, cfg.delta, cfg.trust_region)
        _, _, z_free, _ = cont_ref.slow_continuous_acer(t, cfg.delta, trust_region=False)
        grads = network_grads(net, (mean, values, adv), (g_mean, g_values, g_adv))

        def log_f(x, mm, ss):   # log N(x; mm, diag(ss^2))
            return sum(cont_ref.normal_log_pdf(float(x[j]), float(mm[j]), float(ss[j]))
                       for j in range(d))

        # the statistics the agent reports, with python floats
        objective = value_loss = 0.0
        n_corrected = 0
        for i in range(T):
            rho = math.exp(log_f(actions[i], m[i], s[i])
                           - log_f(actions[i], mus[i, :d], mus[i, d:]))
            rho_p = math.exp(log_f(actions_prime[i], m[i], s[i])
                             - log_f(actions_prime[i], mus[i, :d], mus[i, d:]))
            v_i = float(values[i].detach())
            baseline = float(adv[i, 2:].detach().mean())
            q_tilde = v_i + float(adv[i, 0].detach()) - baseline
            q_tilde_p = v_i + float(adv[i, 1].detach()) - baseline
            correction = max(0.0, 1.0 - cfg.c / rho_p)
            n_corrected += int(correction > 0)
            objective += (min(cfg.c, rho) * log_f(actions[i], m[i], s[i]) * (q_opcs[i] - v_i)
                          + correction * log_f(actions_prime[i], m[i], s[i])
                          * (q_tilde_p - v_i)) / T
            error = q_rets[i] - q_tilde
            value_loss += (error ** 2 + (min(1.0, rho) * error) ** 2) / T
        entropy = float(sum(0.5 + 0.5 * math.log(2 * math.pi) + math.log(float(x)) for x in s[0]))
    assert n_corrected > 0, "the batch must exercise the bias correction"
    if cfg.trust_region:
        assert not torch.allclose(z, z_free), "the batch must exercise the trust region"
    return {"pg_loss": -objective, "value_loss": value_loss, "entropy": entropy, "grads": grads,
            "candidates": candidates}


@pytest.mark.parametrize("clip", ["no_clip", "clip"])
def test_continuous_acer_update_matches_algorithm_2(monkeypatch, clip):
    cfg = acer_config(env_name="Pendulum-v1", c=cont_ref.C, critic_coef=cont_ref.CRITIC, delta=0.01,
                      sdn_samples=3, max_grad_norm=BIG_CLIP if clip == "no_clip" else 2.0)
    agent, params = build_agent(cfg, seed=10)
    with torch.no_grad():  # an advantage A(x, a) that varies with a (the SDN's a column x 6)
        params.global_net.advantage[0].weight[:, -1:] *= 6.0
    traj = trajectory_dict(PENDULUM_STATES, PENDULUM_ACTIONS, PENDULUM_REWARDS, PENDULUM_DONES,
                           PENDULUM_MUS)
    snap = Snapshot(params)
    ref = continuous_acer_reference(snap, traj, cfg)

    seen = []
    critic = agent.local_net.critic

    def spy_critic(states, candidates):
        seen.append(candidates.detach().clone())
        return critic(states, candidates)

    monkeypatch.setattr(agent.local_net, "critic", spy_critic)
    handed = spy_on_step(monkeypatch, params)
    torch.manual_seed(DRAW_SEED)
    stats = agent.update(traj)
    # the agent drew a'_i and u_j as the reference did (a failure here: the order or the
    # distribution of the draws changed, not necessarily the math)
    torch.testing.assert_close(seen[0].double(), ref["candidates"], rtol=1e-6, atol=1e-6)

    got = {}
    for key in ("pg_loss", "value_loss", "entropy"):
        assert stats[key] == pytest.approx(ref[key], rel=STAT_REL), key
        got[key] = stats[key]
    check_update(got, stats, handed, snap, params, cfg, ref["grads"])
    check_golden("continuous_acer", clip, got)


# ---------------------------------------------------------------------------------------
# A3C
# ---------------------------------------------------------------------------------------

def a3c_config(**overrides) -> Config:
    values = dict(algo="a3c", n_workers=1, mlp_hidden=16, hidden_size=8, t_max=5,
                  total_update_period=5, lr=LR, adam_eps=ADAM_EPS, seed=0, gamma=a3c_ref.GAMMA,
                  entropy_coef=0.01, critic_coef=0.5)
    values.update(overrides)
    return Config(**values)


# a rollout of T = 5 steps; the episode ends after step 2, x_3 is a new episode's first
A3C_ACTIONS = [0, 1, 1, 0, 1]
A3C_REWARDS = [1.0, 0.5, -1.0, 2.0, 0.3]
A3C_DONES = [False, False, True, False, False]
A3C_STATES = [[1.2, 1.9, -0.15, -2.6],      # x_0 .. x_5 (x_5: after the rollout)
              [1.6, 2.5, -0.21, -3.1],
              [2.0, 1.1, -0.19, -1.4],
              [-0.3, 0.4, 0.02, 0.3],
              [-0.2, -1.5, 0.03, 2.2],
              [-0.5, -2.7, 0.09, 2.9]]
GAUSSIAN_A3C_ACTIONS = [[0.7], [-1.5], [0.2], [1.9], [-0.4]]
GAUSSIAN_A3C_REWARDS = [-1.2, -3.5, -0.4, -6.0, -2.2]
GAUSSIAN_A3C_STATES = [[0.9, 0.43, -0.5],
                       [0.85, 0.52, -1.2],
                       [0.8, 0.6, -1.9],
                       [-0.6, 0.8, 0.3],
                       [-0.55, 0.83, 0.9],
                       [-0.5, 0.87, 1.4]]
H0_SEED = 7


def a3c_loss_from(stats: dict, cfg: Config) -> float:
    """A3C's loss from the three terms the agent reports (it does not report the sum)."""
    return (stats["pg_loss"] + cfg.critic_coef * stats["value_loss"]
            - cfg.entropy_coef * stats["entropy"])


def act_rollout(agent: A3CAgent, states, actions, rewards, dones) -> None:
    """Drive the agent through a fixed rollout with the worker loop's calls; the actions it
    samples are replaced by the batch's."""
    agent.begin_rollout()
    for t in range(len(actions)):
        agent.act(np.asarray(states[t], dtype=np.float32))
        action = np.asarray(actions[t], dtype=np.float32) if np.ndim(actions[t]) else actions[t]
        agent.record(action, rewards[t], dones[t], False,
                     np.asarray(states[t + 1], dtype=np.float32))
        agent.observe(np.asarray(states[t + 1], dtype=np.float32), first=dones[t])


def a3c_reference(snap: Snapshot, cfg: Config, states, actions, rewards, dones, h0) -> dict:
    """Mnih et al. (2016), Algorithm S3 (tests/test_a3c_math.py's slow returns and loss), the
    network stepped one observation at a time: torch's own LSTMCell from the rollout's first
    state, zeroed at each episode start (or the fc core), gradient through every step."""
    net = snap.global_net64
    T = len(actions)
    with float64_default():
        x = torch.tensor(states)
        hidden = None if h0 is None else tuple(h.double() for h in h0)
        logits, values = [], []
        for t in range(T + 1):
            features = net.trunk(x[t:t + 1])
            if net.recurrent:
                if t > 0 and dones[t - 1]:
                    hidden = (torch.zeros(1, cfg.hidden_size), torch.zeros(1, cfg.hidden_size))
                hidden = net.core(features, hidden)           # torch.nn.LSTMCell
                h = hidden[0]
            else:
                h = net.core(features)
            logits.append(net.policy_head(h)[0])
            values.append(net.value_head(h)[0, 0])
        logits, values = torch.stack(logits), torch.stack(values)
        r, d = torch.tensor(rewards), torch.tensor(dones)
        returns = a3c_ref.slow_returns(r, d, float(values[T].detach()), cfg.gamma)
        a = torch.tensor(actions)
        loss = a3c_ref.slow_a3c_loss(logits[:T], values[:T], a, returns, cfg.entropy_coef,
                                     cfg.critic_coef)
        grads = network_grads(net, loss, None)
        f = torch.softmax(logits[:T].detach(), -1)
        adv = returns - values[:T].detach()
        pg = -sum(math.log(float(f[t, a[t]])) * float(adv[t]) for t in range(T)) / T
        entropy = -float((f * torch.log(f)).sum()) / T
    return {"loss": float(loss.detach()), "pg_loss": pg, "value_loss": float((adv ** 2).mean()),
            "entropy": entropy, "grads": grads}


@pytest.mark.parametrize("clip", ["no_clip", "clip"])
@pytest.mark.parametrize("recurrent", [True, False], ids=["lstm", "ff"])
def test_a3c_update_matches_the_slow_reference(monkeypatch, recurrent, clip):
    cfg = a3c_config(env_name="CartPole-v1", recurrent=recurrent,
                     max_grad_norm=BIG_CLIP if clip == "no_clip" else 0.3)
    agent, params = build_agent(cfg, seed=20 if recurrent else 30)
    assert agent.rollout_length == len(A3C_ACTIONS)
    h0 = None
    if recurrent:  # the rollout starts inside an episode, from a non-zero LSTM state
        g = torch.Generator().manual_seed(H0_SEED)
        h0 = (0.5 * torch.randn(1, cfg.hidden_size, generator=g),
              0.5 * torch.randn(1, cfg.hidden_size, generator=g))
        agent.load_state_dict({"hidden": list(h0)}, np.asarray(A3C_STATES[0], dtype=np.float32))
    snap = Snapshot(params)
    ref = a3c_reference(snap, cfg, A3C_STATES, A3C_ACTIONS, A3C_REWARDS, A3C_DONES, h0)

    handed = spy_on_step(monkeypatch, params)
    act_rollout(agent, A3C_STATES, A3C_ACTIONS, A3C_REWARDS, A3C_DONES)
    stats = agent.learn()

    got = check_a3c_stats(stats, ref, cfg)
    check_update(got, stats, handed, snap, params, cfg, ref["grads"])
    check_golden("a3c_lstm" if recurrent else "a3c_ff", clip, got)


def check_a3c_stats(stats: dict, ref: dict, cfg: Config) -> dict:
    """The A3C update's reported terms and their weighted sum against the reference; the terms."""
    got = {}
    for key in ("pg_loss", "value_loss", "entropy"):
        assert stats[key] == pytest.approx(ref[key], rel=STAT_REL), key
        got[key] = stats[key]
    assert a3c_loss_from(stats, cfg) == pytest.approx(ref["loss"], rel=STAT_REL)
    return got


def gaussian_a3c_reference(snap: Snapshot, cfg: Config, states, actions, rewards, dones) -> dict:
    """A3C with a diagonal Gaussian policy, step by step with torch.distributions.Normal."""
    net = snap.global_net64
    T = len(actions)
    with float64_default():
        x = torch.tensor(states)
        (mean, std), values, _ = net(x)
        returns = a3c_ref.slow_returns(torch.tensor(rewards), torch.tensor(dones),
                                       float(values[T].detach()), cfg.gamma)
        a = torch.tensor(actions)
        loss, pg, entropy = 0.0, 0.0, 0.0
        for t in range(T):
            pi = torch.distributions.Normal(mean[t], std[t])
            advantage = float(returns[t] - values[t].detach())
            loss = loss + (-pi.log_prob(a[t]).sum() * advantage
                           + cfg.critic_coef * (returns[t] - values[t]) ** 2
                           - cfg.entropy_coef * pi.entropy().sum()) / T
            pg -= float(pi.log_prob(a[t]).sum().detach()) * advantage / T
            entropy += float(pi.entropy().sum().detach()) / T
        grads = network_grads(net, loss, None)
        value_loss = float(((returns - values[:T].detach()) ** 2).mean())
    return {"loss": float(loss.detach()), "pg_loss": pg, "value_loss": value_loss,
            "entropy": entropy, "grads": grads}


@pytest.mark.parametrize("clip", ["no_clip", "clip"])
def test_gaussian_a3c_update_matches_the_slow_reference(monkeypatch, clip):
    cfg = a3c_config(env_name="Pendulum-v1", recurrent=False,
                     max_grad_norm=BIG_CLIP if clip == "no_clip" else 2.0)
    agent, params = build_agent(cfg, seed=40)
    snap = Snapshot(params)
    ref = gaussian_a3c_reference(snap, cfg, GAUSSIAN_A3C_STATES, GAUSSIAN_A3C_ACTIONS,
                                 GAUSSIAN_A3C_REWARDS, A3C_DONES)
    handed = spy_on_step(monkeypatch, params)
    act_rollout(agent, GAUSSIAN_A3C_STATES, GAUSSIAN_A3C_ACTIONS, GAUSSIAN_A3C_REWARDS, A3C_DONES)
    stats = agent.learn()

    got = check_a3c_stats(stats, ref, cfg)
    check_update(got, stats, handed, snap, params, cfg, ref["grads"])
    check_golden("gaussian_a3c", clip, got)


# ---------------------------------------------------------------------------------------
# Literal golden numbers (the agents' own values, float32, computed once)
# ---------------------------------------------------------------------------------------

GOLDEN = {
    ('discrete_acer', 'no_clip'): {
        'loss': -5.403858, 'pg_loss': 4.817123, 'value_loss': 4.539807, 'entropy': 0.6759799,
        'grad_norm': 13.4054, 'grad_l1': 132.96, 'grad_sum': -15.258},
    ('discrete_acer', 'clip'): {
        'loss': -5.403858, 'pg_loss': 4.817123, 'value_loss': 4.539807, 'entropy': 0.6759799,
        'grad_norm': 13.4054, 'grad_l1': 4.959196, 'grad_sum': -0.5690992},
    ('continuous_acer', 'no_clip'): {
        'pg_loss': -9.603359, 'value_loss': 16.71864, 'entropy': 0.9081129,
        'grad_norm': 20.63552, 'grad_l1': 218.2175, 'grad_sum': 41.00912},
    ('continuous_acer', 'clip'): {
        'pg_loss': -9.603359, 'value_loss': 16.71864, 'entropy': 0.9081129,
        'grad_norm': 20.63552, 'grad_l1': 21.14969, 'grad_sum': 3.974614},
    ('a3c_lstm', 'no_clip'): {
        'pg_loss': 0.6409101, 'value_loss': 1.5761, 'entropy': 0.5974074,
        'grad_norm': 1.446607, 'grad_l1': 14.58212, 'grad_sum': 4.910441},
    ('a3c_lstm', 'clip'): {
        'pg_loss': 0.6409101, 'value_loss': 1.5761, 'entropy': 0.5974074,
        'grad_norm': 1.446607, 'grad_l1': 3.024063, 'grad_sum': 1.018335},
    ('a3c_ff', 'no_clip'): {
        'pg_loss': 0.2364764, 'value_loss': 1.538003, 'entropy': 0.5614842,
        'grad_norm': 1.972391, 'grad_l1': 16.55778, 'grad_sum': 0.7615814},
    ('a3c_ff', 'clip'): {
        'pg_loss': 0.2364764, 'value_loss': 1.538003, 'entropy': 0.5614842,
        'grad_norm': 1.972391, 'grad_l1': 2.518431, 'grad_sum': 0.1158362},
    ('gaussian_a3c', 'no_clip'): {
        'pg_loss': -5.199782, 'value_loss': 19.39486, 'entropy': 1.45802,
        'grad_norm': 11.61103, 'grad_l1': 113.9767, 'grad_sum': 11.33504},
    ('gaussian_a3c', 'clip'): {
        'pg_loss': -5.199782, 'value_loss': 19.39486, 'entropy': 1.45802,
        'grad_norm': 11.61103, 'grad_l1': 19.63247, 'grad_sum': 1.952459},
}
