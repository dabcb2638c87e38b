"""Play back trained weights: full games (no episodic life), raw scores."""
from __future__ import annotations

import numpy as np
import torch

from NN.networks import ACERNet
from Utils.atari_wrappers import make_env
from Utils.checkpoint import CheckpointError


def build_policy(state: dict, env_name: str) -> ACERNet:
    """The network stored in a checkpoint, checked against ``env_name``."""
    if state.get("env_name") != env_name:
        raise CheckpointError(f"these weights were trained on {state.get('env_name')}, "
                              f"not {env_name}")
    net = ACERNet(tuple(state["obs_shape"]), int(state["n_actions"]),
                  int(state["config"].get("mlp_hidden", 128)))
    if net.kind != state.get("network_kind"):
        raise CheckpointError(f"checkpoint network kind {state.get('network_kind')} does not "
                              f"match {net.kind} for {env_name}")
    net.load_state_dict(state["model"])
    net.eval()
    return net


def play(state: dict, env_name: str, episodes: int = 1, seed: int = 123,
         greedy: bool = False, verbose: bool = True) -> list[float]:
    """Play ``episodes`` full games with the checkpoint's policy; return the raw scores."""
    net = build_policy(state, env_name)
    frame_stack = int(state["config"].get("frame_stack", 4))
    env = make_env(env_name, training=False, frame_stack=frame_stack)
    if tuple(env.observation_space.shape) != tuple(state["obs_shape"]) or \
            env.action_space.n != state["n_actions"]:
        raise CheckpointError(f"checkpoint expects observations {tuple(state['obs_shape'])} and "
                              f"{state['n_actions']} actions; {env_name} has "
                              f"{env.observation_space.shape} and {env.action_space.n}")
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        while True:
            with torch.no_grad():
                logits, _ = net(torch.from_numpy(np.asarray(obs)).unsqueeze(0))
            if greedy:
                action = int(logits.argmax())
            else:
                action = int(torch.multinomial(torch.softmax(logits[0], -1), 1, generator=generator))
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                scores.append(float(info["episode"]["r"]))
                if verbose:
                    print(f"Episode {episode + 1}: score {scores[-1]:.1f}", flush=True)
                break
    env.close()
    return scores
