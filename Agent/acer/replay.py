"""Per-worker replay memory that stores every observed frame once.

The worker writes a stream: the newest frame of each state it acts on
(:meth:`ReplayMemory.add_frame`, flagged when it starts an episode), then the
transition taken from it (:meth:`ReplayMemory.add_transition`: action, clipped
reward, done, behaviour policy mu, and the final observation's newest frame when a
time limit cut the episode, so that the update can bootstrap from V(x_final) under
the network it is computed with). Rollouts are ``k`` steps long, so
trajectory ``n`` is the steps ``n*k .. n*k+k-1`` plus the bootstrap state at
step ``(n+1)*k``, which is also the first state of trajectory ``n+1``.

A state's frame stack is rebuilt when sampled from the last ``stack`` frames,
padded with the episode's first frame as ``FrameStackObservation(padding_type=
"reset")`` does, so the memory holds 84*84 bytes per step instead of the
original's 4*84*84 (about 7.1 KB per transition with the rest, 4.3 GB for
the default 6e5 budget instead of about 17 GB).

Storage is a ring of ``capacity*k + k + stack - 1`` steps: exactly
``capacity`` complete trajectories (with the history frames their first
stacks need) are always available once the ring has filled. Arrays are
allocated lazily by the OS, so memory grows as the ring fills.
"""
from __future__ import annotations

import numpy as np


def replay_capacity(cfg) -> int:
    """Trajectories each worker's replay holds: total // (n_workers * k), as in the original."""
    return cfg.total_memory_size // (cfg.n_workers * cfg.k)


