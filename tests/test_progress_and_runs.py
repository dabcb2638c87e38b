"""Issue 29, item 5: play shows a progress bar within a game on a terminal (and nothing new on
a pipe), and ``python main.py --list_runs`` lists the runs of --models_dir, on real runs."""
import fcntl
import glob
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from Utils.checkpoint import load_checkpoint

from conftest import ROOT, run_main

MAIN = os.path.join(ROOT, "main.py")
BREAKOUT = "BreakoutNoFrameskip-v4"
PLAY_BREAKOUT = ["--env_name", BREAKOUT, "--weights",
                 os.path.join(ROOT, "Pre-Trained Weights", "Breakout_acer.pth"),
                 "--episodes", "2", "--max_frames", "400", "--no_video"]


def run_in_terminal(args, cwd, timeout=300) -> tuple[int, str]:
    """Run ``python main.py ARGS`` with stdout and stderr on a pseudo-terminal (160 columns);
    return the exit status and everything written to the terminal."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, MAIN, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return rc, b"".join(chunks).decode("utf-8", "replace")


def screen_lines(text: str) -> list[str]:
    """What a terminal shows, line by line: a carriage return starts the line over."""
    return [line.split("\r")[-1] for line in text.replace("\r\n", "\n").split("\n")]


# 1. play: a live bar within each game on a terminal, today's plain lines on a pipe
def test_play_shows_a_progress_bar_on_a_terminal_and_plain_lines_on_a_pipe(tmp_path):
    rc, shown = run_in_terminal(PLAY_BREAKOUT, tmp_path)
    assert rc == 0, shown
    # the bar: redrawn in place (a carriage return not ending a line), frames and score so far
    assert re.search(r"\r(?!\n)", shown), shown
    assert "Game 1/2:   0%|" in shown and "| 0/400 emulator frames [" in shown, shown
    bars = re.findall(r"Game (\d)/2: +\d+%\|[^|]*\| (\d+)/400 emulator frames \[[^\]]*"
                      r"frames/s, score (\d+), (\d+) agent steps\]", shown)
    assert {game for game, *_ in bars} == {"1", "2"}, shown
    assert all(int(frames) == 4 * int(steps) for _, frames, _, steps in bars), bars

    piped = run_main(PLAY_BREAKOUT, tmp_path)
    assert piped.returncode == 0, piped.stderr
    # a pipe gets none of it: no carriage return, no bar, nothing new on stderr
    for stream in (piped.stdout, piped.stderr):
        assert "\r" not in stream and "emulator frames [" not in stream and "it/s" not in stream
    assert piped.stderr == ""
    assert [line.split(":")[0] for line in piped.stdout.splitlines()] == [
        f"Playing {ROOT}/Pre-Trained Weights/Breakout_acer.pth (given with --weights)", "Game 1/2", "Game 2/2", "Mean score over 2 games",
        "Protocol (no-op starts up to 30, sticky 0, cap 400 frames, 2 truncated)"]
    # the bar never corrupts the lines: once it is cleared the terminal shows the pipe's lines
    assert [line for line in screen_lines(shown) if line.strip()] == piped.stdout.splitlines()


# 2. --list_runs: a table of the runs, unreadable folders included
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two real 300-step CartPole runs (acer, then a3c), a folder with a corrupt checkpoint, one
    with a log but no checkpoint yet, and an empty one: (work dir, models dir, logs dir)."""
    work = tmp_path_factory.mktemp("runs")
    for algo in ("acer", "a3c"):
        result = run_main(["--do_train", "--env_name", "CartPole-v1", "--n_workers", "1",
                           "--total_steps", "300", "--algo", algo, "--models_dir", str(work / "M"),
                           "--logs_dir", str(work / "L")], work)
        assert result.returncode == 0, result.stderr
        time.sleep(1.1)  # distinct checkpoint times, and run names
    broken = work / "M" / "broken"
    broken.mkdir()
    (broken / "checkpoint.pth").write_bytes(b"not a checkpoint")
    time.sleep(1.1)
    (work / "M" / "partial").mkdir()
    (work / "L" / "partial").mkdir()
    acer_log = glob.glob(str(work / "L" / "CartPole-v1_acer_*" / "episodes.csv"))[0]
    with open(acer_log) as fh:
        (work / "L" / "partial" / "episodes.csv").write_text("".join(fh.readlines()[:4]))
    time.sleep(1.1)
    (work / "M" / "empty").mkdir()
    return work, work / "M", work / "L"


