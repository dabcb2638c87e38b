"""Continuous ACER and A3C math against slow references written step by step in the papers'
notation (Wang et al. 2016, section 4 and Algorithm 2; Mnih et al. 2016), values and gradients."""
import math

import pytest
import torch

from Agent.a3c.math import gaussian_a3c_loss
from Agent.acer.math import continuous_acer_loss, diag_gaussian_entropy, diag_gaussian_log_prob
from NN.networks import GaussianA3CNet, SDNet, a3c_network, acer_network
from Utils.network_spec import NetworkSpec

GAMMA, C, CRITIC = 0.99, 5.0, 0.5

pytestmark = pytest.mark.usefixtures("float64_default")


def normal_log_pdf(x: float, m: float, s: float) -> float:
    return -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)


def trajectory(T=6, d=2, n=5, seed=0, dones=(2,), last_done=False, avg_shift=0.3):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(T, d, generator=g)
    std = torch.full((T, d), 0.4) + 0.2 * torch.rand(T, d, generator=g)
    mu_mean = mean + 0.3 * torch.randn(T, d, generator=g)
    mu_std = std * (1 + 0.2 * torch.rand(T, d, generator=g))
    actions = mu_mean + mu_std * torch.randn(T, d, generator=g)
    actions_prime = mean + std * torch.randn(T, d, generator=g)
    values = torch.randn(T, generator=g) * 2
    adv = torch.randn(T, 2 + n, generator=g)
    rewards = torch.randn(T, generator=g)
    done = torch.zeros(T, dtype=torch.bool)
    for i in dones:
        done[i] = True
    if last_done:
        done[-1] = True
    average_mean = mean + avg_shift * torch.randn(T, d, generator=g)
    return dict(mean=mean, std=std, average_mean=average_mean, values=values, adv=adv,
                actions=actions, actions_prime=actions_prime, mu_mean=mu_mean, mu_std=mu_std,
                rewards=rewards, dones=done, bootstrap=torch.tensor(1.3))


def slow_continuous_acer(t, delta, trust_region=True):
    """Algorithm 2 of the ACER paper, one step at a time, with python floats where possible.

    Returns Q_ret, Q_opc, the projected z_i (via autograd of the paper's objective and KL with
    respect to the mean), and the surrogate whose gradient the network should receive."""
    T, d = t["mean"].shape
    mean = t["mean"].clone().requires_grad_(True)
    values = t["values"].clone().requires_grad_(True)
    adv = t["adv"].clone().requires_grad_(True)
    q_ret = 0.0 if t["dones"][-1] else float(t["bootstrap"])
    q_opc = q_ret
    q_rets, q_opcs, zs = [0.0] * T, [0.0] * T, [None] * T
    surrogate = 0.0
    for i in reversed(range(T)):
        if i < T - 1 and t["dones"][i]:
            q_ret = q_opc = 0.0
        q_ret = float(t["rewards"][i]) + GAMMA * q_ret
        q_opc = float(t["rewards"][i]) + GAMMA * q_opc
        q_rets[i], q_opcs[i] = q_ret, q_opc
        m_i = [float(x) for x in t["mean"][i]]
        s_i = [float(x) for x in t["std"][i]]
        a_i = [float(x) for x in t["actions"][i]]
        ap_i = [float(x) for x in t["actions_prime"][i]]
        log_f = sum(normal_log_pdf(a_i[j], m_i[j], s_i[j]) for j in range(d))
        log_mu = sum(normal_log_pdf(a_i[j], float(t["mu_mean"][i, j]), float(t["mu_std"][i, j]))
                     for j in range(d))
        rho = math.exp(log_f - log_mu)
        rho_prime = math.exp(sum(normal_log_pdf(ap_i[j], m_i[j], s_i[j]) for j in range(d))
                             - sum(normal_log_pdf(ap_i[j], float(t["mu_mean"][i, j]), float(t["mu_std"][i, j]))
                                   for j in range(d)))
        c_i = min(1.0, rho ** (1.0 / d))
        v_i = float(values[i].detach())
        baseline = sum(float(x) for x in t["adv"][i, 2:]) / (t["adv"].shape[1] - 2)
        q_tilde = v_i + float(t["adv"][i, 0]) - baseline
        q_tilde_prime = v_i + float(t["adv"][i, 1]) - baseline
        # g_i: gradient of the paper's objective with respect to phi = the mean
        phi = torch.tensor(m_i, requires_grad=True)
        sigma = torch.tensor(s_i)
        log_f_a = torch.distributions.Normal(phi, sigma).log_prob(torch.tensor(a_i)).sum()
        log_f_ap = torch.distributions.Normal(phi, sigma).log_prob(torch.tensor(ap_i)).sum()
        objective = (min(C, rho) * log_f_a * (q_opc - v_i)
                     + max(0.0, 1 - C / rho_prime) * log_f_ap * (q_tilde_prime - v_i))
        (g,) = torch.autograd.grad(objective, phi)
        if trust_region:
            avg = torch.distributions.Normal(t["average_mean"][i], sigma)
            kl = torch.distributions.kl_divergence(avg, torch.distributions.Normal(phi, sigma)).sum()
            (k,) = torch.autograd.grad(kl, phi)
            z = g - max(0.0, float((k @ g - delta) / (k @ k))) * k
        else:
            z = g
        zs[i] = z
        # d theta: z_i . d m_i  +  critic: (Q_ret - Q~) dQ~ + min(1, rho)(Q_ret - Q~) dV
        q_tilde_graph = values[i] + adv[i, 0] - adv[i, 2:].mean()
        surrogate = surrogate - (z * mean[i]).sum() / T
        surrogate = surrogate - CRITIC * 2 * ((q_ret - q_tilde) * q_tilde_graph
                                              + min(1.0, rho) * (q_ret - q_tilde) * values[i]) / T
        q_ret = c_i * (q_ret - q_tilde) + v_i
        q_opc = (q_opc - q_tilde) + v_i
    grads = torch.autograd.grad(surrogate, (mean, values, adv))
    return q_rets, q_opcs, torch.stack(zs), grads


