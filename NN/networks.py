"""Networks: ACER's (policy and Q heads) and A3C's (policy and value heads, LSTM or fc core),
and for continuous (Box) actions A3C's Gaussian policy with a value critic and ACER's Gaussian
policy with a Stochastic Dueling Network critic.

Each takes images (uint8 stacks, scaled by 1/255 inside) or flat vectors (an
MLP trunk). The policy is ``softmax(logits)``; callers take ``log_softmax``
where they need log-probabilities, which is more accurate than ``log(softmax)``.
Both expose ``initial_hidden()`` and ``step(obs, hidden) -> (logits, hidden)``
so that play and acting code need not know which network they hold.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from Utils.network_spec import NetworkSpec


def _init_weights(trunk: nn.Module, heads: list[nn.Linear]) -> None:
    """Kaiming-normal for conv and fc layers, Xavier-uniform for heads, zero biases."""
    for m in trunk.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    for head in heads:
        nn.init.xavier_uniform_(head.weight)
        nn.init.zeros_(head.bias)


class ACERNet(nn.Module):
    """Nature-CNN trunk (32x8x8/4, 64x4x4/2, 64x3x3/1, fc 512) or an MLP trunk,
    then a Q head and a policy head.

    Image inputs are uint8 stacks of shape (frames, 84, 84), scaled by 1/255
    inside the network so replay and acting can keep bytes.
    """

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, mlp_hidden: int = 128):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.n_actions = n_actions
        self.kind = network_kind(obs_shape)
        if self.kind == "nature_cnn":
            c, h, w = obs_shape
            self.trunk = nn.Sequential(
                nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(),
                nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
                nn.Flatten(),
            )
            with torch.no_grad():
                n_flat = self.trunk(torch.zeros(1, c, h, w)).shape[1]
            self.trunk.append(nn.Linear(n_flat, 512))
            self.trunk.append(nn.ReLU())
            features = 512
        else:
            (n_in,) = obs_shape
            self.trunk = nn.Sequential(
                nn.Linear(n_in, mlp_hidden), nn.ReLU(),
                nn.Linear(mlp_hidden, mlp_hidden), nn.ReLU(),
            )
            features = mlp_hidden
        self.q_head = nn.Linear(features, n_actions)
        self.policy_head = nn.Linear(features, n_actions)
        _init_weights(self.trunk, [self.q_head, self.policy_head])

    def forward(self, obs: torch.Tensor, bf16_trunk: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Map a batch of observations to ``(policy logits, Q-values)``, each [B, A].

        ``bf16_trunk``: run the trunk's matrix products in bfloat16 (CPU autocast; the weights
        stay float32 and receive float32 gradients), the heads in float32. Not in the paper or
        the original: the learner's speed option ``--precision bf16``."""
        x = obs.float()
        if self.kind == "nature_cnn":
            x = x / 255.0
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_trunk):
            h = self.trunk(x)
        h = h.float()
        return self.policy_head(h), self.q_head(h)

    def initial_hidden(self, batch: int = 1) -> None:
        """ACER's network has no recurrent state."""
        return None

    def step(self, obs: torch.Tensor, hidden=None) -> tuple[torch.Tensor, None]:
        """Policy logits for a batch of observations (``hidden`` is unused)."""
        return self(obs)[0], None


