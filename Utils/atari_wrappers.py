"""Environment pipeline: DeepMind-style Atari preprocessing on Gymnasium + ale-py.

Built from Gymnasium's own wrappers wherever they behave as needed:

* ``AtariPreprocessing``: no-op reset (1..30 random NOOPs), max-and-skip 4,
  grayscale, 84x84 INTER_AREA resize. One difference from the DeepMind
  baselines: the max over the last two frames is taken on grayscale frames
  rather than on RGB frames before the grayscale conversion.
* ``RecordEpisodeStatistics`` (placed *inside* episodic life, so it sees whole
  games): the raw, unclipped game score and length land in ``info["episode"]``
  when a real game ends.
* ``TransformReward(np.sign)``: sign-clipped training rewards.
* ``FrameStackObservation(4, padding_type="reset")``: the stack is refilled
  with the first frame at every episode start.

Written here because Gymnasium lacks them with these semantics:

* :class:`EpisodicLife`: a lost life ends the episode for learning, but the
  game is only really reset on game over (Gymnasium's
  ``terminal_on_life_loss`` resets the whole game on the following reset).
* :class:`FireReset`: presses FIRE (then action 2) after every reset for games
  that wait for it.
* :class:`FireOnNewLife` (play's ``--fire_on_new_life`` only): the same after every lost
  life of a full game, as training's episodic life does.

Vector-observation environments (CartPole-v1, Pendulum-v1, MuJoCo, ...) get only
the episode statistics wrapper and, for Box actions, ``ClipAction``: the agent
samples from an unbounded Gaussian and learns from that sample, while the
environment receives it clipped into the box.
"""
from __future__ import annotations

import difflib
import importlib

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import (AtariPreprocessing, ClipAction, FrameStackObservation,
                                RecordEpisodeStatistics, TransformReward)

gym.register_envs(ale_py)
# The emulator's start-up banner goes to stderr in every process; keep stderr for errors.
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)

FRAME_SIZE = 84
FIRE_START = (1, 2)   # FIRE, then action 2: how FireReset (and FireOnNewLife) start a ball


class EpisodicLife(gym.Wrapper):
    """End the episode on a life loss; reset the game only on a real game over.

    After a life loss, ``reset`` continues the same game with one NOOP step
    instead of restarting it, so the agent learns that losing a life is final
    while the emulator keeps playing (Mnih et al. 2015).

    Every episode it ends (a life, or the rest of a game) is reported in ``info["life"]`` as
    ``{"r": raw score, "l": agent steps, "game_over": the game ended too}``: the episodes the
    original counted and logged.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True
        self.life_return, self.life_length = 0.0, 0   # raw (unclipped) score of the current life

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.life_return += float(reward)
        self.life_length += 1
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
            info["life_lost"] = True
        self.lives = lives
        if terminated or truncated:
            info["life"] = {"r": self.life_return, "l": self.life_length,
                            "game_over": self.game_over}
            self.life_return, self.life_length = 0.0, 0
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, reward, terminated, truncated, info = self.env.step(0)
            self.life_return += float(reward)  # the next life's score starts with this step's
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
                self.life_return = 0.0
        self.game_over = False
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class StickyActions(gym.Wrapper):
    """With probability ``p``, each emulator frame executes the previous frame's action instead
    of the one chosen (Machado et al. 2018; what ALE v5's ``repeat_action_probability`` does
    inside the emulator, done here, below the frame skip, so that play can count it).

    ``frames``, ``repeated`` (frames that took the previous action) and ``differed`` (frames
    whose executed action was not the chosen one) count what happened."""

    def __init__(self, env: gym.Env, p: float, seed: int | None = None):
        super().__init__(env)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"sticky action probability must be in [0, 1), got {p}")
        self.p, self.rng = p, np.random.default_rng(seed)
        self.previous = 0
        self.frames = self.repeated = self.differed = 0

    def reset(self, **kwargs):
        self.previous = 0   # NOOP, as the emulator starts
        return self.env.reset(**kwargs)

    def step(self, action):
        executed = action
        if self.rng.random() < self.p:
            executed = self.previous
            self.repeated += 1
        self.differed += int(executed != action)
        self.frames += 1
        self.previous = executed
        return self.env.step(executed)


class FireReset(gym.Wrapper):
    """Take FIRE then action 2 after every reset, for games that need FIRE to start."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        if not starts_with_fire(env):
            raise ValueError("FireReset needs a game whose action 1 is FIRE")

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        for action in FIRE_START:
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


