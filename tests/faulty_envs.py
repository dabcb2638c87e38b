"""Real Gymnasium environments that fail on purpose, for the fault tests.

Used through Gymnasium's ``module:EnvId`` form, e.g.
``--env_name tests.faulty_envs:CartPoleCrashing-v0``: importing this module registers them.
They are CartPole-v1 with one fault added after ``FAULT_AFTER`` steps of a process:
``CartPoleCrashing-v0`` raises in ``step``; ``CartPoleNaNReward-v0`` returns NaN rewards;
``CartPoleKilledOnce-v0`` kills its process once (see :class:`KilledOnceCartPole`).
"""
import os

import gymnasium as gym

FAULT_AFTER = int(os.environ.get("FAULT_AFTER", "300"))


class _CountingCartPole(gym.Wrapper):
    def __init__(self, render_mode=None):
        super().__init__(gym.make("CartPole-v1", render_mode=render_mode))
        self.steps = 0

    def step(self, action):
        self.steps += 1
        return self.env.step(action)


class CrashingCartPole(_CountingCartPole):
    """Raises ``RuntimeError`` on the step after ``FAULT_AFTER``."""

    def step(self, action):
        if self.steps >= FAULT_AFTER:
            raise RuntimeError(f"simulated environment crash after {self.steps} steps")
        return super().step(action)


class NaNRewardCartPole(_CountingCartPole):
    """Returns a NaN reward from step ``FAULT_AFTER`` on."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.steps > FAULT_AFTER:
            reward = float("nan")
        return obs, reward, terminated, truncated, info


class KilledOnceCartPole(_CountingCartPole):
    """Kills its own process (SIGKILL) on the step after ``FAULT_AFTER``, once per file
    ``KILL_MARKER``: the first process to get there creates it and dies; later ones run on."""

    def step(self, action):
        marker = os.environ.get("KILL_MARKER")
        if self.steps >= FAULT_AFTER and marker:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                import signal
                os.kill(os.getpid(), signal.SIGKILL)
        return super().step(action)


gym.register("CartPoleCrashing-v0", entry_point=CrashingCartPole)
gym.register("CartPoleKilledOnce-v0", entry_point=KilledOnceCartPole)
gym.register("CartPoleNaNReward-v0", entry_point=NaNRewardCartPole)
