"""A toy algorithm defined outside the project, to show what adding one takes: REINFORCE with
a learned baseline (Williams 1992) on vector observations and discrete actions.

Each worker takes ``t_max`` steps (a setting it shares with feed-forward A3C), computes the
discounted returns R_t (cut at episode ends, bootstrapped with the baseline V at the rollout's
end) and updates the shared network with

    loss = -mean_t log pi(a_t|x_t) (R_t - V(x_t))  +  baseline_coef * mean_t (R_t - V(x_t))^2
           - entropy_coef * mean_t H(pi(.|x_t)),

``baseline_coef`` being a setting of its own, declared in its registry record.

Everything it needs from the project is the public seam: :class:`Agent.registry.Algorithm`
and :func:`Agent.registry.register`, :func:`Agent.interface.update_global` and the shared
return and entropy math. Importing this module registers it as ``--algo reinforce``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from Agent.interface import update_global
from Agent.registry import Algorithm, own_setting, register
from Agent.shared_math import entropy, retrace_targets
from Utils.network_spec import NetworkSpec

class ToyNet(nn.Module):
    """An MLP with a policy head and a baseline head."""

    kind = "mlp"

    def __init__(self, obs_shape, n_actions: int, hidden: int):
        super().__init__()
        self.obs_shape, self.n_actions = tuple(obs_shape), n_actions
        self.trunk = nn.Sequential(nn.Linear(int(np.prod(obs_shape)), hidden), nn.Tanh())
        self.policy_head = nn.Linear(hidden, n_actions)
        self.value_head = nn.Linear(hidden, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(obs.float())
        return self.policy_head(h), self.value_head(h).squeeze(-1)

    def initial_hidden(self, batch: int = 1) -> None:
        return None

    def step(self, obs: torch.Tensor, hidden=None):
        """Policy logits, as play asks for them."""
        return self(obs)[0], None


def toy_network(spec: NetworkSpec) -> ToyNet:
    if spec.action_bounds is not None or len(spec.obs_shape) != 1:
        raise ValueError("the toy takes vector observations and discrete actions")
    return ToyNet(spec.obs_shape, spec.n_actions, spec.mlp_hidden)


class ToyAgent:
    """One worker's REINFORCE: acts with the local copy, learns once per rollout."""

    def __init__(self, cfg, params, counters, worker_id: int, env):
        self.cfg, self.params, self.counters, self.worker_id = cfg, params, counters, worker_id
        self.rollout_length = toy_rollout_length(cfg)
        self.local_net = toy_network(NetworkSpec.of(params.obs_shape, params.n_actions, cfg))
        self.local_params = list(self.local_net.parameters())
        self.states, self.actions, self.rewards, self.dones = [], [], [], []
        self._next_obs = None

    def begin_rollout(self) -> None:
        self.params.pull(self.local_params)
        self.states, self.actions, self.rewards, self.dones = [], [], [], []

    def act(self, obs) -> int:
        x = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        self.states.append(x)
        with torch.no_grad():
            logits, _ = self.local_net(x.unsqueeze(0))
        return int(torch.multinomial(torch.softmax(logits[0], -1), 1))

    def record(self, action, reward: float, terminated: bool, truncated: bool, next_obs) -> None:
        self.actions.append(int(action))
        self.rewards.append(float(reward))
        self.dones.append(bool(terminated or truncated))

    def observe(self, obs, first: bool) -> None:
        self._next_obs = obs

    def learn(self) -> dict[str, float] | None:
        cfg = self.cfg
        states = torch.stack(self.states + [torch.as_tensor(np.asarray(self._next_obs), dtype=torch.float32)])
        logits, values = self.local_net(states)
        rewards, dones = torch.tensor(self.rewards), torch.tensor(self.dones)
        zeros = torch.zeros_like(rewards)
        returns = retrace_targets(rewards, dones, zeros, zeros, torch.ones_like(rewards),
                                  values[-1], cfg.gamma)
        log_policy = torch.log_softmax(logits[:-1], -1)
        taken = log_policy.gather(-1, torch.tensor(self.actions).unsqueeze(-1)).squeeze(-1)
        advantages = returns - values[:-1]
        policy_loss = -(taken * advantages.detach()).mean()
        value_loss = advantages.pow(2).mean()
        mean_entropy = entropy(log_policy).mean()
        loss = policy_loss + cfg.baseline_coef * value_loss - cfg.entropy_coef * mean_entropy
        stats = {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
                 "entropy": mean_entropy.detach()}
        return update_global(loss, stats, self.local_params, self.params, cfg, self.counters,
                             self.worker_id)

    def memory_size(self) -> int:
        return 0

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, obs) -> None:
        self._next_obs = obs


def make_toy_agent(cfg, params, counters, worker_id, env, rng) -> ToyAgent:
    return ToyAgent(cfg, params, counters, worker_id, env)


def toy_rollout_length(cfg) -> int:
    return cfg.t_max


def toy_title(cfg) -> str:
    return "REINFORCE (toy)"


REINFORCE = register(Algorithm(name="reinforce", build_network=toy_network,
                               make_agent=make_toy_agent, rollout_length=toy_rollout_length,
                               title=toy_title, reads=("t_max",),
                               settings=(own_setting("baseline_coef", 0.5, low=0.0,
                                                     help="reinforce: weight of the baseline's "
                                                          "squared error"),)))