def fast_continuous_acer(t, delta, trust_region=True):
    mean = t["mean"].clone().requires_grad_(True)
    values = t["values"].clone().requires_grad_(True)
    adv = t["adv"].clone().requires_grad_(True)
    loss, stats = continuous_acer_loss(
        mean, t["std"], t["average_mean"], values, adv[:, 0], adv[:, 1], adv[:, 2:], t["actions"],
        t["actions_prime"], t["mu_mean"], t["mu_std"], t["rewards"], t["dones"], t["bootstrap"],
        gamma=GAMMA, c=C, delta=delta, critic_coef=CRITIC, trust_region=trust_region)
    grads = torch.autograd.grad(loss, (mean, values, adv))
    return loss, stats, grads


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("delta,trust_region", [(1.0, True), (0.01, True), (1.0, False)])
def test_continuous_acer_gradients_match_algorithm_2(seed, delta, trust_region):
    t = trajectory(seed=seed, last_done=seed == 2)
    _, _, z, slow_grads = slow_continuous_acer(t, delta, trust_region)
    _, _, fast_grads = fast_continuous_acer(t, delta, trust_region)
    for slow, fast, name in zip(slow_grads, fast_grads, ("mean", "values", "advantages")):
        torch.testing.assert_close(fast, slow, msg=f"gradient w.r.t. {name}")
    assert fast_grads[0].abs().sum() > 0 and fast_grads[2].abs().sum() > 0


def test_trust_region_is_active_for_a_small_delta_and_changes_the_step():
    t = trajectory(seed=3, avg_shift=1.0)
    _, _, z_small, _ = slow_continuous_acer(t, 0.01)
    _, _, z_free, _ = slow_continuous_acer(t, 1.0, trust_region=False)
    assert not torch.allclose(z_small, z_free)
    # and the constraint k.z <= delta holds at every step
    k = (t["mean"] - t["average_mean"]) / t["std"].pow(2)
    assert ((k * z_small).sum(-1) <= 0.01 + 1e-9).all()
    # the logged diagnostics: where z differs from g, and KL(f_avg || f) by torch.distributions
    _, stats, _ = fast_continuous_acer(t, 0.01)
    changed = [not torch.allclose(z_small[i], z_free[i]) for i in range(len(z_small))]
    assert float(stats["trust_region_active"]) == pytest.approx(sum(changed) / len(changed))
    sigma = t["std"].detach()
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(t["average_mean"], sigma),
                                           torch.distributions.Normal(t["mean"], sigma)).sum(-1).mean()
    assert float(stats["kl_average"]) == pytest.approx(float(kl))


def test_retrace_and_opc_targets_follow_the_recursions():
    t = trajectory(seed=4, T=8, d=3, dones=(1, 5))
    q_rets, q_opcs, _, _ = slow_continuous_acer(t, 1.0)
    # rebuild the targets the fast loss regresses Q~ on: the value loss is their squared error
    T = 8
    values = t["values"]
    q_tilde = values + t["adv"][:, 0] - t["adv"][:, 2:].mean(-1)
    loss, stats, _ = fast_continuous_acer(t, 1.0)
    log_rho = (diag_gaussian_log_prob(t["mean"], t["std"], t["actions"])
               - diag_gaussian_log_prob(t["mu_mean"], t["mu_std"], t["actions"]))
    rho_bar = log_rho.exp().clamp(max=1.0)
    q_ret = torch.tensor(q_rets)
    expected = ((q_ret - q_tilde).pow(2) + (rho_bar * (q_ret - q_tilde)).pow(2)).mean()
    torch.testing.assert_close(stats["value_loss"], expected)
    assert len(q_opcs) == T and q_opcs[5] == pytest.approx(float(t["rewards"][5]))  # a done cuts it


