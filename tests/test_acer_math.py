"""ACER's math against slow references written step by step in the paper's notation."""
import math

import pytest
import torch

from Agent.acer.math import (acer_loss, entropy, kl_gradient_wrt_probs,
                             policy_gradient_wrt_probs, retrace_targets,
                             trust_region_projection)

GAMMA, C, DELTA = 0.99, 10.0, 1.0

pytestmark = pytest.mark.usefixtures("float64_default")


def random_trajectory(T=7, A=5, seed=0, dones=(2,)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, A, generator=g) * 2
    q = torch.randn(T, A, generator=g) * 3
    mu = torch.softmax(torch.randn(T, A, generator=g) * 2, -1)
    avg_logits = logits + 0.3 * torch.randn(T, A, generator=g)
    actions = torch.multinomial(mu, 1, generator=g).squeeze(-1)
    rewards = torch.randn(T, generator=g)
    d = torch.zeros(T, dtype=torch.bool)
    for i in dones:
        d[i] = True
    bootstrap = torch.tensor(1.7)
    return logits, q, mu, avg_logits, actions, rewards, d, bootstrap


def slow_retrace(r, d, q, f, mu, a, v_xk):
    """Q_ret by the paper's recursion, scalar by scalar (lambda = 1)."""
    T = len(r)
    q_ret = 0.0 if d[T - 1] else float(v_xk)
    out = [0.0] * T
    for i in reversed(range(T)):
        if i < T - 1 and d[i]:
            q_ret = 0.0
        q_ret = float(r[i]) + GAMMA * q_ret
        out[i] = q_ret
        V_i = sum(float(f[i, b]) * float(q[i, b]) for b in range(f.shape[1]))
        rho_i = float(f[i, a[i]]) / float(mu[i, a[i]])
        q_ret = min(1.0, rho_i) * (q_ret - float(q[i, a[i]])) + V_i
    return torch.tensor(out)


def slow_g_and_k(f_i, q_i, mu_i, a_i, q_ret_i, f_avg_i):
    """g_i and k_i by autograd of the paper's per-step objective and KL w.r.t. phi = f(.|x_i)."""
    phi = f_i.clone().requires_grad_(True)
    fixed = f_i.detach()
    V = (fixed * q_i).sum()
    rho = fixed / mu_i
    objective = min(C, float(rho[a_i])) * torch.log(phi[a_i]) * (q_ret_i - V)
    for b in range(len(phi)):
        weight = max(0.0, 1.0 - C / float(rho[b]))
        objective = objective + weight * fixed[b] * torch.log(phi[b]) * (q_i[b] - V)
    (g,) = torch.autograd.grad(objective, phi)
    phi = f_i.clone().requires_grad_(True)
    kl = (f_avg_i * (torch.log(f_avg_i) - torch.log(phi))).sum()
    (k,) = torch.autograd.grad(kl, phi)
    return g, k


def slow_projection(g, k, delta):
    coef = max(0.0, (float(k @ g) - delta) / float(k @ k))
    return g - coef * k


def test_retrace_matches_paper_recursion_with_dones_and_bootstrap():
    for seed, dones in [(0, ()), (1, (2,)), (2, (0, 4)), (3, (6,)), (4, (3, 6))]:
        logits, q, mu, _, a, r, d, boot = random_trajectory(seed=seed, dones=dones)
        f = torch.softmax(logits, -1)
        v = (f * q).sum(-1)
        q_taken = q.gather(-1, a[:, None]).squeeze(-1)
        rho_bar = (f.gather(-1, a[:, None]).squeeze(-1) / mu.gather(-1, a[:, None]).squeeze(-1)).clamp(max=1)
        fast = retrace_targets(r, d, q_taken, v, rho_bar, boot, GAMMA)
        torch.testing.assert_close(fast, slow_retrace(r, d, q, f, mu, a, boot))


def test_retrace_last_step_done_ignores_bootstrap():
    logits, q, mu, _, a, r, d, _ = random_trajectory(dones=(6,))
    f = torch.softmax(logits, -1)
    args = (r, d, q.gather(-1, a[:, None]).squeeze(-1), (f * q).sum(-1), torch.ones(7))
    assert torch.equal(retrace_targets(*args, torch.tensor(5.0), GAMMA),
                       retrace_targets(*args, torch.tensor(-9.0), GAMMA))
    assert retrace_targets(*args, torch.tensor(5.0), GAMMA)[-1] == r[-1]


