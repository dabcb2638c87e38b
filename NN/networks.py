"""Networks: the original ACER network for images, an MLP with the same heads for vectors.

Both return ``(logits, q)``: policy logits and one Q-value per action. The
policy is ``softmax(logits)``; callers take ``log_softmax`` where they need
log-probabilities, which is more accurate than ``log(softmax)``.
"""
from __future__ import annotations

import torch
from torch import nn


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

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map a batch of observations to ``(policy logits, Q-values)``, each [B, A]."""
        x = obs.float()
        if self.kind == "nature_cnn":
            x = x / 255.0
        h = self.trunk(x)
        return self.policy_head(h), self.q_head(h)


def network_kind(obs_shape: tuple[int, ...]) -> str:
    """``"nature_cnn"`` for (C, H, W) image stacks, ``"mlp"`` for flat vectors."""
    if len(obs_shape) == 3:
        return "nature_cnn"
    if len(obs_shape) == 1:
        return "mlp"
    raise ValueError(f"no network for observations of shape {tuple(obs_shape)}")