def run_row(run: str) -> list[str]:
    """The columns --list_runs should print for a real run folder."""
    state = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    best = load_checkpoint(os.path.join(run, "best.pth"))["best_running_reward"]
    written = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(
        os.path.join(run, "checkpoint.pth"))))
    return [os.path.basename(run), "CartPole-v1", state["algo"],
            f"{state['counters']['global_steps']:,}", f"{best:.2f}", *written.split()]


def test_list_runs_prints_a_row_per_run_newest_last(models):
    work, models_dir, logs_dir = models
    result = run_main(["--list_runs", "--models_dir", str(models_dir), "--logs_dir", str(logs_dir)],
                      work)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", "game", "algo", "steps", "best", "written"]
    acer, a3c = (glob.glob(str(models_dir / f"CartPole-v1_{algo}_*"))[0] for algo in ("acer", "a3c"))
    assert lines[1].split() == run_row(acer)
    assert lines[2].split() == run_row(a3c)
    assert lines[3].split()[:3] == ["broken", "?", "?"]
    assert lines[3].endswith(" checkpoint.pth is not a readable checkpoint (not a PyTorch zip "
                             "archive)"), lines[3]
    with open(os.path.join(logs_dir, "partial", "episodes.csv")) as fh:
        last = fh.read().splitlines()[-1].split(",")
    assert lines[4].split()[:3] == ["partial", "?", "?"]
    assert lines[4].endswith(f" no checkpoint.pth (its log: {last[0]} games, to step {last[1]})"), lines[4]
    assert lines[5].split()[:3] == ["empty", "?", "?"]
    assert lines[5].endswith(f" no checkpoint.pth (no log in {logs_dir}/)"), lines[5]
    assert lines[6] == f"5 run folders in {models_dir}/, newest last"
    assert len(lines) == 7
    # nothing was trained or played
    assert sorted(os.listdir(models_dir)) == sorted(["broken", "partial", "empty",
                                                     *map(os.path.basename, (acer, a3c))])
    assert not os.path.exists(work / "Vid")


def test_list_runs_filters_by_the_environment_given(models):
    work, models_dir, _ = models
    result = run_main(["--list_runs", "--models_dir", str(models_dir), "--env_name", "CartPole-v1",
                       "--algo", "a3c"], work)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (header, row, footer) = result.stdout.splitlines()
    a3c = glob.glob(str(models_dir / "CartPole-v1_a3c_*"))[0]
    assert row.split() == run_row(a3c)
    assert footer == f"1 CartPole-v1 a3c run of 5 folders in {models_dir}/, newest last"
    # another game: none, in one line; flags --list_runs does not read get a warning
    other = run_main(["--list_runs", "--models_dir", str(models_dir), "--env_name", BREAKOUT,
                      "--episodes", "3"], work)
    assert other.returncode == 0, other.stderr
    assert other.stdout.splitlines() == [
        f"no {BREAKOUT} runs among the 5 folders in {models_dir}/ (train one with: python main.py "
        f"--do_train --env_name {BREAKOUT} --models_dir {models_dir})"]
    assert other.stderr.splitlines() == [
        "warning: --list_runs ignores --episodes (it reads --models_dir, --logs_dir, --env_name "
        "and --algo)"]


def test_list_runs_of_an_empty_or_missing_models_dir_says_so(tmp_path):
    (tmp_path / "E").mkdir()
    for folder, says in (("E", "no runs in {}/"), ("missing", "no runs: {}/ does not exist")):
        result = run_main(["--list_runs", "--models_dir", str(tmp_path / folder)], tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            says.format(tmp_path / folder) + " (train one with: python main.py --do_train "
            f"--models_dir {tmp_path / folder})"]
    assert not os.path.exists(tmp_path / "missing")
    # the default models folder, relative to where it runs
    result = run_main(["--list_runs"], tmp_path)
    assert result.stdout == "no runs: Models/ does not exist (train one with: python main.py --do_train)\n"


def test_list_runs_with_do_train_is_a_one_line_error(tmp_path):
    result = run_main(["--list_runs", "--do_train", "--models_dir", str(tmp_path / "M")], tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: --list_runs lists the runs and exits; drop --do_train to list them, or "
        "--list_runs to train"]
    assert result.stdout == "" and not os.path.exists(tmp_path / "M")
    export = run_main(["--list_runs", "--export"], tmp_path)
    assert (export.returncode, export.stdout) == (2, "")
    assert export.stderr == ("error: --list_runs lists the runs and exits; drop --export to list "
                             "them, or --list_runs to export\n")


# 3. training: a live bar on a terminal, a progress line however short the run, a useful "Done"
TRAIN_CARTPOLE = ["--do_train", "--env_name", "CartPole-v1", "--n_workers", "1",
                  "--models_dir", "M", "--logs_dir", "L", "--run_name", "r"]