def test_retrace_on_policy_without_correction_is_n_step_return_of_values():
    """With rho_bar = 1 and Q = V everywhere, Q_ret is the discounted return plus bootstrap."""
    T = 5
    r = torch.arange(1.0, T + 1)
    d = torch.zeros(T, dtype=torch.bool)
    out = retrace_targets(r, d, torch.zeros(T), torch.zeros(T), torch.ones(T), torch.tensor(10.0), 0.5)
    expected = [sum(0.5 ** (j - i) * r[j] for j in range(i, T)) + 0.5 ** (T - i) * 10 for i in range(T)]
    torch.testing.assert_close(out, torch.tensor(expected))


@pytest.mark.parametrize("seed", range(5))
def test_policy_gradient_and_kl_gradient_match_autograd_of_paper_objective(seed):
    logits, q, mu, avg_logits, a, r, d, boot = random_trajectory(seed=seed)
    # make some rho(a) exceed c so the bias-correction term is active
    mu = mu.clone()
    mu[:, 0] = 1e-3
    mu = mu / mu.sum(-1, keepdim=True)
    f = torch.softmax(logits, -1)
    f_avg = torch.softmax(avg_logits, -1)
    q_ret = torch.randn(len(a), generator=torch.Generator().manual_seed(seed + 10))
    g = policy_gradient_wrt_probs(f, q, a, mu, q_ret, C)
    k = kl_gradient_wrt_probs(f_avg, f)
    active = 0
    for i in range(len(a)):
        g_ref, k_ref = slow_g_and_k(f[i], q[i], mu[i], int(a[i]), float(q_ret[i]), f_avg[i])
        torch.testing.assert_close(g[i], g_ref)
        torch.testing.assert_close(k[i], k_ref)
        active += int(((f[i] / mu[i]) > C).any())
    assert active > 0, "test data must exercise the bias correction"