class A3CNet(nn.Module):
    """A3C's network (Mnih et al. 2016): conv 16x8x8/4, conv 32x4x4/2 (or an MLP for vectors),
    then an LSTM cell (``recurrent``, the original's A3C_Atari) or an fc layer with ReLU
    (the paper's feed-forward agent), then a policy head and a value head.

    The recurrent state is ``(h, c)``, each [B, hidden_size]; the feed-forward net's is None.
    """

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, recurrent: bool = True,
                 hidden_size: int = 256, mlp_hidden: int = 128):
        super().__init__()
        self.obs_shape, self.n_actions = tuple(obs_shape), n_actions
        self.recurrent, self.hidden_size = recurrent, hidden_size
        self.image = network_kind(obs_shape) == "nature_cnn"
        self.kind = f"a3c_{'cnn' if self.image else 'mlp'}_{'lstm' if recurrent else 'ff'}"
        if self.image:
            c, h, w = obs_shape
            self.trunk = nn.Sequential(
                nn.Conv2d(c, 16, 8, stride=4), nn.ReLU(),
                nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(),
                nn.Flatten(),
            )
            with torch.no_grad():
                features = self.trunk(torch.zeros(1, c, h, w)).shape[1]
        else:
            (n_in,) = obs_shape
            self.trunk = nn.Sequential(nn.Linear(n_in, mlp_hidden), nn.ReLU())
            features = mlp_hidden
        if recurrent:
            self.core = nn.LSTMCell(features, hidden_size)
        else:
            self.core = nn.Sequential(nn.Linear(features, hidden_size), nn.ReLU())
        self.policy_head = nn.Linear(hidden_size, n_actions)
        self.value_head = nn.Linear(hidden_size, 1)
        _init_weights(self.trunk, [self.policy_head, self.value_head])
        if recurrent:  # Xavier weights and zero biases for the LSTM, as in the original
            nn.init.xavier_uniform_(self.core.weight_ih)
            nn.init.xavier_uniform_(self.core.weight_hh)
            nn.init.zeros_(self.core.bias_ih)
            nn.init.zeros_(self.core.bias_hh)
        else:
            _init_weights(self.core, [])

    def initial_hidden(self, batch: int = 1):
        """Zero ``(h, c)`` for a new episode (None for the feed-forward net)."""
        if not self.recurrent:
            return None
        zeros = torch.zeros(batch, self.hidden_size)
        return zeros, zeros.clone()

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Trunk output for a batch of observations (images scaled by 1/255)."""
        x = obs.to(self.policy_head.weight.dtype)
        return self.trunk(x / 255.0 if self.image else x)

    def _lstm_step(self, input_gates: torch.Tensor, hidden):
        """One LSTM-cell step (``nn.LSTMCell``'s gates i, f, g, o) from the input's share of
        the gates, ``x W_ih^T + b_ih``, computed beforehand."""
        h, c = hidden
        core = self.core
        gates = input_gates + torch.nn.functional.linear(h, core.weight_hh, core.bias_hh)
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def _input_gates(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.core.weight_ih, self.core.bias_ih)

    def forward(self, obs: torch.Tensor, hidden=None):
        """One step for a batch: ``(logits [B, A], value [B], next hidden)``."""
        x = self.features(obs)
        if self.recurrent:
            if hidden is None:
                hidden = self.initial_hidden(obs.shape[0])
            hidden = self._lstm_step(self._input_gates(x), hidden)
            x = hidden[0]
        else:
            x = self.core(x)
        return self.policy_head(x), self.value_head(x).squeeze(-1), hidden

    def step(self, obs: torch.Tensor, hidden=None):
        """Policy logits and the next recurrent state."""
        logits, _, hidden = self(obs, hidden)
        return logits, hidden

    def unroll(self, obs: torch.Tensor, hidden, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [T, A] and values [T] along one worker's rollout of T observations.

        ``hidden`` is the state before ``obs[0]``; ``starts[t]`` (bool, [T]) zeroes the state
        before step t (a new episode). The convolutions run as one batch; the LSTM steps in
        order, and the graph links every step to the first (backpropagation through time).
        The input's share of the LSTM gates is one matrix product for the whole rollout, so
        the backward pass forms W_ih's gradient once rather than once per step (5x faster
        with Pong's 2592 conv features).
        """
        x = self.features(obs)
        if not self.recurrent:
            x = self.core(x)
        else:
            input_gates = self._input_gates(x)
            outputs = []
            h, c = hidden
            for t in range(x.shape[0]):
                if bool(starts[t]):
                    h, c = torch.zeros_like(h), torch.zeros_like(c)
                h, c = self._lstm_step(input_gates[t:t + 1], (h, c))
                outputs.append(h)
            x = torch.cat(outputs)
        return self.policy_head(x), self.value_head(x).squeeze(-1)


class _BoundedMean(nn.Module):
    """A Gaussian policy's mean, squashed into the action box: center + scale * tanh(head(h))."""

    def __init__(self, features: int, action_low, action_high):
        super().__init__()
        low = torch.as_tensor(action_low, dtype=torch.get_default_dtype())
        high = torch.as_tensor(action_high, dtype=torch.get_default_dtype())
        self.head = nn.Linear(features, low.numel())
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("scale", (high - low) / 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.center + self.scale * torch.tanh(self.head(h))


def _mlp(n_in: int, hidden: int, layers: int = 2) -> nn.Sequential:
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.ReLU()]
    return nn.Sequential(*modules)


def _check_box(obs_shape, action_low, action_high) -> None:
    if network_kind(obs_shape) != "mlp":
        raise ValueError(f"continuous actions need vector observations, got shape {tuple(obs_shape)}")
    low, high = torch.as_tensor(action_low), torch.as_tensor(action_high)
    if not (torch.isfinite(low).all() and torch.isfinite(high).all() and (high > low).all()):
        raise ValueError("continuous actions need a bounded action box (finite low < high), got "
                         f"low {low.tolist()}, high {high.tolist()}")


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class GaussianA3CNet(nn.Module):
    """A3C for continuous actions: a diagonal Gaussian policy and a value critic, as two MLPs
    (two hidden layers of ``mlp_hidden``; the original's continuous A3C also kept the critic
    separate). The mean is ``center + scale * tanh(.)``, inside the action box; the standard
    deviation is a learned parameter per action dimension (not a function of the state),
    ``min_std + (max_std - min_std) * sigmoid(.)`` times the box's half-width.

    Departure from the original, whose continuous branch had a state-dependent, unbounded
    ``softplus`` std: on HalfCheetah (unnormalised observations, ReLU features) that head
    went to one extreme or the other within minutes: with entropy 0.01 the std grew without
    limit (actions clipped to the box make a wider Gaussian free), bounded at the half-width it
    stayed at the bound, and with entropy 1e-4 or 1e-3 it collapsed to a few hundredths. A
    state-independent std, bounded by the half-width, is the usual remedy (Schulman et al.'s
    TRPO and PPO policies, for instance).

    The interface matches :class:`A3CNet` with the policy given as ``(mean, std)``; there is
    no recurrent state (``hidden`` is always None).
    """

    recurrent = False

    def __init__(self, obs_shape: tuple[int, ...], action_low, action_high, mlp_hidden: int = 128,
                 min_std: float = 1e-3, max_std: float = 1.0):
        super().__init__()
        _check_box(obs_shape, action_low, action_high)
        self.obs_shape = tuple(obs_shape)
        self.n_actions = len(action_low)
        self.kind = "a3c_mlp_gaussian"
        (n_in,) = obs_shape
        self.actor = _mlp(n_in, mlp_hidden)
        self.mean_head = _BoundedMean(mlp_hidden, action_low, action_high)
        # start at std = half the box's half-width
        start = _logit((0.5 - min_std) / (max_std - min_std))
        self.std_logit = nn.Parameter(torch.full((self.n_actions,), start))
        self.critic = nn.Sequential(_mlp(n_in, mlp_hidden), nn.Linear(mlp_hidden, 1))
        self.min_std, self.max_std = min_std, max_std
        _init_weights(self.actor, [self.mean_head.head])
        _init_weights(self.critic[0], [self.critic[1]])
        with torch.no_grad():  # start near mean = center
            self.mean_head.head.weight.mul_(0.1)

    def initial_hidden(self, batch: int = 1) -> None:
        return None

    def policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)``, each [B, d]."""
        h = self.actor(obs.to(self.std_logit.dtype))
        mean = self.mean_head(h)
        fraction = torch.sigmoid(self.std_logit).expand_as(mean)
        std = (self.min_std + (self.max_std - self.min_std) * fraction) * self.mean_head.scale
        return mean, std

    def forward(self, obs: torch.Tensor, hidden=None):
        """``((mean, std), value [B], None)``."""
        value = self.critic(obs.to(self.std_logit.dtype)).squeeze(-1)
        return self.policy(obs), value, None

    def step(self, obs: torch.Tensor, hidden=None):
        return self.policy(obs), None

    def unroll(self, obs: torch.Tensor, hidden, starts: torch.Tensor):
        """``((mean, std) [T, d], values [T])`` for a rollout (no state to carry)."""
        policy, value, _ = self(obs)
        return policy, value


class SDNet(nn.Module):
    """ACER for continuous actions (Wang et al. 2016, section 4): a diagonal Gaussian policy
    with a fixed standard deviation and a Stochastic Dueling Network critic.

    * policy: MLP -> mean ``center + scale * tanh(.)``; std = ``policy_std`` times the box's
      half-width, fixed (the paper's choice: the policy statistics phi are the mean alone)
    * critic: MLP trunk h(x) -> V(x), and A(x, a) = MLP([h(x), (a - center) / scale]) -> scalar.
      The SDN estimate Q~(x, a) = V(x) + A(x, a) - 1/n sum_j A(x, u_j), u_j ~ f(.|x), is formed
      by the loss, which draws the u_j.

    The actor and critic share no layers, a departure from the Atari network where one trunk
    feeds both heads; for low-dimensional control it keeps the critic's larger gradients out
    of the policy's features.
    """

    def __init__(self, obs_shape: tuple[int, ...], action_low, action_high, mlp_hidden: int = 128,
                 policy_std: float = 0.3):
        super().__init__()
        _check_box(obs_shape, action_low, action_high)
        self.obs_shape = tuple(obs_shape)
        self.n_actions = len(action_low)
        self.kind = "acer_mlp_sdn"
        (n_in,) = obs_shape
        self.actor = _mlp(n_in, mlp_hidden)
        self.mean_head = _BoundedMean(mlp_hidden, action_low, action_high)
        self.register_buffer("std", policy_std * self.mean_head.scale.clone())
        self.critic_trunk = _mlp(n_in, mlp_hidden)
        self.value_head = nn.Linear(mlp_hidden, 1)
        self.advantage = nn.Sequential(nn.Linear(mlp_hidden + self.n_actions, mlp_hidden), nn.ReLU(),
                                       nn.Linear(mlp_hidden, 1))
        _init_weights(self.actor, [self.mean_head.head])
        with torch.no_grad():  # start near mean = center
            self.mean_head.head.weight.mul_(0.1)
        _init_weights(self.critic_trunk, [self.value_head])
        _init_weights(self.advantage[:2], [self.advantage[2]])

    def initial_hidden(self, batch: int = 1) -> None:
        return None

    def policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean [B, d], std [B, d])``."""
        mean = self.mean_head(self.actor(obs.to(self.value_head.weight.dtype)))
        return mean, self.std.expand_as(mean)

    def critic(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """V(x) [B] and A(x, a) [B, m] for ``actions`` [B, m, d] (m actions per state)."""
        h = self.critic_trunk(obs.to(self.value_head.weight.dtype))
        a = (actions - self.mean_head.center) / self.mean_head.scale
        pairs = torch.cat([h.unsqueeze(1).expand(-1, a.shape[1], -1), a.to(h.dtype)], dim=-1)
        return self.value_head(h).squeeze(-1), self.advantage(pairs).squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(x) [B] alone."""
        return self.value_head(self.critic_trunk(obs.to(self.value_head.weight.dtype))).squeeze(-1)

    def step(self, obs: torch.Tensor, hidden=None):
        return self.policy(obs), None


def acer_network(spec: NetworkSpec) -> nn.Module:
    """ACER's network: :class:`ACERNet` for discrete actions, :class:`SDNet` (Gaussian policy
    with ``policy_std``) for a Box."""
    if spec.action_bounds is None:
        return ACERNet(spec.obs_shape, spec.n_actions, spec.mlp_hidden)
    low, high = map(list, spec.action_bounds)
    return SDNet(spec.obs_shape, low, high, spec.mlp_hidden, spec.policy_std)


def a3c_network(spec: NetworkSpec) -> nn.Module:
    """A3C's network: :class:`A3CNet` (LSTM with ``recurrent``, else the paper's feed-forward
    net) for discrete actions, :class:`GaussianA3CNet` for a Box (feed-forward only)."""
    if spec.action_bounds is None:
        return A3CNet(spec.obs_shape, spec.n_actions, spec.recurrent, spec.hidden_size,
                      spec.mlp_hidden)
    if spec.recurrent:
        raise ValueError("continuous A3C has no recurrent network; set recurrent: false "
                         "(--no_recurrent)")
    low, high = map(list, spec.action_bounds)
    return GaussianA3CNet(spec.obs_shape, low, high, spec.mlp_hidden)


def network_kind(obs_shape: tuple[int, ...]) -> str:
    """``"nature_cnn"`` for (C, H, W) image stacks, ``"mlp"`` for flat vectors."""
    if len(obs_shape) == 3:
        return "nature_cnn"
    if len(obs_shape) == 1:
        return "mlp"
    raise ValueError(f"no network for observations of shape {tuple(obs_shape)}")
