"""The standard evaluation: human-normalized scores, no-op starts, the 108,000-frame cap and
sticky actions, on real Atari games."""
import pytest

from Utils.atari_wrappers import FireOnNewLife, StickyActions, make_env
from Utils.evaluation import human_normalized, summarize, summary_line
from Utils.play import find_wrapper

PONG = "PongNoFrameskip-v4"
WEIGHTS = "Pre-Trained Weights/Pong_acer.pth"


def test_human_normalized_score_on_known_cases():
    assert human_normalized(PONG, -20.7) == pytest.approx(0.0)
    assert human_normalized(PONG, 14.6) == pytest.approx(1.0)
    assert human_normalized("BreakoutNoFrameskip-v4", 16.1) == pytest.approx(0.5)
    assert human_normalized("ALE/SpaceInvaders-v5", 1668.7) == pytest.approx(1.0)
    assert human_normalized("AssaultNoFrameskip-v4", 742.0 + 519.6) == pytest.approx(2.0)
    assert human_normalized("CartPole-v1", 500.0) is None


def test_summary_statistics():
    s = summarize([1.0, 2.0, 3.0, 10.0])
    assert (s["n"], s["mean"], s["median"], s["min"], s["max"]) == (4, 4.0, 2.5, 1.0, 10.0)
    assert s["std"] == pytest.approx((9 + 4 + 1 + 36) ** 0.5 / 2)   # population std
    line = summary_line(PONG, [14.6, 14.6])
    assert "mean 14.60" in line and "human-normalized mean 100.0%" in line


def episode_frame_after_reset(noop_max: int, seed: int) -> int:
    env = make_env(PONG, training=False, noop_max=noop_max)
    try:
        env.reset(seed=seed)
        return env.unwrapped.ale.getEpisodeFrameNumber()
    finally:
        env.close()


def test_noop_starts_take_1_to_n_noop_frames():
    base = episode_frame_after_reset(0, 0)   # the emulator's own reset frames, no no-ops
    assert all(episode_frame_after_reset(0, seed) == base for seed in range(1, 4))
    noops = [episode_frame_after_reset(30, seed) - base for seed in range(12)]
    assert all(1 <= n <= 30 for n in noops) and len(set(noops)) > 3
    assert all(1 <= episode_frame_after_reset(3, seed) - base <= 3 for seed in range(12))


def test_sticky_actions_repeat_the_previous_action_at_the_set_rate():
    env = make_env("BreakoutNoFrameskip-v4", training=False, sticky=0.25, seed=1)
    try:
        env.reset(seed=1)
        steps = 0
        while steps < 1500:
            _, _, terminated, truncated, _ = env.step(steps % 4)   # a new action every step
            steps += 1
            if terminated or truncated:
                env.reset()
        sticky = find_wrapper(env, StickyActions)
    finally:
        env.close()
    assert sticky.frames >= 4 * 1500
    assert sticky.repeated / sticky.frames == pytest.approx(0.25, abs=0.02)
    # a repeat changes the executed action only on the step's first frames, where the previous
    # frame's action was the last step's: executed != chosen on roughly 0.25 * (1 + 0.25 + ...)
    # / 4 of the frames, about 8%
    assert 0.05 < sticky.differed / sticky.frames < 0.12
    assert sticky.differed <= sticky.repeated


def test_no_sticky_actions_by_default():
    env = make_env(PONG, training=False)
    try:
        assert find_wrapper(env, StickyActions) is None
    finally:
        env.close()


def noop_game(fire_on_new_life: bool, max_steps: int = 4000):
    """A full Breakout game (play's environment) where the agent only ever takes NOOP:
    (steps taken, game over, lives left, the FireOnNewLife wrapper or None)."""
    env = make_env("BreakoutNoFrameskip-v4", training=False, fire_on_new_life=fire_on_new_life)
    try:
        env.reset(seed=3)
        for step in range(1, max_steps + 1):
            _, _, terminated, truncated, _ = env.step(0)
            if terminated or truncated:
                break
        return step, terminated, env.unwrapped.ale.lives(), find_wrapper(env, FireOnNewLife)
    finally:
        env.close()


def test_fire_on_new_life_starts_every_life_of_a_full_game():
    """Breakout waits for FIRE after a lost life: a NOOP agent loses its first ball (launched by
    FireReset) and then waits forever; with ``fire_on_new_life`` each of the other four balls is
    launched for it and the game ends."""
    steps, over, lives, wrapper = noop_game(fire_on_new_life=False)
    assert (steps, over, lives, wrapper) == (4000, False, 4, None)
    steps, over, lives, wrapper = noop_game(fire_on_new_life=True)
    assert over and lives == 0 and steps < 4000 and wrapper.presses == 4


def test_fire_on_new_life_is_refused_where_no_game_waits_for_fire(tmp_path, main_cli):
    result = main_cli(["--env_name", "CartPole-v1", "--fire_on_new_life", "--no_video"], tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--fire_on_new_life is for Atari games that start with FIRE; CartPole-v1" in result.stderr


def test_play_caps_frames_and_prints_the_protocol(tmp_path, main_cli):
    from conftest import ROOT
    import os
    result = main_cli(["--env_name", PONG, "--weights", os.path.join(ROOT, WEIGHTS), "--episodes", "2",
                       "--no_video", "--max_frames", "400", "--noop_max", "30", "--sticky", "0.25"],
                      tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(truncated after 400 frames)") == 2
    assert "Game 2/2" in result.stdout and "mean so far" in result.stdout
    assert "Protocol (no-op starts up to 30, sticky 0.25, cap 400 frames, 2 truncated): 2 games" \
        in result.stdout and "human-normalized mean" in result.stdout


@pytest.mark.parametrize("flag,value,message", [("--noop_max", "31", "--noop_max must be in 0..30"),
                                                ("--sticky", "1.5", "--sticky must be a probability"),
                                                ("--max_frames", "-1", "--max_frames must be >= 0")])
def test_bad_protocol_values_exit_2(tmp_path, main_cli, flag, value, message):
    result = main_cli(["--env_name", PONG, flag, value, "--no_video"], tmp_path)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
