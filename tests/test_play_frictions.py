"""Play's frictions of issue 29 (item 4, and item 7's video line), on real runs and real games:
play of a newest run names the shipped agent's command, means over games cut off at the frame
cap say so, ``--weights`` takes a run folder, and the video line names its units."""
import glob
import os
import re

import imageio.v2 as imageio
import pytest

from Utils.evaluation import summary_line
from Utils.play import Scores

from conftest import ROOT, run_main

SHIPPED = os.path.join(ROOT, "Pre-Trained Weights")
BREAKOUT = "BreakoutNoFrameskip-v4"
CUT_OFF = "games cut off at the frame cap: not full-game scores"


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    """A real 300-step CartPole ACER run (checkpoint.pth, best.pth): (work dir, models dir, run)."""
    work = tmp_path_factory.mktemp("run")
    models = work / "M"
    result = run_main(["--do_train", "--env_name", "CartPole-v1", "--n_workers", "1",
                       "--total_steps", "300", "--models_dir", str(models),
                       "--logs_dir", str(work / "L"), "--run_name", "r"], work)
    assert result.returncode == 0, result.stderr
    run = models / "r"
    assert (run / "checkpoint.pth").is_file() and (run / "best.pth").is_file()
    return work, models, run


def lines_starting(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


# 1. a newest run played over a shipped file names the shipped agent's command
def test_play_of_the_newest_run_says_how_to_play_the_shipped_agent(cartpole_run, tmp_path):
    work, models, run = cartpole_run
    # from the repository root, the path as the README writes it
    result = run_main(["--env_name", "CartPole-v1", "--models_dir", str(models), "--no_video"], ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(
        f"Playing {run}/checkpoint.pth (the newest CartPole-v1 run in {models}/)")
    (note,) = lines_starting(result.stdout, "note:")
    assert note == (f"note: playing the newest CartPole-v1 run in {models}/, not the shipped agent; "
                    f"the shipped agent: --weights \"Pre-Trained Weights/CartPole_acer.pth\"")
    # from elsewhere, a path that works there; and the command it names plays the shipped file
    elsewhere = run_main(["--env_name", "CartPole-v1", "--models_dir", str(models), "--no_video"],
                         tmp_path)
    (note,) = lines_starting(elsewhere.stdout, "note:")
    shipped = re.search(r'--weights "([^"]+)"', note).group(1)
    assert os.path.samefile(shipped, os.path.join(SHIPPED, "CartPole_acer.pth"))
    played = run_main(["--env_name", "CartPole-v1", "--models_dir", str(models), "--weights", shipped,
                       "--no_video"], tmp_path)
    assert played.returncode == 0, played.stderr
    assert played.stdout.splitlines()[0].startswith(f"Playing {shipped} (given with --weights)")
    # no note when the file was given, or when the shipped file is what plays
    assert not lines_starting(played.stdout, "note:")
    fallback = run_main(["--env_name", "CartPole-v1", "--models_dir", str(tmp_path / "none"),
                         "--no_video"], tmp_path)
    assert fallback.returncode == 0 and not lines_starting(fallback.stdout, "note:")


# 2. means over games cut off at the frame cap say so, on the same line
def test_means_over_games_cut_off_at_the_frame_cap_say_so(tmp_path):
    result = run_main(["--env_name", BREAKOUT, "--weights", os.path.join(SHIPPED, "Breakout_acer.pth"),
                       "--episodes", "2", "--max_frames", "400", "--no_video"], tmp_path)
    assert result.returncode == 0, result.stderr
    (protocol,) = lines_starting(result.stdout, "Protocol (")
    assert re.search(r"human-normalized mean \d+\.\d% \(2 of 2 " + re.escape(CUT_OFF) +
                     r"; random 1\.7, human 30\.5\)$", protocol), protocol
    (mean,) = lines_starting(result.stdout, "Mean score over 2 games")
    assert mean.endswith(f"(2 of 2 {CUT_OFF})"), mean
    game2 = lines_starting(result.stdout, "Game 2/2")[0]
    assert game2.endswith("(2 of 2 cut off)"), game2


def test_summary_line_names_cut_off_games_only_when_there_are_some():
    scores = Scores()
    scores += [30.0, 3.0]
    scores.truncated += [False, True]
    line = summary_line(BREAKOUT, scores)
    assert f"human-normalized mean 51.4% (1 of 2 {CUT_OFF}; random 1.7, human 30.5)" in line
    scores.truncated[:] = [False, False]
    assert "cut off" not in summary_line(BREAKOUT, scores)
    assert "cut off" not in summary_line(BREAKOUT, [30.0, 3.0])   # a plain list: no flags


# 3. --weights takes a run folder, as --resume does
def test_weights_takes_a_run_folder_and_says_which_file_plays(cartpole_run):
    work, models, run = cartpole_run
    result = run_main(["--weights", str(run), "--no_video"], work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(
        f"Playing {run}/checkpoint.pth (the last checkpoint of the run folder given with --weights): "
        "acer on CartPole-v1, 300 steps trained")
    (note,) = lines_starting(result.stdout, "note:")
    assert re.fullmatch(rf"note: {re.escape(str(run))} also holds best\.pth \(the weights at the best "
                        rf"running reward, -?\d+\.\d+ at [\d,]+ steps\): --weights "
                        rf"\"{re.escape(str(run))}/best\.pth\"", note), note
    # --export reads --weights the same way
    out = work / "exported.pth"
    exported = run_main(["--export", str(out), "--weights", str(run)], work)
    assert exported.returncode == 0, exported.stderr
    assert f"Exported the weights of {run}/checkpoint.pth (the last checkpoint of the run folder" \
        in exported.stdout
    played = run_main(["--weights", str(out), "--no_video"], work)
    assert played.returncode == 0 and "300 steps trained" in played.stdout


def test_weights_folder_without_checkpoint_gets_one_line(tmp_path, cartpole_run):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_main(["--weights", str(empty), "--no_video"], tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"error: --weights {empty}: a folder without checkpoint.pth" in result.stderr
    only_best = tmp_path / "only_best"
    only_best.mkdir()
    (only_best / "best.pth").write_bytes((cartpole_run[2] / "best.pth").read_bytes())
    result = run_main(["--weights", str(only_best), "--no_video"], tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f'it holds best.pth: --weights "{only_best}/best.pth"' in result.stderr


# 4. (item 7) the video line says which unit it counts
def test_video_line_counts_agent_steps_and_emulator_frames(tmp_path):
    result = run_main(["--env_name", BREAKOUT, "--weights", os.path.join(SHIPPED, "Breakout_acer.pth"),
                       "--max_frames", "400"], tmp_path)
    assert result.returncode == 0, result.stderr
    (video,) = lines_starting(result.stdout, "Video of game 1")
    match = re.match(r"Video of game 1 \(100 agent steps = 400 emulator frames; ([\d,]+) video "
                     r"frames at 15 fps\): ", video)
    assert match, video
    (mp4,) = glob.glob(str(tmp_path / "Vid" / "*.mp4"))
    assert imageio.get_reader(mp4).count_frames() == int(match.group(1).replace(",", "")) == 101
    cartpole = run_main(["--env_name", "CartPole-v1", "--weights", os.path.join(SHIPPED, "CartPole_acer.pth"),
                         "--models_dir", str(tmp_path / "none")], tmp_path)
    assert cartpole.returncode == 0, cartpole.stderr
    (video,) = lines_starting(cartpole.stdout, "Video of game 1")
    steps = int(re.search(r"score (\d+)\.0", cartpole.stdout).group(1))
    assert video.startswith(f"Video of game 1 ({steps:,} steps; {steps + 1:,} video frames at 15 fps): ")