def test_trust_region_projection_solves_the_constrained_problem():
    """z = argmin 0.5 ||g - z||^2 s.t. k.z <= delta, checked against a dual line search."""
    gen = torch.Generator().manual_seed(0)
    n_active = 0
    for _ in range(200):
        g = torch.randn(6, generator=gen) * 3
        k = torch.randn(6, generator=gen) * 2
        delta = float(torch.rand(1, generator=gen)) * 2
        z = trust_region_projection(g, k, delta)
        # slow reference: maximise the dual over lambda >= 0 by bisection on k.z(lambda) = delta
        lo, hi = 0.0, 1e6
        if float(k @ g) <= delta:
            lam = 0.0
        else:
            n_active += 1
            for _ in range(200):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if float(k @ (g - mid * k)) > delta else (lo, mid)
            lam = (lo + hi) / 2
        z_ref = g - lam * k
        torch.testing.assert_close(z, z_ref, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(z, slow_projection(g, k, delta))
        assert float(k @ z) <= delta + 1e-9
        # no feasible point is closer to g
        for _ in range(20):
            y = z + 0.1 * torch.randn(6, generator=gen)
            if float(k @ y) <= delta:
                assert float((g - y).norm()) >= float((g - z).norm()) - 1e-12
    assert 20 < n_active < 200, "both the active and inactive cases must be exercised"


def test_entropy_matches_definition():
    logits = torch.randn(4, 6)
    f = torch.softmax(logits, -1)
    expected = torch.tensor([-sum(float(p) * math.log(float(p)) for p in row) for row in f])
    torch.testing.assert_close(entropy(torch.log_softmax(logits, -1)), expected)


@pytest.mark.parametrize("trust_region", [True, False])
def test_acer_loss_values_and_gradients_match_slow_reference(trust_region):
    logits, q, mu, avg_logits, a, r, d, boot = random_trajectory(T=6, A=4, seed=7, dones=(1,))
    mu = mu.clone()
    mu[:, 1] = 1e-3
    mu = mu / mu.sum(-1, keepdim=True)
    ent_coef, critic_coef = 0.01, 0.5
    logits = logits.requires_grad_(True)
    q = q.requires_grad_(True)
    loss, stats = acer_loss(logits, q, avg_logits, a, r, d, mu, boot, gamma=GAMMA, c=C, delta=DELTA,
                            entropy_coef=ent_coef, critic_coef=critic_coef, trust_region=trust_region)
    grad_logits, grad_q = torch.autograd.grad(loss, (logits, q))

    # Slow reference: the paper's per-step update, averaged over the T steps.
    T = len(a)
    f = torch.softmax(logits.detach(), -1)
    f_avg = torch.softmax(avg_logits, -1)
    q_ret = slow_retrace(r, d, q.detach(), f, mu, a, boot)
    ref_logits = logits.detach().clone().requires_grad_(True)
    ref_q = q.detach().clone().requires_grad_(True)
    total = 0.0
    for i in range(T):
        g_i, k_i = slow_g_and_k(f[i], q.detach()[i], mu[i], int(a[i]), float(q_ret[i]), f_avg[i])
        z_i = slow_projection(g_i, k_i, DELTA) if trust_region else g_i
        f_i = torch.softmax(ref_logits[i], -1)
        h_i = -(f_i * torch.log(f_i)).sum()
        total = total + (-(z_i * f_i).sum() + critic_coef * (q_ret[i] - ref_q[i, a[i]]) ** 2
                         - ent_coef * h_i) / T
    ref_grad_logits, ref_grad_q = torch.autograd.grad(total, (ref_logits, ref_q))
    torch.testing.assert_close(loss.detach(), total.detach())
    torch.testing.assert_close(grad_logits, ref_grad_logits)
    torch.testing.assert_close(grad_q, ref_grad_q)
    expected_value_loss = ((q_ret - q.detach().gather(-1, a[:, None]).squeeze(-1)) ** 2).mean()
    torch.testing.assert_close(stats["value_loss"], expected_value_loss)
    # diagnostics: the steps at which the constraint binds (z != g), and KL(f_avg || f)
    binding = [float(k_i @ g_i) > DELTA for g_i, k_i in
               (slow_g_and_k(f[i], q.detach()[i], mu[i], int(a[i]), float(q_ret[i]), f_avg[i])
                for i in range(T))]
    assert 0 < sum(binding) < T   # the case exercises both sides
    assert float(stats["trust_region_active"]) == (sum(binding) / T if trust_region else 0.0)
    kl = sum(float((f_avg[i] * (f_avg[i].log() - f[i].log())).sum()) for i in range(T)) / T
    assert float(stats["kl_average"]) == pytest.approx(kl, rel=1e-9)
    # only Q(x_i, a_i) of the taken actions receives critic gradient
    untaken = torch.ones_like(grad_q, dtype=torch.bool)
    untaken[torch.arange(T), a] = False
    assert torch.all(grad_q[untaken] == 0)


def test_trust_region_limits_the_step_towards_the_average_policy():
    """A large negative advantage pushes f(a_0) down, away from f_avg: the projected step
    satisfies k.z <= delta while the raw one does not."""
    f = torch.tensor([[0.25, 0.25, 0.25, 0.25]])
    q = torch.zeros(1, 4)
    g = policy_gradient_wrt_probs(f, q, torch.tensor([0]), f.clone(), torch.tensor([-100.0]), C)
    k = kl_gradient_wrt_probs(torch.tensor([[0.7, 0.1, 0.1, 0.1]]), f)
    z = trust_region_projection(g, k, DELTA)
    assert float((k * g).sum()) > DELTA
    assert float((k * z).sum()) == pytest.approx(DELTA)


def test_projecting_the_mean_gradient_is_the_per_step_projection_with_delta_times_k():
    """The original projects g of the k-step *mean* objective (each row is g_i / T), so its
    constraint k_i.(g_i / T) <= delta is ours with delta * T per step: the note in
    docs/implementation.md that ``--delta 20`` reproduces the original's projection at k = 20
    (the original before its commit 0848b74). The steps' objectives are
    separate, so the mean's gradient w.r.t. f(.|x_i) is the slow reference's g_i / T; the
    original's step-by-step projection of it is checked against trust_region_projection."""
    logits, q, mu, avg_logits, a, r, d, boot = random_trajectory(T=6, A=4, seed=4, dones=(1,))
    T = len(a)
    f = torch.softmax(logits, -1)
    f_avg = torch.softmax(avg_logits, -1)
    q_ret = slow_retrace(r, d, q, f, mu, a, boot)
    rows = [slow_g_and_k(f[i], q[i], mu[i], int(a[i]), float(q_ret[i]), f_avg[i]) for i in range(T)]
    g = torch.stack([row[0] for row in rows])   # k.g: 1.7, 1.2, 3.0, -19.6, 25.6, -4.0
    k = torch.stack([row[1] for row in rows])
    # the original: project the gradient of the mean over the T steps with delta, step by step
    g_of_mean = g / T
    original = torch.stack([slow_projection(g_of_mean[i], k[i], DELTA) for i in range(T)])
    torch.testing.assert_close(trust_region_projection(g, k, DELTA * T) / T, original)
    per_step = trust_region_projection(g, k, DELTA) / T
    binds_here = (k * g).sum(-1) > DELTA
    binds_there = (k * g).sum(-1) > DELTA * T
    assert bool((binds_here & ~binds_there).any()), "the case must separate delta from delta * T"
    assert bool(binds_there.any()), "and bind under both"
    assert not torch.allclose(per_step, original)