class ReplayMemory:
    """Ring buffer of steps holding ``capacity`` trajectories of length ``k``."""

    def __init__(self, capacity: int, k: int, frame_shape: tuple[int, ...], mu_width: int,
                 stack: int = 1, frame_dtype=np.uint8, action_shape: tuple[int, ...] = (),
                 action_dtype=np.int64):
        """``mu_width``: numbers describing the behaviour policy per step (the action
        probabilities, or a Gaussian's means then standard deviations); ``action_shape`` and
        ``action_dtype``: () and int64 for discrete actions, (d,) and float32 for a Box."""
        if capacity < 1 or k < 1 or stack < 1:
            raise ValueError("replay capacity, k and stack must be at least 1")
        self.capacity, self.k, self.stack = capacity, k, stack
        self.frame_shape = tuple(frame_shape)
        self.size = capacity * k + k + stack - 1
        self.frames = np.zeros((self.size, *self.frame_shape), dtype=frame_dtype)
        self.first = np.zeros(self.size, dtype=bool)
        self.actions = np.zeros((self.size, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(self.size, dtype=np.float32)
        self.dones = np.zeros(self.size, dtype=bool)
        self.mus = np.zeros((self.size, mu_width), dtype=np.float32)
        self.truncated = np.zeros(self.size, dtype=bool)
        # Newest frame of the final observation of each time-limit truncation, by stream step
        # (rare: one per cut episode), dropped when the ring overwrites that step.
        self.final_frames: dict[int, np.ndarray] = {}
        self.n_frames = 0        # frames written (the step index of the next frame)
        self.n_transitions = 0   # transitions written

    def add_frame(self, frame: np.ndarray, first: bool) -> None:
        """Store the newest frame of the state the agent now observes."""
        if self.n_frames != self.n_transitions:
            raise RuntimeError("add_frame called twice without a transition in between")
        slot = self.n_frames % self.size
        self.frames[slot] = frame
        self.first[slot] = first
        self.n_frames += 1

    def add_transition(self, action, reward: float, done: bool, mu: np.ndarray,
                       final_frame: np.ndarray | None = None) -> None:
        """Store what was done from the last added state.

        ``final_frame``: the newest frame of the final observation when a time limit cut the
        episode (``done`` but not terminal); None otherwise.
        """
        if self.n_transitions != self.n_frames - 1:
            raise RuntimeError("add_transition needs the state's frame first")
        if final_frame is not None and not done:
            raise ValueError("a time-limit truncation ends the episode: done must be True")
        step = self.n_transitions
        slot = step % self.size
        self.actions[slot] = action
        self.rewards[slot] = reward
        self.dones[slot] = done
        self.mus[slot] = mu
        self.truncated[slot] = final_frame is not None
        self.final_frames.pop(step - self.size, None)  # the step this slot held before
        if final_frame is not None:
            self.final_frames[step] = np.array(final_frame, dtype=self.frames.dtype)
        self.n_transitions += 1

    def restart_stream(self, frame: np.ndarray) -> None:
        """The source of the stream restarted with a new episode (an actor that died and came
        back with a fresh environment) while the state last added has no transition yet.

        The episode it belonged to was cut there: its last transition becomes a truncation
        whose final observation is that state (as a time-limit cut stores it: done, flagged,
        its newest frame kept), so updates bootstrap it from V(x_final); then ``frame``, a
        new episode's first, takes that state's place."""
        if self.n_frames != self.n_transitions + 1:
            raise RuntimeError("restart_stream needs a state without a transition")
        self.n_frames -= 1
        cut = self.n_transitions - 1
        if cut >= 0 and not self.dones[cut % self.size]:
            slot = cut % self.size
            self.final_frames[cut] = np.array(self.frames[self.n_frames % self.size],
                                              dtype=self.frames.dtype)
            self.dones[slot] = True
            self.truncated[slot] = True
        self.add_frame(frame, first=True)

    def _range(self) -> tuple[int, int]:
        """Indices [lo, hi] of the complete trajectories still in memory."""
        hi = (self.n_frames - 1) // self.k - 1
        oldest_needed = self.n_frames - self.size + self.stack - 1
        lo = max(0, -(-oldest_needed // self.k))
        return lo, hi

    def __len__(self) -> int:
        lo, hi = self._range()
        return max(0, hi - lo + 1)

    def stacks(self, steps: np.ndarray) -> np.ndarray:
        """Rebuild the observations (frame stacks) of the states at stream ``steps``."""
        steps = np.asarray(steps, dtype=np.int64)
        if self.stack == 1:
            return self.frames[steps % self.size]
        window = steps[:, None] + np.arange(1 - self.stack, 1)            # [N, stack]
        starts = np.where(self.first[window % self.size] & (window >= 0), window, -1)
        episode_start = starts.max(axis=1, keepdims=True)                  # latest reset in window
        return self.frames[np.maximum(window, episode_start) % self.size]

    def final_states(self, steps: np.ndarray) -> np.ndarray:
        """The final observations of the time-limit truncations at stream ``steps``: the
        state's stack shifted by one frame, ending with the stored final frame."""
        steps = np.asarray(steps, dtype=np.int64)
        finals = self.final_frames_of([int(t) for t in steps])
        if self.stack == 1:
            return finals
        return np.concatenate([self.stacks(steps)[:, 1:], finals[:, None]], axis=1)

    def trajectory(self, n: int) -> dict[str, np.ndarray]:
        """Trajectory ``n``: ``states`` [k+1, ...] (x_0..x_k), ``actions``, ``rewards``,
        ``dones``, ``truncated`` [k], ``mus`` [k, A] and ``final_states`` [m, ...], the final
        observations of the m steps where a time limit cut the episode, in step order."""
        lo, hi = self._range()
        if not lo <= n <= hi:
            raise IndexError(f"trajectory {n} is not in memory (have {lo}..{hi})")
        steps = n * self.k + np.arange(self.k + 1)
        slots = steps[:-1] % self.size
        truncated = self.truncated[slots]
        return {"states": self.stacks(steps), "actions": self.actions[slots],
                "rewards": self.rewards[slots], "dones": self.dones[slots], "mus": self.mus[slots],
                "truncated": truncated, "final_states": self.final_states(steps[:-1][truncated])}

    def latest(self) -> dict[str, np.ndarray]:
        """The most recently completed trajectory."""
        return self.trajectory(self.newest())

    def newest(self) -> int:
        """The number of the most recently completed trajectory."""
        return self._range()[1]

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A trajectory drawn uniformly from those in memory."""
        return self.trajectory(self.sample_index(rng))

    def sample_index(self, rng: np.random.Generator) -> int:
        """The number of a trajectory drawn uniformly from those in memory."""
        lo, hi = self._range()
        if hi < lo:
            raise IndexError("replay memory holds no complete trajectory")
        return int(rng.integers(lo, hi + 1))

    def age(self, n: int) -> int:
        """How many of this memory's trajectories were completed after trajectory ``n``."""
        return self.newest() - n

    _ARRAYS = ("frames", "first", "actions", "rewards", "dones", "mus", "truncated")

    def state_dict(self) -> dict:
        """The stored steps (only the slots written so far) as tensors, plus the counters."""
        import torch
        used = min(self.n_frames, self.size)
        steps = sorted(self.final_frames)
        finals = self.final_frames_of(steps)
        return {"n_frames": self.n_frames, "n_transitions": self.n_transitions, "size": self.size,
                **{name: torch.from_numpy(getattr(self, name)[:used].copy()) for name in self._ARRAYS},
                "final_steps": torch.tensor(steps, dtype=torch.int64),
                "final_frames": torch.from_numpy(finals)}

    def final_frames_of(self, steps: list[int]) -> np.ndarray:
        """The stored final frames of the truncations at ``steps``, stacked."""
        if not steps:
            return np.zeros((0, *self.frame_shape), dtype=self.frames.dtype)
        return np.stack([self.final_frames[t] for t in steps])

    def load_state_dict(self, state: dict, gamma: float | None = None) -> None:
        """Refill from :meth:`state_dict` of a memory with the same shape.

        A replay saved before truncations kept their final frames holds instead
        ``truncation_values``, V(x_final) from acting time: those steps stay terminal with
        ``r + gamma * V`` folded into their reward (``gamma`` is needed then), which is what
        that version trained on."""
        if state["size"] != self.size:
            raise ValueError(f"saved replay has {state['size']} slots, this one {self.size}")
        legacy_values = state.get("truncation_values")
        if legacy_values is not None and bool(legacy_values.any()) and gamma is None:
            raise ValueError("this saved replay stores truncation values: pass gamma")
        for name in self._ARRAYS:
            if name in state:
                values = state[name].numpy()
                getattr(self, name)[:len(values)] = values
        if "truncated" not in state:
            self.truncated[:] = False
        if legacy_values is not None and bool(legacy_values.any()):
            values = legacy_values.numpy()
            self.rewards[:len(values)] += np.float32(gamma) * values
        steps, frames = state.get("final_steps"), state.get("final_frames")
        self.final_frames = {} if steps is None else {
            int(t): f for t, f in zip(steps.tolist(), frames.numpy())}
        self.n_frames, self.n_transitions = int(state["n_frames"]), int(state["n_transitions"])

    def nbytes_per_transition(self) -> float:
        """Bytes the ring holds per step, all arrays counted."""
        total = sum(a.nbytes for a in (self.frames, self.first, self.actions, self.rewards,
                                       self.dones, self.mus, self.truncated))
        return total / self.size
