"""ACER's update as pure functions (Wang et al. 2016, discrete actions).

Notation follows the paper. For a trajectory x_0..x_{k-1} with actions a_i,
(clipped) rewards r_i, episode ends d_i and behaviour policy mu(.|x_i):

* f(.|x_i): current policy, Q(x_i, .): critic, V(x_i) = sum_a f(a|x_i) Q(x_i, a)
* rho_i(a) = f(a|x_i) / mu(a|x_i), rho_i = rho_i(a_i)
* Retrace target (eq. 5, with lambda = 1 and c_i = min(1, rho_i)):
      Q_ret <- r_i + gamma (1 - d_i) Q_ret          (start: V(x_k), or 0 after a done)
      Q_ret(x_i, a_i) recorded, then
      Q_ret <- min(1, rho_i) (Q_ret - Q(x_i, a_i)) + V(x_i)
* Policy gradient with truncation and bias correction (eq. 8), written as a
  gradient g_i with respect to the policy distribution phi_i = f(.|x_i)
  (the probability vector), every other factor held fixed:
      g_i = min(c, rho_i) (Q_ret_i - V_i) grad log f(a_i)
          + sum_a [1 - c / rho_i(a)]_+ f(a) (Q(x_i, a) - V_i) grad log f(a)
  so g_i[a] = [1 - c/rho_i(a)]_+ (Q_i(a) - V_i) + 1[a = a_i] min(c, rho_i) (Q_ret_i - V_i) / f(a_i)
* Efficient trust region (eq. 12): k_i = grad_phi KL(f_avg || f) = -f_avg / f,
      z_i = g_i - max(0, (k_i.g_i - delta) / ||k_i||^2) k_i
  which solves  min_z 0.5 ||g_i - z||^2  s.t.  k_i.z <= delta.

The network is then moved along z_i through the chain rule: the surrogate
loss ``-(z_i . f(.|x_i))`` has exactly that gradient. All functions take a
leading time dimension T and broadcast over any trailing batch dimensions
between T and the action dimension A.
"""
from __future__ import annotations

import math

import torch

from Agent.shared_math import diag_gaussian_entropy, diag_gaussian_log_prob, entropy, retrace_targets


