"""The Atari pipeline on real ALE games (no mocks)."""
import cv2
import gymnasium as gym
import numpy as np
import pytest

from Utils.atari_wrappers import EpisodicLife, FireReset, check_env_id, make_env


def find(env, cls):
    while env is not None:
        if isinstance(env, cls):
            return env
        env = getattr(env, "env", None)
    return None


def test_observation_shape_dtype_and_stack_refill_at_reset():
    env = make_env("PongNoFrameskip-v4")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert all(np.array_equal(obs[0], obs[i]) for i in range(4))  # refilled with the first frame
    obs2, *_ = env.step(0)
    assert np.array_equal(obs2[:3], obs[1:])                       # the stack shifts by one
    env.close()


def test_noop_reset_takes_1_to_30_noops_and_depends_on_seed():
    counts = set()
    for seed in range(12):
        env = make_env("MsPacmanNoFrameskip-v4", training=False)  # no FIRE: frames = no-ops
        assert find(env, FireReset) is None
        env.reset(seed=seed)
        n = env.unwrapped.ale.getEpisodeFrameNumber()
        assert 1 <= n <= 30
        counts.add(n)
        env.close()
    assert len(counts) > 3


def test_fire_reset_only_for_fire_games_and_presses_fire_after_noops():
    env = make_env("BreakoutNoFrameskip-v4")
    assert find(env, FireReset) is not None
    env.reset(seed=3)
    # no-ops (1..30 frames) then FIRE and action 2, each repeated over 4 frames
    assert 9 <= env.unwrapped.ale.getEpisodeFrameNumber() <= 38
    env.close()


def test_life_loss_ends_episode_without_resetting_the_game():
    env = make_env("BreakoutNoFrameskip-v4", training=True)
    env.reset(seed=0)
    ale = env.unwrapped.ale
    lives = ale.lives()
    rng = np.random.default_rng(0)
    for _ in range(5000):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
        assert reward in (-1.0, 0.0, 1.0)
        if terminated:
            break
    assert terminated and info.get("life_lost") and "episode" not in info
    frame_before = ale.getEpisodeFrameNumber()
    env.reset()
    assert ale.lives() == lives - 1                 # same game, one life less
    assert ale.getEpisodeFrameNumber() > frame_before  # the emulator kept running
    env.close()


def test_game_over_gives_raw_score_and_real_reset():
    env = make_env("BreakoutNoFrameskip-v4", training=True)
    env.reset(seed=1)
    rng = np.random.default_rng(1)
    clipped_total, episode = 0.0, None
    for _ in range(20000):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
        clipped_total += reward
        if "episode" in info:
            episode = info["episode"]
            break
        if terminated or truncated:
            env.reset()
    assert episode is not None and find(env, EpisodicLife).game_over
    assert episode["r"] >= clipped_total        # raw score, not the clipped sum
    env.reset()
    assert env.unwrapped.ale.lives() == 5 and env.unwrapped.ale.getEpisodeFrameNumber() < 60
    env.close()


class ScreenRecorder(gym.Wrapper):
    """Keeps the grayscale screen after every raw emulator step."""

    def __init__(self, env):
        super().__init__(env)
        self.screens = []

    def step(self, action):
        out = self.env.step(action)
        self.screens.append(self.env.unwrapped.ale.getScreenGrayscale().copy())
        return out


def test_observation_is_max_of_last_two_frames_resized():
    env = make_env("SpaceInvadersNoFrameskip-v4", training=False)
    preprocessing = find(env, gym.wrappers.AtariPreprocessing)
    recorder = ScreenRecorder(preprocessing.env)
    preprocessing.env = recorder
    env.reset(seed=0)
    flicker = 0
    for t in range(60):
        recorder.screens.clear()
        obs, *_ = env.step(t % 6)
        assert len(recorder.screens) == 4            # action repeated over 4 frames
        pooled = np.maximum(recorder.screens[-2], recorder.screens[-1])
        expected = cv2.resize(pooled, (84, 84), interpolation=cv2.INTER_AREA)
        assert np.array_equal(obs[-1], expected)
        flicker += not np.array_equal(recorder.screens[-2], recorder.screens[-1])
    assert flicker > 0
    env.close()


def test_play_env_has_no_episodic_life_and_raw_rewards():
    env = make_env("BreakoutNoFrameskip-v4", training=False)
    assert find(env, EpisodicLife) is None
    env.close()


def test_vector_env_and_unknown_id():
    env = make_env("CartPole-v1")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4,)
    with pytest.raises(ValueError, match="did you mean PongNoFrameskip-v4"):
        check_env_id("PongNoFrameskip-v5")