class FireOnNewLife(gym.Wrapper):
    """Play only (``--fire_on_new_life``): after a lost life, take NOOP, FIRE and action 2 for
    the agent, the steps training's :class:`EpisodicLife` and :class:`FireReset` take at every
    new life, so that games that wait for FIRE (Breakout) go on.

    A departure from the papers' protocol, where the agent itself must press FIRE; an agent
    trained with :class:`FireReset` never had to. The steps' rewards count in the score and
    ``info["extra_steps"]`` says how many agent steps were taken beside the agent's own.
    ``presses`` counts the new lives it started.

    Only the actions are training's: the frame stack above keeps the frames from before the
    lost life, where training's next episode starts a new stack. Under sticky actions FIRE can
    fail to register (all four frames of its step repeating NOOP: 0.25 ** 4, 0.4% of lives at
    p = 0.25), as it can in training; that life then stalls."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        if not starts_with_fire(env):
            raise ValueError("FireOnNewLife needs a game whose action 1 is FIRE")
        self.lives, self.presses = 0, 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives and not (terminated or truncated):
            self.presses += 1
            obs, extra_reward, terminated, truncated, info = self._start_life()
            reward += extra_reward
        self.lives = self.env.unwrapped.ale.lives()
        return obs, reward, terminated, truncated, info

    def _start_life(self):
        """NOOP, FIRE, action 2 (fewer if the game ends on the way)."""
        total, taken = 0.0, 0
        for extra in (0, *FIRE_START):   # EpisodicLife's NOOP, then FireReset's start
            obs, reward, terminated, truncated, info = self.env.step(extra)
            total, taken = total + float(reward), taken + 1
            if terminated or truncated:
                break
        info["extra_steps"] = taken
        return obs, total, terminated, truncated, info


def starts_with_fire(env: gym.Env) -> bool:
    """True for an Atari game whose action 1 is FIRE (with at least 3 actions): the games
    :class:`FireReset` starts."""
    meanings = env.unwrapped.get_action_meanings()
    return len(meanings) >= 3 and meanings[1] == "FIRE"


def game_starts_with_fire(env_id: str) -> bool:
    """:func:`starts_with_fire` for an environment id (False for non-Atari ids)."""
    if not is_atari(env_id):
        return False
    env = gym.make(env_id)
    try:
        return starts_with_fire(env)
    finally:
        env.close()


def is_atari(env_id: str) -> bool:
    """True for environment ids served by ale-py (``ALE/...`` or ``...NoFrameskip-v4``)."""
    spec = gym.spec(env_id.split(":")[-1])  # "module:EnvId" once the module registered it
    return "ale_py" in str(spec.entry_point)


def check_env_id(env_id: str) -> None:
    """Raise ``ValueError`` with close suggestions when ``env_id`` is not registered.

    ``module:EnvId`` (Gymnasium's form for environments registered by a module) imports the
    module first, as ``gym.make`` does."""
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"cannot import module '{module}' for environment '{env_id}': {err}") from None
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(f"unknown environment id '{env_id}'{hint}")


def own_frameskip(env_id: str) -> int:
    """The frame skip an Atari id applies itself (1 for NoFrameskip-v4, 4 for ALE/...-v5)."""
    skip = gym.spec(env_id.split(":")[-1]).kwargs.get("frameskip", 1)
    return skip if isinstance(skip, int) else 0


def sticky_probability(env_id: str) -> float:
    """The emulator's own sticky-action probability for an Atari id (0.25 for ALE v5)."""
    return float(gym.spec(env_id.split(":")[-1]).kwargs.get("repeat_action_probability", 0.0))


def pipeline_note(env_id: str) -> str | None:
    """A line saying how an Atari id that is not NoFrameskip-v4 is run, or None."""
    if not is_atari(env_id):
        return None
    skip, sticky = own_frameskip(env_id), sticky_probability(env_id)
    if skip == 1 and not sticky:
        return None
    if skip not in (1, 4):
        raise ValueError(f"{env_id} skips a random number of frames; use a NoFrameskip-v4 id "
                         f"or an ALE/...-v5 id")
    return (f"note: {env_id} keeps its own sticky actions (repeat_action_probability {sticky:g}, "
            f"in the emulator); the pipeline applies the frame skip (4 frames per agent step, "
            f"the last two max-pooled) with the id's own skip set to 1")


def make_env(env_id: str, training: bool = True, frame_stack: int = 4,
             render_mode: str | None = None, noop_max: int = 30, sticky: float = 0.0,
             seed: int | None = None, fire_on_new_life: bool = False) -> gym.Env:
    """Build the environment used for training (``training=True``) or play.

    Atari: [StickyActions] -> NoopReset(1 to ``noop_max`` no-op frames) -> MaxAndSkip(4) ->
    Gray 84x84 -> episode statistics -> [EpisodicLife] -> [FireReset] -> [FireOnNewLife] ->
    [sign-clipped rewards] -> FrameStack(4). Episodic life and reward clipping are for training
    only; play sees full games and raw scores. Observations are uint8 arrays of shape (4, 84, 84).
    ``sticky`` > 0 (play's ``--sticky``) repeats the previous frame's action with that
    probability, drawn from a generator seeded with ``seed``. ``fire_on_new_life`` (play's
    ``--fire_on_new_life``, games that start with FIRE) starts every new life as training
    does: :class:`FireOnNewLife`.

    Vector observations: the raw environment with episode statistics.
    """
    check_env_id(env_id)
    if not is_atari(env_id):
        env = RecordEpisodeStatistics(gym.make(env_id, render_mode=render_mode))
        return ClipAction(env) if isinstance(env.action_space, gym.spaces.Box) else env
    # obs_type="grayscale" spares the base env an RGB copy per frame; the
    # preprocessing wrapper reads the screen from the emulator itself.
    skip_options = {}
    if own_frameskip(env_id) != 1:  # ALE v5: the pipeline's own skip replaces the env's
        skip_options["frameskip"] = 1
    env = gym.make(env_id, obs_type="grayscale", render_mode=render_mode, **skip_options)
    if sticky > 0:
        env = StickyActions(env, sticky, seed)
    env = AtariPreprocessing(env, noop_max=noop_max, frame_skip=4, screen_size=FRAME_SIZE,
                             terminal_on_life_loss=False, grayscale_obs=True)
    env = RecordEpisodeStatistics(env)
    if training:
        env = EpisodicLife(env)
    if starts_with_fire(env):
        env = FireReset(env)
        if fire_on_new_life and not training:
            env = FireOnNewLife(env)
    if training:
        env = TransformReward(env, lambda r: float(np.sign(r)))
    return FrameStackObservation(env, frame_stack, padding_type="reset")


def box_bounds(env: gym.Env) -> tuple[list[float], list[float]] | None:
    """``(low, high)`` of a Box action space as lists (read below ``ClipAction``, which
    widens the space it reports to +-inf); None for other action spaces."""
    e = env
    while isinstance(e, gym.Wrapper) and not isinstance(e, ClipAction):
        e = e.env
    space = e.env.action_space if isinstance(e, ClipAction) else env.action_space
    if not isinstance(space, gym.spaces.Box):
        return None
    return space.low.astype(float).tolist(), space.high.astype(float).tolist()


def has_box_actions(env_id: str) -> bool:
    """True when ``env_id``'s action space is a Box (continuous actions)."""
    if is_atari(env_id):
        return False
    env = gym.make(env_id)
    try:
        return isinstance(env.action_space, gym.spaces.Box)
    finally:
        env.close()