def test_truncation_exponent_uses_the_action_dimension():
    # with rho_i > 1 on every step, c_i = 1 and Q_ret = Q_opc; with rho_i < 1, c_i = rho^(1/d)
    t = trajectory(seed=5, d=4)
    t["mu_mean"], t["mu_std"] = t["mean"].clone(), t["std"].clone()
    q_rets, q_opcs, _, _ = slow_continuous_acer(t, 1.0)
    assert q_rets == pytest.approx(q_opcs)
    t = trajectory(seed=5, d=4)
    q_rets, q_opcs, _, _ = slow_continuous_acer(t, 1.0)
    assert q_rets != pytest.approx(q_opcs)


def test_gaussian_helpers_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, std, a = torch.randn(4, 3, generator=g), torch.rand(4, 3, generator=g) + 0.1, torch.randn(4, 3, generator=g)
    normal = torch.distributions.Normal(mean, std)
    torch.testing.assert_close(diag_gaussian_log_prob(mean, std, a), normal.log_prob(a).sum(-1))
    torch.testing.assert_close(diag_gaussian_entropy(std), normal.entropy().sum(-1))


def test_gaussian_a3c_loss_values_and_gradients_match_the_reference():
    g = torch.Generator().manual_seed(1)
    T, d = 5, 2
    mean = torch.randn(T, d, generator=g).requires_grad_(True)
    std = (torch.rand(T, d, generator=g) + 0.2).requires_grad_(True)
    values = torch.randn(T, generator=g).requires_grad_(True)
    actions, returns = torch.randn(T, d, generator=g), torch.randn(T, generator=g)
    loss, stats = gaussian_a3c_loss(mean, std, values, actions, returns, 0.01, 0.5)
    fast = torch.autograd.grad(loss, (mean, std, values))
    # reference: A3C's accumulated gradients, step by step, with torch.distributions
    ref = 0.0
    for t in range(T):
        pi = torch.distributions.Normal(mean[t], std[t])
        advantage = float((returns[t] - values[t]).detach())
        ref = ref + (-pi.log_prob(actions[t]).sum() * advantage
                     + 0.5 * (returns[t] - values[t]) ** 2 - 0.01 * pi.entropy().sum()) / T
    torch.testing.assert_close(loss, ref)
    for f, s in zip(fast, torch.autograd.grad(ref, (mean, std, values))):
        torch.testing.assert_close(f, s)
    expected_entropy = torch.distributions.Normal(mean.detach(), std.detach()).entropy().sum(-1).mean()
    assert stats["entropy"] == pytest.approx(float(expected_entropy))


def test_continuous_networks_keep_the_mean_in_the_box_and_the_std_positive():
    low, high = [-2.0, 0.0], [2.0, 1.0]
    obs = torch.randn(64, 3) * 100  # far outside any training range
    for net in (acer_network(NetworkSpec.of((3,), 2, {}, (low, high))),
                a3c_network(NetworkSpec.of((3,), 2, {"recurrent": False}, (low, high)))):
        mean, std = net.step(obs)[0]
        assert (mean >= torch.tensor(low)).all() and (mean <= torch.tensor(high)).all()
        assert (std > 0).all()
        assert (std <= torch.tensor([2.0, 0.5]) + 1e-6).all()  # at most the half-width
    a3c = a3c_network(NetworkSpec.of((3,), 2, {"recurrent": False}, (low, high)))
    torch.testing.assert_close(a3c.step(torch.zeros(1, 3))[0][1].mean() / torch.tensor(1.25),
                               torch.tensor(0.5), atol=0.05, rtol=0)  # starts near half of it
    with torch.no_grad():  # a head driven far up (what the entropy bonus does) saturates
        a3c.std_logit.fill_(1e3)
    torch.testing.assert_close(a3c.step(obs)[0][1], torch.tensor([2.0, 0.5]).expand(64, 2))
    sdn = acer_network(NetworkSpec.of((3,), 2, {"policy_std": 0.3}, (low, high)))
    assert isinstance(sdn, SDNet)
    torch.testing.assert_close(sdn.policy(obs)[1][0], torch.tensor([0.6, 0.15]))  # 0.3 half-widths
    values, advantages = sdn.critic(obs[:5], torch.zeros(5, 7, 2))
    assert values.shape == (5,) and advantages.shape == (5, 7)
    with pytest.raises(ValueError, match="recurrent"):
        a3c_network(NetworkSpec.of((3,), 2, {"recurrent": True}, (low, high)))
    with pytest.raises(ValueError, match="bounded"):
        GaussianA3CNet((3,), [-math.inf], [math.inf])