def importance_weights(policy: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """rho(a) = f(a|x) / mu(a|x) for every action, shape [..., A] (no gradient)."""
    return policy.detach() / mu


def bias_correction_weights(policy: torch.Tensor, mu: torch.Tensor, c: float) -> torch.Tensor:
    """[1 - c / rho(a)]_+ for every action, written as [1 - c mu(a) / f(a)]_+ so that a
    zero mu never divides and an underflowed f gives 0."""
    f = policy.detach()
    return torch.clamp(1.0 - c * mu / f.clamp_min(torch.finfo(f.dtype).tiny), min=0.0)


def policy_gradient_wrt_probs(policy: torch.Tensor, q: torch.Tensor, actions: torch.Tensor,
                              mu: torch.Tensor, q_ret: torch.Tensor, c: float) -> torch.Tensor:
    """g_i: gradient of ACER's truncated, bias-corrected objective w.r.t. f(.|x_i).

    Shapes: ``policy``, ``q``, ``mu`` [..., A]; ``actions``, ``q_ret`` [...].
    """
    f = policy.detach()
    q = q.detach()
    values = (f * q).sum(-1, keepdim=True)
    a = actions.unsqueeze(-1)
    advantage_ret = q_ret.detach().unsqueeze(-1) - values
    g = bias_correction_weights(f, mu, c) * (q - values)
    # min(c, rho_i) / f(a_i) = min(c / f(a_i), 1 / mu(a_i)): finite even where f(a_i) underflows to 0.
    f_a, mu_a = f.gather(-1, a), mu.gather(-1, a)
    weight = torch.minimum(c / f_a.clamp_min(torch.finfo(f.dtype).tiny), 1.0 / mu_a)
    return g.scatter_add(-1, a, weight * advantage_ret)


def kl_gradient_wrt_probs(average_policy: torch.Tensor, policy: torch.Tensor,
                          min_prob: float = 1e-8) -> torch.Tensor:
    """k_i = d KL(f_avg || f) / d f = -f_avg / f, with f floored at ``min_prob`` so an
    underflowed probability gives a large finite k rather than -inf."""
    return -average_policy.detach() / policy.detach().clamp_min(min_prob)


def trust_region_projection(g: torch.Tensor, k: torch.Tensor, delta: float) -> torch.Tensor:
    """z = g - max(0, (k.g - delta) / ||k||^2) k, per row of the last dimension."""
    scale = ((k * g).sum(-1, keepdim=True) - delta) / (k * k).sum(-1, keepdim=True).clamp_min(1e-12)
    return g - scale.clamp_min(0.0) * k


def trust_region_activity(g: torch.Tensor, k: torch.Tensor, delta: float) -> torch.Tensor:
    """The fraction of steps at which the trust region binds (k.g > delta, so z != g): a
    diagnostic, 0 when the policy stays well inside the constraint."""
    return ((k * g).sum(-1) > delta).to(g.dtype).mean()


def acer_loss(logits: torch.Tensor, q: torch.Tensor, average_logits: torch.Tensor,
              actions: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor,
              mu: torch.Tensor, bootstrap_value: torch.Tensor, *, gamma: float, c: float,
              delta: float, entropy_coef: float, critic_coef: float,
              trust_region: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The scalar loss whose gradient is one ACER update on a trajectory, and its parts.

    ``logits``, ``q``: the network's outputs on x_0..x_{k-1}, [T, ..., A];
    ``average_logits``: the average network's on the same states;
    ``bootstrap_value``: V(x_k) (ignored where the last step is a done).

    loss = policy_loss + critic_coef * value_loss - entropy_coef * entropy, with
      policy_loss = -mean_i(z_i . f(.|x_i))       (gradient: -mean_i z_i df_i/dtheta)
      value_loss  = mean_i (Q_ret_i - Q(x_i, a_i))^2
    Departure from the paper: terms are averaged over the T steps instead of
    summed, and the entropy bonus is added outside the trust-region projection.
    """
    log_policy = torch.log_softmax(logits, dim=-1)
    policy = log_policy.exp()
    f = policy.detach()
    q_taken = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    values = (f * q.detach()).sum(-1)
    rho = importance_weights(f, mu)
    rho_bar = torch.clamp(rho.gather(-1, actions.unsqueeze(-1)).squeeze(-1), max=1.0)
    q_ret = retrace_targets(rewards, dones, q_taken, values, rho_bar, bootstrap_value, gamma)
    g = policy_gradient_wrt_probs(f, q, actions, mu, q_ret, c)
    k = kl_gradient_wrt_probs(torch.softmax(average_logits.detach(), dim=-1), f)
    z = trust_region_projection(g, k, delta) if trust_region else g
    policy_loss = -(z.detach() * policy).sum(-1).mean()
    value_loss = (q_ret - q_taken).pow(2).mean()
    mean_entropy = entropy(log_policy).mean()
    loss = policy_loss + critic_coef * value_loss - entropy_coef * mean_entropy
    with torch.no_grad():  # the paper's objective (eq. 8) as a number to log
        rho_a = rho.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        log_f_a = log_policy.detach().gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        correction = bias_correction_weights(f, mu, c)
        objective = (torch.clamp(rho_a, max=c) * log_f_a * (q_ret - values)
                     + (correction * f * log_policy.detach() * (q.detach() - values.unsqueeze(-1))).sum(-1))
        average_log_policy = torch.log_softmax(average_logits.detach(), dim=-1)
        kl_average = (average_log_policy.exp() * (average_log_policy - log_policy.detach())).sum(-1)
    stats = {"policy_loss": -objective.mean(), "value_loss": value_loss.detach(),
             "entropy": mean_entropy.detach(), "rho_mean": rho_bar.mean(),
             "trust_region_active": trust_region_activity(g, k, delta) if trust_region else g.new_zeros(()),
             "kl_average": kl_average.mean()}
    return loss, stats


# --- Continuous actions (Wang et al. 2016, section 4 and Algorithm 2 of the appendix) -------
#
# The policy f(.|x) = N(m(x), diag(sigma^2)) with a fixed sigma, so the statistics phi the
# trust region works on are the mean m alone. The critic is a Stochastic Dueling Network:
#     Q~(x, a) = V(x) + A(x, a) - 1/n sum_j A(x, u_j),   u_j ~ f(.|x)
# For a trajectory with actions a_i ~ mu(.|x_i) (also Gaussian; its mean and std are stored):
# * rho_i = f(a_i|x_i) / mu(a_i|x_i); traces c_i = min(1, rho_i^(1/d)) with d the action size
# * Q_ret: the Retrace recursion above with c_i and Q~(x_i, a_i), bootstrapped from V(x_k)
# * Q_opc: the same recursion with every c_i = 1 (used in the policy gradient)
# * g_i = min(c, rho_i) (Q_opc_i - V_i) grad_m log f(a_i)
#       + [1 - c / rho_i(a'_i)]_+ (Q~(x_i, a'_i) - V_i) grad_m log f(a'_i),   a'_i ~ f(.|x_i)
#   with grad_m log f(a) = (a - m) / sigma^2
# * k_i = grad_m KL(f_avg || f) = (m - m_avg) / sigma^2; z_i = the projection above
# * critic: (Q_ret_i - Q~(x_i, a_i)) grad Q~ + min(1, rho_i) (Q_ret_i - Q~(x_i, a_i)) grad V,
#   the gradient of 1/2 (Q_ret - Q~)^2 + 1/2 (V_target - V)^2 with
#   V_target = min(1, rho_i) (Q_ret_i - Q~(x_i, a_i)) + V(x_i) held constant.


def continuous_acer_loss(mean: torch.Tensor, std: torch.Tensor, average_mean: torch.Tensor,
                         values: torch.Tensor, adv_taken: torch.Tensor, adv_prime: torch.Tensor,
                         adv_samples: torch.Tensor, actions: torch.Tensor, actions_prime: torch.Tensor,
                         mu_mean: torch.Tensor, mu_std: torch.Tensor, rewards: torch.Tensor,
                         dones: torch.Tensor, bootstrap_value: torch.Tensor, *, gamma: float, c: float,
                         delta: float, critic_coef: float, trust_region: bool = True
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The scalar loss whose gradient is one continuous ACER update on a trajectory.

    Shapes: ``mean``, ``std``, ``average_mean``, ``actions`` (a_i), ``actions_prime`` (a'_i ~ f),
    ``mu_mean``, ``mu_std``: [T, d]; ``values`` V(x_i), ``adv_taken`` A(x_i, a_i), ``adv_prime``
    A(x_i, a'_i), ``rewards``, ``dones``: [T]; ``adv_samples`` A(x_i, u_j): [T, n];
    ``bootstrap_value``: V(x_k). The std is the paper's fixed one (no gradient is taken
    through it, and there is no entropy bonus: the entropy is a constant).

    loss = -mean_i (z_i . m_i) + critic_coef * mean_i [(Q_ret_i - Q~_i)^2 + (V_target_i - V_i)^2]
    (terms averaged over the T steps, as in the discrete loss).
    """
    d = mean.shape[-1]
    m, sigma = mean.detach(), std.detach()
    log_rho = diag_gaussian_log_prob(m, sigma, actions) - diag_gaussian_log_prob(mu_mean, mu_std, actions)
    log_rho_prime = (diag_gaussian_log_prob(m, sigma, actions_prime)
                     - diag_gaussian_log_prob(mu_mean, mu_std, actions_prime))
    trace = torch.exp(torch.clamp(log_rho / d, max=0.0))            # c_i = min(1, rho_i^(1/d))
    rho_bar = torch.exp(torch.clamp(log_rho, max=0.0))              # min(1, rho_i)
    truncated_rho = torch.exp(torch.clamp(log_rho, max=math.log(c)))  # min(c, rho_i)
    correction = torch.clamp(1.0 - c * torch.exp(-log_rho_prime), min=0.0)  # [1 - c/rho(a')]_+
    baseline = adv_samples.mean(-1)
    q_tilde = values + adv_taken - baseline                         # Q~(x_i, a_i), with gradient
    v = values.detach()
    q_tilde_prime = v + adv_prime.detach() - baseline.detach()      # Q~(x_i, a'_i)
    q_ret = retrace_targets(rewards, dones, q_tilde, v, trace, bootstrap_value, gamma)
    q_opc = retrace_targets(rewards, dones, q_tilde, v, torch.ones_like(trace), bootstrap_value, gamma)
    variance = sigma.pow(2)
    g = ((truncated_rho * (q_opc - v)).unsqueeze(-1) * (actions - m) / variance
         + (correction * (q_tilde_prime - v)).unsqueeze(-1) * (actions_prime - m) / variance)
    k = (m - average_mean.detach()) / variance
    z = trust_region_projection(g, k, delta) if trust_region else g
    policy_loss = -(z.detach() * mean).sum(-1).mean()
    q_error = q_ret - q_tilde
    v_target = rho_bar * q_error.detach() + v
    value_loss = (q_error.pow(2) + (v_target - values).pow(2)).mean()
    loss = policy_loss + critic_coef * value_loss
    with torch.no_grad():  # the policy objective as a number to log
        objective = (truncated_rho * diag_gaussian_log_prob(m, sigma, actions) * (q_opc - v)
                     + correction * diag_gaussian_log_prob(m, sigma, actions_prime) * (q_tilde_prime - v))
        # KL(f_avg || f) of two Gaussians with the same fixed std
        kl_average = ((m - average_mean.detach()).pow(2) / (2 * variance)).sum(-1)
    stats = {"policy_loss": -objective.mean(), "value_loss": value_loss.detach(),
             "entropy": diag_gaussian_entropy(sigma).mean(), "rho_mean": rho_bar.mean(),
             "trust_region_active": trust_region_activity(g, k, delta) if trust_region else g.new_zeros(()),
             "kl_average": kl_average.mean()}
    return loss, stats
