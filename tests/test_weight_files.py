"""Weight files: unsafe, broken or mismatched files get one-line errors (exit 2); export plays."""
import os
import subprocess
import sys

import pytest
import torch

from Agent.training import build_trainer
from Utils.checkpoint import CheckpointError, export_weights, load_checkpoint, save_checkpoint
from Utils.config import Config

from conftest import ROOT
from test_training import tree_snapshot


class RunsCode:
    """A pickle payload that would create a file if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def cartpole_checkpoint(tmp_path):
    cfg = Config(env_name="CartPole-v1", n_workers=1, models_dir=str(tmp_path / "M"))
    trainer = build_trainer(cfg, str(tmp_path / "M" / "run"), str(tmp_path / "L" / "run"))
    state = trainer.checkpoint_state()
    trainer.logger.close()
    return state


def test_bad_weight_files_get_one_line_errors_and_change_nothing(tmp_path, main_cli):
    state = cartpole_checkpoint(tmp_path)
    files = tmp_path / "files"
    files.mkdir()
    save_checkpoint(state, str(files / "cartpole.pth"))
    marker = tmp_path / "code_ran"
    torch.save({"format_version": 1, "model": RunsCode(str(marker))}, files / "evil.pth")
    data = (files / "cartpole.pth").read_bytes()
    (files / "truncated.pth").write_bytes(data[: len(data) // 2])
    save_checkpoint({**state, "format_version": 99}, str(files / "future.pth"))
    cases = [
        ("evil.pth", "CartPole-v1", "is not a safe checkpoint"),
        ("truncated.pth", "CartPole-v1", "is not a readable checkpoint"),
        ("future.pth", "CartPole-v1", "has checkpoint format 99, newer than"),
        ("missing.pth", "CartPole-v1", "no checkpoint file at"),
        ("cartpole.pth", "Acrobot-v1", "trained on CartPole-v1, not Acrobot-v1"),
    ]
    before = tree_snapshot(tmp_path)
    for name, env_name, message in cases:
        result = main_cli(["--env_name", env_name, "--weights", str(files / name), "--no_video"],
                          tmp_path, timeout=120)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], (name, result.stderr)
    assert not marker.exists()                      # the payload never ran
    assert tree_snapshot(tmp_path) == before


def test_export_writes_playable_weights_without_optimizer_and_never_overwrites(tmp_path, main_cli):
    state = cartpole_checkpoint(tmp_path)
    save_checkpoint(state, str(tmp_path / "full.pth"))
    out = tmp_path / "CartPole_acer.pth"
    result = main_cli(["--export", str(out), "--weights", str(tmp_path / "full.pth")], tmp_path)
    assert result.returncode == 0, result.stderr
    exported = load_checkpoint(str(out))
    assert "optimizer" not in exported and "average_model" not in exported
    assert exported["env_name"] == "CartPole-v1" and exported["n_actions"] == 2
    assert all(torch.equal(exported["model"][k], state["model"][k]) for k in state["model"])
    assert out.stat().st_size < os.path.getsize(tmp_path / "full.pth")
    result = main_cli(["--env_name", "CartPole-v1", "--weights", str(out), "--episodes", "2", "--no_video"],
                      tmp_path)
    assert result.returncode == 0 and "Mean score over 2 games" in result.stdout
    content = out.read_bytes()
    result = main_cli(["--export", str(out), "--weights", str(tmp_path / "full.pth")], tmp_path)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert out.read_bytes() == content
    with pytest.raises(CheckpointError, match="already exists"):
        export_weights(state, str(out))


def test_play_is_repeatable_and_renders_to_a_window(tmp_path, main_cli):
    save_checkpoint(cartpole_checkpoint(tmp_path), str(tmp_path / "w.pth"))
    args = ["--env_name", "CartPole-v1", "--weights", str(tmp_path / "w.pth"), "--episodes", "3",
            "--no_video", "--seed", "11"]
    first, second = main_cli(args, tmp_path), main_cli(args, tmp_path)
    assert first.returncode == 0 and first.stdout == second.stdout   # same seed, same scores
    other = main_cli(args[:-1] + ["12"], tmp_path)
    assert other.stdout != first.stdout
    env = dict(os.environ, SDL_VIDEODRIVER="dummy")
    env.pop("DISPLAY", None)
    windowed = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args, "--render"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert windowed.returncode == 0 and "no display" not in windowed.stdout, windowed.stderr
    assert [l for l in windowed.stdout.splitlines() if l.startswith("Game")] == \
        [l for l in first.stdout.splitlines() if l.startswith("Game")]
    env.pop("SDL_VIDEODRIVER")
    headless = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args, "--render"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={k: v for k, v in env.items() if k not in ("WAYLAND_DISPLAY",)})
    assert headless.returncode == 0 and "no display available" in headless.stdout


def test_tampered_metadata_and_unsafe_resume_are_refused(tmp_path, main_cli):
    state = cartpole_checkpoint(tmp_path)
    save_checkpoint({**state, "network_kind": "nature_cnn"}, str(tmp_path / "kind.pth"))
    save_checkpoint({**state, "n_actions": 3}, str(tmp_path / "actions.pth"))
    run = tmp_path / "Models" / "evil_run"
    run.mkdir(parents=True)
    marker = tmp_path / "code_ran"
    torch.save({"format_version": 1, "config": RunsCode(str(marker))}, run / "checkpoint.pth")
    cartpole_run = tmp_path / "Models" / "cartpole_run"
    cartpole_run.mkdir()
    save_checkpoint(state, str(cartpole_run / "checkpoint.pth"))
    before = tree_snapshot(tmp_path)
    cases = [
        (["--env_name", "CartPole-v1", "--weights", str(tmp_path / "kind.pth")], "network kind nature_cnn"),
        (["--env_name", "CartPole-v1", "--weights", str(tmp_path / "actions.pth")], "3 discrete actions"),
        (["--do_train", "--env_name", "CartPole-v1", "--resume", str(run)], "is not a safe checkpoint"),
        (["--do_train", "--env_name", "Acrobot-v1", "--resume", str(cartpole_run)],
         "is a CartPole-v1 run, not Acrobot-v1"),
    ]
    for args, message in cases:
        result = main_cli(args + ([] if "--do_train" in args else ["--no_video"]), tmp_path, timeout=120)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], (args, result.stderr)
    assert not marker.exists()
    assert tree_snapshot(tmp_path) == before


@pytest.mark.parametrize("algo", ["acer", "a3c"])
def test_shipped_cartpole_agents_play_from_the_fallback(tmp_path, main_cli, algo):
    """No local run: play falls back to 'Pre-Trained Weights/CartPole_<algo>.pth', which balances."""
    result = main_cli(["--env_name", "CartPole-v1", "--algo", algo, "--episodes", "10", "--no_video"],
                      tmp_path)
    assert result.returncode == 0, result.stderr
    mean = float(result.stdout.split("Mean score over 10 games: ")[1].split()[0])
    assert mean >= 450    # README: 493.7 (acer) and 477.2 (a3c) for these 10 seeded games


@pytest.mark.parametrize("algo, readme_score", [("acer", "20.8 +- 0.6"), ("a3c", "20.6 +- 0.5")])
def test_shipped_pong_agents_win_full_games(tmp_path, main_cli, algo, readme_score):
    """'Pre-Trained Weights/Pong_<algo>.pth' on the real game: two full games (no episodic life),
    sampled actions, each won by at least 19 points (README: the score over 10 games)."""
    weights = os.path.join(ROOT, "Pre-Trained Weights", f"Pong_{algo}.pth")
    result = main_cli(["--env_name", "PongNoFrameskip-v4", "--algo", algo, "--weights", weights,
                       "--episodes", "2", "--no_video"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    scores = [float(line.split("score ")[1].split()[0]) for line in result.stdout.splitlines()
              if line.startswith("Game ")]
    assert len(scores) == 2 and min(scores) >= 19, result.stdout
    listing = open(os.path.join(ROOT, "Pre-Trained Weights", "README.md")).read()
    assert f"`Pong_{algo}.pth` | PongNoFrameskip-v4 | {readme_score} over 10 full games" in listing


# (file, game, its README score over 10 games, frame cap for the test's game or None, floor).
SHIPPED_ATARI_ACER = [
    # A whole Breakout game of about 380 points takes about 2,500 agent steps: the first 8,000
    # frames suffice (the GIF's first 6,000 frames score 300).
    ("Breakout_acer.pth", "BreakoutNoFrameskip-v4", "384.90 +- 34.43", 8000, 100),
    # A whole SpaceInvaders game is about 900 agent steps; random play scores 148.
    ("SpaceInvaders_acer.pth", "SpaceInvadersNoFrameskip-v4", "572.50 +- 155.65", None, 250),
    # A whole Assault game of about 2,600 points lasts over 10,000 frames; the GIF's first 6,000
    # frames score 1,384, and random play scores 222 over a whole game.
    ("Assault_acer.pth", "AssaultNoFrameskip-v4", "2639.10 +- 849.89", 8000, 500),
]


@pytest.mark.parametrize("weights_file, env_name, readme_score, max_frames, floor", SHIPPED_ATARI_ACER,
                         ids=[row[1] for row in SHIPPED_ATARI_ACER])
def test_shipped_atari_agent_plays_a_game(tmp_path, main_cli, weights_file, env_name, readme_score,
                                          max_frames, floor):
    """Each shipped 8-worker ACER agent plays one game of the real game (no episodic life, sampled
    actions, no FIRE pressed for it), whole or up to its frame cap, and scores at least a floor
    well under its 10-game mean in docs/results.md; and its row in Pre-Trained Weights/README.md
    gives that mean."""
    weights = os.path.join(ROOT, "Pre-Trained Weights", weights_file)
    cap = ["--max_frames", str(max_frames)] if max_frames else []
    result = main_cli(["--env_name", env_name, "--weights", weights, "--episodes", "1", "--no_video", *cap],
                      tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    score = float(result.stdout.split("Game 1/1: score ")[1].split()[0])
    assert score >= floor, result.stdout
    if not max_frames:
        assert "0 truncated" in result.stdout, result.stdout    # the whole game was played
    listing = open(os.path.join(ROOT, "Pre-Trained Weights", "README.md")).read()
    assert f"`{weights_file}` | {env_name} | {readme_score} over 10 full games" in listing
