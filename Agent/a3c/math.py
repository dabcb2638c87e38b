"""A3C's update as pure functions (Mnih et al. 2016, Algorithm S3).

For a rollout x_0..x_{T-1} with actions a_t, (clipped) rewards r_t and episode
ends d_t, and the state x_T after it:

* n-step returns, backwards from the bootstrap R_T = V(x_T) (zero when the
  last step ended an episode; a done in the middle of the rollout cuts the
  sum there):  R_t = r_t + gamma (1 - d_t) R_{t+1}
* advantage A_t = R_t - V(x_t), held constant in the policy term
* loss = -mean_t log pi(a_t|x_t) A_t  +  critic_coef * mean_t (R_t - V(x_t))^2
         - entropy_coef * mean_t H(pi(.|x_t))

The paper accumulates (sums) the per-step gradients; here the terms are averaged
over the T steps, as in this project's ACER loss. With Adam the two differ only
through gradient clipping and Adam's epsilon (the update is scale-free otherwise).
"""
from __future__ import annotations

import torch

from Agent.shared_math import diag_gaussian_entropy, diag_gaussian_log_prob, entropy, retrace_targets


def n_step_returns(rewards: torch.Tensor, dones: torch.Tensor, bootstrap_value: torch.Tensor,
                   gamma: float) -> torch.Tensor:
    """R_t for t = 0..T-1 from ``rewards`` and ``dones`` ([T, ...]) and ``bootstrap_value``
    = V(x_T) (the trailing shape). Treated as a target: no gradient flows through it.

    This is ACER's Retrace recursion with every trace c_i = 1 and Q(x_t, a_t) = V(x_t):
    Q_ret <- 1 * (Q_ret - V) + V leaves the return untouched between steps."""
    zeros = torch.zeros_like(rewards)
    return retrace_targets(rewards, dones, q_taken=zeros, values=zeros, rho_bar=torch.ones_like(rewards),
                           bootstrap_value=bootstrap_value, gamma=gamma)


def a3c_loss(logits: torch.Tensor, values: torch.Tensor, actions: torch.Tensor,
             returns: torch.Tensor, entropy_coef: float, critic_coef: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A3C's loss for one rollout: ``logits`` [T, A], ``values`` V(x_t) [T], ``actions`` [T],
    ``returns`` R_t [T]. Returns the scalar loss and detached statistics."""
    log_policy = torch.log_softmax(logits, -1)
    log_pi_taken = log_policy.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    return _a3c_terms(log_pi_taken, entropy(log_policy), values, returns, entropy_coef, critic_coef)


def _a3c_terms(log_pi_taken: torch.Tensor, entropies: torch.Tensor, values: torch.Tensor,
               returns: torch.Tensor, entropy_coef: float, critic_coef: float
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The three terms from log pi(a_t|x_t), H(pi(.|x_t)), V(x_t) and R_t, each [T]."""
    advantages = returns - values
    policy_loss = -(log_pi_taken * advantages.detach()).mean()
    value_loss = advantages.pow(2).mean()
    mean_entropy = entropies.mean()
    loss = policy_loss + critic_coef * value_loss - entropy_coef * mean_entropy
    return loss, {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
                  "entropy": mean_entropy.detach(), "advantage_mean": advantages.detach().mean()}


def gaussian_a3c_loss(mean: torch.Tensor, std: torch.Tensor, values: torch.Tensor,
                      actions: torch.Tensor, returns: torch.Tensor, entropy_coef: float,
                      critic_coef: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A3C's loss for continuous actions with a diagonal Gaussian policy: ``mean``, ``std``,
    ``actions`` [T, d], ``values``, ``returns`` [T]. The same three terms as :func:`a3c_loss`,
    with log pi(a|x) = log N(a; mean, diag(std^2)) and the Gaussian's entropy."""
    return _a3c_terms(diag_gaussian_log_prob(mean, std, actions), diag_gaussian_entropy(std),
                      values, returns, entropy_coef, critic_coef)
