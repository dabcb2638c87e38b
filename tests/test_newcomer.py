"""A newcomer's first hour, through the real command line: what play loads, clean interrupts,
time-based cadence, progress, named runs, ignored flags, typos and hints."""
import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from Utils.logger import RunLogger

from conftest import ROOT

MAIN = os.path.join(ROOT, "main.py")
SHIPPED_CARTPOLE = os.path.join(ROOT, "Pre-Trained Weights", "CartPole_acer.pth")


def short_cartpole_run(tmp_path, main_cli, *extra):
    result = main_cli(["--do_train", "--env_name", "CartPole-v1", "--n_workers", "1",
                       "--total_steps", "400", *extra], tmp_path)
    assert result.returncode == 0, result.stderr
    return result


# 1. play says what it plays
def test_play_names_the_file_and_why_it_was_chosen(tmp_path, main_cli):
    shipped = main_cli(["--env_name", "CartPole-v1", "--no_video"], tmp_path)
    assert shipped.returncode == 0, shipped.stderr
    first = shipped.stdout.splitlines()[0]
    assert first.startswith(f"Playing {SHIPPED_CARTPOLE} (shipped weights; no CartPole-v1 run in Models/)")
    assert "acer on CartPole-v1" in first and "steps trained" in first and "precision fp32" in first
    short_cartpole_run(tmp_path, main_cli, "--run_name", "mine")
    newest = main_cli(["--env_name", "CartPole-v1", "--no_video"], tmp_path)
    assert newest.stdout.splitlines()[0] == (
        "Playing Models/mine/checkpoint.pth (the newest CartPole-v1 run in Models/): acer on "
        "CartPole-v1, 400 steps trained, precision fp32")
    given = main_cli(["--weights", "Models/mine/checkpoint.pth", "--no_video"], tmp_path)
    assert given.returncode == 0   # without --env_name: the weights' own game
    assert given.stdout.splitlines()[0].startswith("Playing Models/mine/checkpoint.pth (given with --weights)")


