"""End-to-end training runs with real worker processes and real environments."""
import glob
import os
import re

import imageio.v2 as imageio
from PIL import Image, ImageSequence

import torch

from NN.networks import ACERNet
from Utils.checkpoint import load_checkpoint


def only_run(folder):
    runs = sorted(glob.glob(os.path.join(folder, "*")))
    assert len(runs) == 1, runs
    return runs[0]


def gif_size_and_durations_ms(path):
    """A GIF's (width, height) and how long each of its frames shows, as written in the file."""
    with Image.open(path) as gif:
        return gif.size, [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]


def tree_snapshot(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[path] = fh.read()
    return out


def test_two_workers_share_optimizer_and_resume_continues(tmp_path, main_cli, monkeypatch):
    args = ["--do_train", "--env_name", "CartPole-v1", "--n_workers", "2", "--interval", "20",
            "--lr", "1e-3", "--seed", "5"]
    result = main_cli(args + ["--total_steps", "3000"], tmp_path)
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path / "Models")
    state = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    counters = state["counters"]
    assert counters["global_steps"] >= 3000
    assert counters["optimizer_steps"] == sum(counters["worker_updates"]) > 100
    assert all(n > 0 for n in counters["worker_updates"])       # both workers updated
    assert all(n > 0 for n in counters["worker_steps"])
    torch.manual_seed(5)
    initial = ACERNet((4,), 2, 128).state_dict()
    changed = [not torch.equal(initial[k], state["model"][k]) for k in initial]
    assert all(changed)
    assert not torch.equal(state["model"]["q_head.weight"], state["average_model"]["q_head.weight"])
    log_dir = tmp_path / "Logs" / os.path.basename(run)
    assert glob.glob(str(log_dir / "events.out.tfevents.*"))
    episodes_before = sum(counters["worker_episodes"])

    # The original's --train_from_scratch continues the last run (with a warning).
    result = main_cli(args + ["--train_from_scratch", "--total_steps", "5000"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "CONTINUES" in result.stderr
    assert only_run(tmp_path / "Models") == run                 # same run folder
    resumed = load_checkpoint(os.path.join(run, "checkpoint.pth"))["counters"]
    assert resumed["global_steps"] >= 5000
    assert sum(resumed["worker_episodes"]) > episodes_before
    assert resumed["optimizer_steps"] == sum(resumed["worker_updates"]) > counters["optimizer_steps"]

    # Play the run's weights, headless, with video: stderr stays empty (no SDL/pygame noise).
    for variable in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(variable, raising=False)
    result = main_cli(["--env_name", "CartPole-v1", "--episodes", "2"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Game ") == 2 and "Mean score over 2 games" in result.stdout
    assert result.stderr == ""


def test_pong_two_workers_leaves_checkpoint_and_events(tmp_path, main_cli):
    result = main_cli(["--do_train", "--env_name", "PongNoFrameskip-v4", "--n_workers", "2",
                       "--total_steps", "2000", "--interval", "20"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path / "Models")
    state = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    assert state["env_name"] == "PongNoFrameskip-v4" and state["network_kind"] == "nature_cnn"
    assert state["obs_shape"] == [4, 84, 84] and state["n_actions"] == 6
    assert state["counters"]["global_steps"] >= 2000
    assert state["counters"]["optimizer_steps"] == sum(state["counters"]["worker_updates"])
    assert glob.glob(str(tmp_path / "Logs" / os.path.basename(run) / "events.out.tfevents.*"))
    assert "steps/s" in result.stdout

    # Play two full games from that run: scores, mean, and a video of the first game.
    result = main_cli(["--env_name", "PongNoFrameskip-v4", "--episodes", "2"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    scores = re.findall(r"Game \d+/\d+: score (-?\d+\.\d)", result.stdout)
    assert len(scores) == 2 and all(-21 <= float(x) <= 21 for x in scores)
    assert "Mean score over 2 games" in result.stdout
    frames = int(re.search(r"Video of game 1 \([\d,]+ agent steps = [\d,]+ emulator frames; "
                           r"([\d,]+) video frames", result.stdout).group(1).replace(",", ""))
    (mp4,) = glob.glob(str(tmp_path / "Vid" / "*.mp4"))
    (gif,) = glob.glob(str(tmp_path / "Vid" / "*.gif"))
    reader = imageio.get_reader(mp4)
    assert reader.count_frames() == frames > 700           # a whole Pong game, one frame per step
    assert tuple(reader.get_meta_data()["size"]) == (160, 210)
    # Every second frame at 15 fps. Pillow writes a run of identical frames as one frame that
    # lasts as long as the run (how many merge depends on the game played), so the check is the
    # GIF's total duration, less up to 10 ms per written frame (GIF counts whole 10 ms units).
    size, durations = gif_size_and_durations_ms(gif)
    kept, written = (frames + 1) // 2, len(durations)
    assert written <= kept
    assert kept * 1000 * 2 / 15 - 10 * written < sum(durations) <= kept * 1000 * 2 / 15
    assert size == (160, 210)


def test_bad_input_exits_2_with_one_line_and_touches_nothing(tmp_path, main_cli):
    (tmp_path / "Models").mkdir()
    (tmp_path / "keep.txt").write_text("untouched")
    bad_yaml = tmp_path / "bad.yml"
    bad_yaml.write_text("acer:\n  learning_rate: 0.1\n")
    cases = [
        (["--do_train", "--env_name", "PongNoFrameskip-v5"], "unknown environment id 'PongNoFrameskip-v5'"),
        (["--do_train", "--lr", "-1"], "--lr must be positive"),
        (["--do_train", "--k", "0"], "--k (rollout length) must be at least 1"),
        (["--do_train", "--n_workers", "0"], "--n_workers must be at least 1"),
        (["--do_train", "--replay_ratio", "-2"], "--replay_ratio must be >= 0"),
        (["--do_train", "--resume"], "--resume: no run with a checkpoint in Models/"),
        (["--do_train", "--config", str(bad_yaml)], "unknown key 'learning_rate'"),
        (["--do_train", "--gamma", "abc"], "--gamma must be a float"),
        (["--do_train", "--algo", "a3c", "--c", "3"], "--c is a setting of --algo acer"),
        (["--do_train", "--algo", "ppo"], "--algo must be one of acer, a3c, got 'ppo'"),
        (["--do_train", "--algo", "a3c", "--n_workers", "100"],
         "--total_update_period 80 is smaller than --n_workers 100"),
        (["--do_train", "--algo", "a3c", "--env_name", "FrozenLake-v1"],
         "FrozenLake-v1 has observations Discrete(16)"),
    ]
    before = tree_snapshot(tmp_path)
    for args, message in cases:
        result = main_cli(args, tmp_path, timeout=120)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
    assert tree_snapshot(tmp_path) == before
    assert not (tmp_path / "Logs").exists()
