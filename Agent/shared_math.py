"""The return and entropy math that ACER and A3C share, as pure functions.

* :func:`retrace_targets`: the backward return recursion with traces (Wang et al. 2016,
  eq. 5, lambda = 1). ACER's Retrace uses c_i = min(1, rho_i); A3C's n-step return
  (Mnih et al. 2016) is the same recursion with every trace 1 and Q(x_t, a_t) = V(x_t).
* :func:`entropy`: H(f) of a categorical policy from its log-probabilities.
* :func:`diag_gaussian_log_prob`, :func:`diag_gaussian_entropy`: the Gaussian policies of the
  continuous variants.
"""
from __future__ import annotations

import math

import torch


def retrace_targets(rewards: torch.Tensor, dones: torch.Tensor, q_taken: torch.Tensor,
                    values: torch.Tensor, rho_bar: torch.Tensor, bootstrap_value: torch.Tensor,
                    gamma: float) -> torch.Tensor:
    """Q_ret for each step, computed backwards from ``bootstrap_value`` = V(x_k).

    ``rewards``, ``dones``, ``q_taken`` (Q(x_i, a_i)), ``values`` (V(x_i)) and
    ``rho_bar`` (min(1, rho_i)) have shape [T, ...]; ``bootstrap_value`` has
    the trailing shape. A done at step i cuts the bootstrap: Q_ret_i = r_i.
    Inputs are treated as constants (the result is a target).
    """
    rewards, q_taken, values, rho_bar = (t.detach() for t in (rewards, q_taken, values, rho_bar))
    not_done = 1.0 - dones.to(rewards.dtype)
    q_ret = bootstrap_value.detach().to(rewards.dtype)
    out = torch.empty_like(rewards)
    for i in range(rewards.shape[0] - 1, -1, -1):
        q_ret = rewards[i] + gamma * not_done[i] * q_ret
        out[i] = q_ret
        q_ret = rho_bar[i] * (q_ret - q_taken[i]) + values[i]
    return out


def entropy(log_policy: torch.Tensor) -> torch.Tensor:
    """H(f) = -sum_a f(a) log f(a), per row."""
    return -(log_policy.exp() * log_policy).sum(-1)


def diag_gaussian_log_prob(mean: torch.Tensor, std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log N(a; m, diag(std^2)), summed over the last (action) dimension."""
    z = (actions - mean) / std
    return (-0.5 * z.pow(2) - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


def diag_gaussian_entropy(std: torch.Tensor) -> torch.Tensor:
    """H(N(m, diag(std^2))) = sum_j (1/2 + 1/2 log(2 pi) + log std_j)."""
    return (0.5 + 0.5 * math.log(2 * math.pi) + torch.log(std)).sum(-1)
