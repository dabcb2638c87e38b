"""The original's view of an Atari run: every life a worker ends is logged (raw score), the
lives of a game add up to its score, and the plot draws worker 0's lives."""
import csv
import glob
import os

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from Utils.logger import RunLogger
from Utils.plot import figure_for_runs


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_breakout_training_logs_every_life(tmp_path, main_cli):
    result = main_cli(["--do_train", "--env_name", "BreakoutNoFrameskip-v4", "--n_workers", "1",
                       "--total_steps", "1000", "--total_memory_size", "4000", "--interval", "20"],
                      tmp_path)
    assert result.returncode == 0, result.stderr
    (log_dir,) = glob.glob(str(tmp_path / "Logs" / "*"))
    games = rows(os.path.join(log_dir, "episodes.csv"))
    lives = rows(os.path.join(log_dir, "lives.csv"))
    assert len(games) >= 2 and len(lives) >= 5 * len(games)     # Breakout: 5 lives a game
    assert [int(r["worker_life"]) for r in lives] == list(range(1, len(lives) + 1))
    # each game's lives add up to the game's raw score, game by game
    per_game, score = [], 0.0
    for life in lives:
        score += float(life["reward"])
        if life["game_over"] == "1":
            per_game.append(score)
            score = 0.0
    assert per_game[:len(games)] == [float(g["reward"]) for g in games]
    events = EventAccumulator(log_dir)
    events.Reload()
    assert "Per life (worker 0)/Running Reward" in events.Tags()["scalars"]
    assert "Full games (all workers)/Running Reward" in events.Tags()["scalars"]


def test_life_running_reward_is_worker_0s_and_survives_a_resume(tmp_path):
    logger = RunLogger(str(tmp_path), interval=10)
    logger.life(1, 100.0, 50, 10, False)       # another worker's life: not in worker 0's average
    logger.life(0, 4.0, 50, 20, False)
    logger.life(0, 6.0, 50, 30, True)
    assert logger.life_running_reward == 0.99 * 4.0 + 0.01 * 6.0
    state = logger.state()
    logger.close()
    resumed = RunLogger(str(tmp_path), interval=10, start=state)
    resumed.life(0, 10.0, 50, 40, False)
    resumed.close()
    lives = rows(tmp_path / "lives.csv")
    assert [r["worker_life"] for r in lives] == ["1", "1", "2", "3"]
    assert float(lives[-1]["worker0_running_reward"]) == round(0.99 * (0.99 * 4 + 0.06) + 0.1, 4)
    fig = figure_for_runs([str(tmp_path)], view="life")
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [1.0, 2.0, 3.0]       # worker 0's lives
    assert fig.axes[0].get_xlabel() == "Life of worker 0"
