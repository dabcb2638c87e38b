"""Real Gymnasium environments that fail on purpose, for the fault tests.

Used through Gymnasium's ``module:EnvId`` form, e.g.
``--env_name tests.faulty_envs:CartPoleCrashing-v0``: importing this module registers them.
They are CartPole-v1 with one fault added after ``FAULT_AFTER`` steps of a process:
``CartPoleCrashing-v0`` raises in ``step``; ``CartPoleNaNReward-v0`` returns NaN rewards;
``CartPoleKilledOnce-v0`` kills its process once (see :class:`KilledOnceCartPole`);
``CartPoleStalling-v0`` blocks forever in ``step`` (a hung environment or actor).
``CartPoleSlowClose-v0`` takes ``SLOW_CLOSE_S`` seconds to close, as a worker writing a large
replay takes long to stop (its close comes after the worker saved its state).

:func:`break_learner_after` is the one fault that is not an environment's: it makes the
actor-learner mode's learner (in the driver, the ``main.py`` process) raise.
"""
import glob
import os
import shutil
import threading
import time

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


class StallingCartPole(_CountingCartPole):
    """Blocks forever (until its process is killed) in the step after ``FAULT_AFTER``."""

    def step(self, action):
        if self.steps >= FAULT_AFTER:
            threading.Event().wait()
        return super().step(action)


class SlowClosingCartPole(_CountingCartPole):
    """Sleeps ``SLOW_CLOSE_S`` seconds (default 5) in ``close``."""

    def close(self):
        time.sleep(float(os.environ.get("SLOW_CLOSE_S", "5")))
        super().close()


def break_learner_after(n_rollouts: int, models_dir: str = "Models") -> None:
    """Make ``Agent.backends.actor_learner.Learner.learn`` raise ``RuntimeError`` on its
    ``n_rollouts``-th call (its n-th batch: the n-th rollout with ``--learner_batch 1``), after
    that call's updates changed the weights. Just before raising,
    each ``<models_dir>/*/checkpoint.pth`` is copied to ``checkpoint.pth.at_fault``: the bytes
    the run must leave in place. Call it in the driver before ``main.py`` runs, e.g.
    ``python -c "from tests.faulty_envs import break_learner_after; break_learner_after(30);
    import runpy; runpy.run_path('main.py', run_name='__main__')" --do_train ...`` (the learner
    runs there; tests/test_actor_learner.py does this)."""
    from Agent.backends.actor_learner import Learner
    learn, calls = Learner.learn, [0]

    def failing_learn(self, batch):
        stats = learn(self, batch)
        calls[0] += 1
        if calls[0] >= n_rollouts:
            for path in glob.glob(os.path.join(models_dir, "*", "checkpoint.pth")):
                shutil.copyfile(path, path + ".at_fault")
            raise RuntimeError(f"injected learner fault on rollout {calls[0]}")
        return stats
    Learner.learn = failing_learn


gym.register("CartPoleCrashing-v0", entry_point=CrashingCartPole)
gym.register("CartPoleKilledOnce-v0", entry_point=KilledOnceCartPole)
gym.register("CartPoleNaNReward-v0", entry_point=NaNRewardCartPole)
gym.register("CartPoleStalling-v0", entry_point=StallingCartPole)
gym.register("CartPoleSlowClose-v0", entry_point=SlowClosingCartPole)