def test_training_shows_a_progress_bar_on_a_terminal_and_plain_lines_on_a_pipe(tmp_path):
    (tmp_path / "tty").mkdir()
    (tmp_path / "pipe").mkdir()
    rc, text = run_in_terminal([*TRAIN_CARTPOLE, "--total_steps", "3000", "--interval", "20"],
                               tmp_path / "tty")
    assert rc == 0, text[-3000:]
    bars = re.findall(r"\r\s*(\d+)%\|[^\r\n]*\| ?([\d.]+k?)/3\.00k \[[\d:]+<[\d:?]+, *[\d.?]+ ?"
                      r"k?steps?/s(?:, running reward -?[\d.]+)?\]", text)
    assert bars and bars[-1][0] == "100", text[-3000:]
    assert "running reward" in text.split("Done:")[0].rsplit("\r", 1)[-1] or \
        re.search(r"running reward -?\d+\.\d\d\]", text), text[-3000:]
    lines = screen_lines(text)
    assert any(l.startswith("Iter: ") for l in lines) and any(l.startswith("Done:") for l in lines)
    piped = run_main([*TRAIN_CARTPOLE, "--total_steps", "3000", "--interval", "20"],
                     tmp_path / "pipe")
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stdout + piped.stderr and "%|" not in piped.stdout + piped.stderr


def test_a_run_shorter_than_the_console_period_prints_a_progress_line_then_done(tmp_path):
    result = run_main([*TRAIN_CARTPOLE, "--total_steps", "200"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    iters = [i for i, l in enumerate(lines) if l.startswith("Iter: ")]
    done = [i for i, l in enumerate(lines) if l.startswith("Done: ")]
    assert iters and done and iters[-1] < done[0], result.stdout
    assert re.search(r"100\.0% of 200 steps", lines[iters[-1]]), lines[iters[-1]]


def test_done_says_how_far_where_it_is_saved_and_how_to_play_and_continue(tmp_path):
    result = run_main([*TRAIN_CARTPOLE, "--total_steps", "600"], tmp_path)
    assert result.returncode == 0, result.stderr
    tail = result.stdout[result.stdout.index("Done: "):].splitlines()
    state = load_checkpoint(str(tmp_path / "M" / "r" / "checkpoint.pth"))
    steps = state["counters"]["global_steps"]
    games = sum(state["counters"]["worker_episodes"])
    best = load_checkpoint(str(tmp_path / "M" / "r" / "best.pth"))["best_running_reward"]
    assert re.match(rf"Done: {steps:,} steps, {games:,} games, [\d,]+ updates; running reward "
                    rf"-?[\d.]+ \(best {best:.2f}, its weights in best\.pth\)\.$", tail[0]), tail[0]
    assert tail[1] == f"  saved in {os.path.join('M', 'r')} (checkpoint.pth); logs in " \
                      f"{os.path.join('L', 'r')}"
    assert tail[2] == f"  play it:     python main.py --env_name CartPole-v1 --weights M/r"
    assert tail[3].startswith(f"  continue it: python main.py --do_train --resume M/r "
                              f"--total_steps {2 * steps}")
    # the commands it names work as written
    played = run_main(["--env_name", "CartPole-v1", "--weights", "M/r", "--episodes", "1",
                       "--no_video"], tmp_path)
    assert played.returncode == 0 and "Game 1/1: score" in played.stdout, played.stderr


def test_a_resumed_run_says_from_which_step_and_its_budget_in_words(tmp_path):
    first = run_main([*TRAIN_CARTPOLE, "--total_steps", "300"], tmp_path)
    assert first.returncode == 0, first.stderr
    steps = load_checkpoint(str(tmp_path / "M" / "r" / "checkpoint.pth"))["counters"]["global_steps"]
    resume = ["--do_train", "--resume", "M/r", "--models_dir", "M", "--logs_dir", "L"]
    more = run_main([*resume, "--total_steps", "700"], tmp_path)
    assert more.returncode == 0, more.stderr
    assert f"resuming M/r from step {steps:,}; until step 700" in more.stdout.splitlines()
    # a budget of 0 is no budget: the run says so, then goes on until Ctrl-C
    proc = subprocess.Popen([sys.executable, MAIN, *resume, "--total_steps", "0"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line.rstrip("\n"))
            if line.startswith("resuming "):
                break
        assert seen and seen[-1].startswith("resuming M/r from step ") and \
            seen[-1].endswith("; no budget (until Ctrl-C)"), seen
        assert any("total_steps 700 -> 0 (no budget)" in l for l in seen), seen
        proc.send_signal(2)
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