@pytest.mark.parametrize("args,message", [
    (["--algo", "a3c", "--weights", SHIPPED_CARTPOLE], "holds acer weights, not a3c: drop --algo or use --algo acer"),
    (["--env_name", "Acrobot-v1", "--weights", SHIPPED_CARTPOLE], "trained on CartPole-v1, not Acrobot-v1"),
])
def test_play_refuses_mismatched_weights(tmp_path, main_cli, args, message):
    result = main_cli(args + ["--no_video"], tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr


# 2. interrupts, whatever the pattern
def wait_for_empty_group(pgid, deadline_s=60.0):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        if subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).returncode != 0:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("target,count", [("group", 2), ("main", 2), ("group", 1)])
def test_interrupts_say_what_was_saved(tmp_path, target, count):
    proc = subprocess.Popen([sys.executable, MAIN, "--do_train", "--env_name", "CartPole-v1",
                             "--n_workers", "2"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        for line in proc.stdout:          # wait until the workers are stepping
            if line.startswith("All 2 workers stepping"):
                break
        for _ in range(count):
            if target == "group":   # what a terminal's Ctrl-C and `timeout -s INT` do
                os.killpg(proc.pid, signal.SIGINT)
            else:
                proc.send_signal(signal.SIGINT)
            time.sleep(0.2)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert re.search(r"^Interrupted; checkpoint written at step [\d,]+ in Models/CartPole-v1_acer_",
                     err, re.M), err
    assert "leaked" not in err and "Traceback" not in err, err
    assert glob.glob(str(tmp_path / "Models" / "*" / "checkpoint.pth"))
    assert wait_for_empty_group(proc.pid), "a process of the run was left behind"


# Runs main.py as the command line does, and sends the process group Ctrl-C's SIGINT at a
# chosen moment: when main() first imports torch, long before a trainer exists.
INTERRUPT_AT_TORCH_IMPORT = """
import os, runpy, signal, sys
class InterruptAtTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.killpg(os.getpgid(0), signal.SIGINT)
        return None
sys.meta_path.insert(0, InterruptAtTorch())
sys.argv = sys.argv[1:]                     # as `python main.py ARGS` sets them
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_interrupt_before_training_starts_says_nothing_was_saved(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPT_AT_TORCH_IMPORT, MAIN, "--do_train",
                             "--env_name", "CartPole-v1", "--n_workers", "2"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=120)
    finally:  # never leave a run training behind a failed test
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Interrupted before the first checkpoint; nothing saved"
    assert os.listdir(tmp_path) == []
    assert not glob.glob(str(tmp_path / "Models" / "*" / "checkpoint.pth"))


# 3. cadence by time; 4. progress
def test_default_cadence_is_by_time_and_interval_keeps_its_meaning(tmp_path, main_cli):
    quiet = main_cli(["--do_train", "--env_name", "CartPole-v1", "--n_workers", "2",
                      "--total_steps", "4000", "--models_dir", "A"], tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.count("Iter: ") <= 2          # one line about every 15 s
    chatty = main_cli(["--do_train", "--env_name", "CartPole-v1", "--n_workers", "2",
                       "--total_steps", "4000", "--interval", "10", "--models_dir", "B"], tmp_path)
    assert chatty.stdout.count("Iter: ") >= 15        # every 10 iterations, as before
    help_text = main_cli(["--help"], tmp_path).stdout
    assert "--checkpoint_minutes M" in help_text and "(default 5)" in help_text
    assert "a line about every 15 s" in help_text


def test_progress_lines_on_real_pong(tmp_path, main_cli):
    result = main_cli(["--do_train", "--env_name", "PongNoFrameskip-v4", "--n_workers", "1",
                       "--total_steps", "300", "--interval", "3", "--total_memory_size", "2000"],
                      tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [l for l in result.stdout.splitlines() if l.startswith("Iter: ")]
    assert len(lines) >= 3
    assert "nan" not in result.stdout
    assert all("Ep: 0 (no game finished yet)" in l for l in lines)  # Pong games last longer
    for line in (lines[0], lines[-1]):  # the first report already has a rate and an ETA
        assert "steps/s" in line
        assert re.search(r"\d+\.\d% of 300 steps, ETA \d\d:\d\d:\d\d", line), line
    # the last line comes once the workers stopped: the budget is done
    assert "100.0% of 300 steps" in lines[-1] and lines[-1] == \
        [l for l in result.stdout.splitlines() if l.startswith(("Iter: ", "Done:"))][-2]


def test_logger_progress_by_games(tmp_path, capsys):
    logger = RunLogger(str(tmp_path), interval=1)
    logger.report(0, None, max_episodes=4)
    logger.episode(0, 1.0, 10, 10)
    logger.report(10, None, max_episodes=4)
    logger.close()
    first, second = capsys.readouterr().out.splitlines()
    assert "no game finished yet" in first and "0.0% of 4 games" in first and "ETA" not in first
    assert "25.0% of 4 games, ETA" in second and "Running reward: 1.00" in second


# 5. run folders
def test_run_folders_are_named_and_resume_finds_the_newest(tmp_path, main_cli):
    short_cartpole_run(tmp_path, main_cli)
    (named,) = glob.glob(str(tmp_path / "Models" / "*"))
    assert re.fullmatch(r"CartPole-v1_acer_\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", os.path.basename(named))
    assert os.path.isdir(tmp_path / "Logs" / os.path.basename(named))
    legacy = tmp_path / "Models" / "2025-01-01-00-00-00"     # a folder from before the names
    os.rename(named, legacy)
    os.utime(legacy / "checkpoint.pth")                      # the newest checkpoint
    resumed = main_cli(["--do_train", "--resume", "--total_steps", "800"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"run Models{os.sep}2025-01-01-00-00-00" in resumed.stdout
    taken = main_cli(["--do_train", "--env_name", "CartPole-v1", "--run_name", "2025-01-01-00-00-00"],
                     tmp_path)
    assert taken.returncode == 2 and "already exists; continue it with --resume" in taken.stderr


# 8. ignored flags; 9. typos; 10. hints
def test_flags_the_mode_ignores_get_one_warning(tmp_path, main_cli):
    trained = short_cartpole_run(tmp_path, main_cli, "--episodes", "3", "--greedy")
    assert trained.stderr.strip() == "warning: training ignores --episodes, --greedy (play only)"
    played = main_cli(["--env_name", "CartPole-v1", "--no_video", "--lr", "0.1", "--n_workers", "4"],
                      tmp_path)
    assert played.returncode == 0
    assert played.stderr.strip() == ("warning: play ignores --n_workers, --lr (training only; "
                                     "add --do_train to train)")


def test_a_mistyped_flag_gets_a_suggestion_not_the_usage(tmp_path, main_cli):
    result = main_cli(["--do_train", "--n_worker", "2"], tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: unknown flag --n_worker (did you mean --n_workers?)\n"
    assert os.listdir(tmp_path) == []


def test_hints_name_the_folder_and_the_command(tmp_path, main_cli):
    play = main_cli(["--env_name", "MsPacmanNoFrameskip-v4"], tmp_path)   # no file shipped for it
    assert play.returncode == 2 and "no run in Models/" in play.stderr
    assert "train one with: python main.py --do_train --env_name MsPacmanNoFrameskip-v4" in play.stderr
    assert "Logs" not in play.stderr
    resume = main_cli(["--do_train", "--resume", "--env_name", "MsPacmanNoFrameskip-v4",
                       "--models_dir", "runs"], tmp_path)
    assert resume.returncode == 2 and "no run with a checkpoint in runs/ for MsPacmanNoFrameskip-v4" \
        in resume.stderr and "start one with: python main.py --do_train --env_name " \
        "MsPacmanNoFrameskip-v4" in resume.stderr


# 11. ALE v5 ids
def test_ale_v5_ids_train_with_their_own_sticky_actions_and_the_pipelines_skip(tmp_path, main_cli):
    from Utils.atari_wrappers import make_env
    env = make_env("ALE/Pong-v5")
    try:
        assert env.unwrapped._frameskip == 1
        assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.25
        assert env.observation_space.shape == (4, 84, 84)
    finally:
        env.close()
    result = main_cli(["--do_train", "--env_name", "ALE/Pong-v5", "--n_workers", "1",
                       "--total_steps", "200", "--total_memory_size", "2000"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "note: ALE/Pong-v5 keeps its own sticky actions (repeat_action_probability 0.25" in result.stdout
    assert "the pipeline applies the frame skip (4 frames per agent step" in result.stdout
    doubled = main_cli(["--env_name", "ALE/Pong-v5", "--sticky", "0.25", "--no_video"], tmp_path)
    assert doubled.returncode == 2 and "already repeats actions" in doubled.stderr
