"""The plot command on small logs written by the project's own logger."""
import os
import subprocess
import sys

import matplotlib.image as mpimg
import pytest

from Utils.logger import RunLogger
from Utils.plot import figure_for_runs, plot_runs, stitched_wall_time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_log(folder, rewards):
    logger = RunLogger(str(folder), interval=10)
    for i, reward in enumerate(rewards):
        logger.episode(worker=i % 2, reward=reward, length=100 + i, global_step=100 * (i + 1))
    logger.close()
    return str(folder)


def test_plot_writes_png_with_one_curve_per_run(tmp_path):
    runs = [make_log(tmp_path / "a", [-21, -20, -19, -15]), make_log(tmp_path / "b", [-21, -21, -20])]
    out = tmp_path / "curves.png"
    plot_runs(runs, str(out), ["acer", "a3c"], x_axis="step")
    image = mpimg.imread(out)
    assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0
    fig = figure_for_runs(runs, ["acer", "a3c"])
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2]
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["acer", "a3c"]


def test_plot_command_line(tmp_path):
    run = make_log(tmp_path / "run", [1, 2, 3])
    out = tmp_path / "cli.png"
    result = subprocess.run([sys.executable, "-m", "Utils.plot", run, "--out", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 1000
    result = subprocess.run([sys.executable, "-m", "Utils.plot", str(tmp_path / "missing")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: cannot plot")


def test_wall_time_of_older_logs_is_stitched_across_resumes():
    # logs written before the clock was kept across resumes restart at zero after each resume
    assert stitched_wall_time([10, 20, 30, 5, 15, 2]) == [10, 20, 30, 35, 45, 47]
    assert stitched_wall_time([1, 2, 2, 3]) == [1, 2, 2, 3]


def test_one_worker_curve_renumbers_its_games_and_recomputes_the_running_reward(tmp_path):
    run = make_log(tmp_path / "w", [-21, 5, -19, 7, -17])   # workers alternate 0, 1, 0, 1, 0
    fig = figure_for_runs([run], ["acer"], worker=0)
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [1, 2, 3]
    expected = [-21, 0.99 * -21 + 0.01 * -19]
    expected.append(0.99 * expected[-1] + 0.01 * -17)
    assert list(line.get_ydata()) == pytest.approx(expected)
    assert fig.axes[0].get_xlabel() == "Episode of worker 0"


def test_updates_view_draws_every_logged_statistic(tmp_path):
    from Utils.logger import UPDATE_SCALARS
    from Utils.plot import UPDATE_PANELS, figure_for_updates
    assert {key for _, keys in UPDATE_PANELS for key in keys} == set(UPDATE_SCALARS)
    logger = RunLogger(str(tmp_path), interval=1)
    for i in range(3):
        logger.iteration({key: float(i) for key in UPDATE_SCALARS})
        logger.report(global_step=20 * (i + 1), replay_len=i)
    logger.close()
    fig = figure_for_updates([str(tmp_path)], x_axis="step")
    assert sum(len(ax.lines) for ax in fig.axes) == len(UPDATE_SCALARS)
    out = tmp_path / "updates.png"
    assert plot_runs([str(tmp_path)], str(out), x_axis="time", view="updates") == str(out)
    assert mpimg.imread(out).shape[1] > 1000


def test_plot_refuses_to_replace_a_png_without_force(tmp_path):
    run = make_log(tmp_path / "run", [1, 2, 3])
    out = tmp_path / "curves.png"
    out.write_bytes(b"an earlier figure")

    def plot(*flags):
        return subprocess.run([sys.executable, "-m", "Utils.plot", run, "--out", str(out), *flags],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    refused = plot()
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"an earlier figure"
    replaced = plot("--force")
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.strip() == f"wrote {out}" and out.stat().st_size > 1000


def test_published_points_are_drawn_beside_the_runs(tmp_path):
    run = make_log(tmp_path / "run", [1, 2, 3, 5])
    fig = figure_for_runs([run], ["ours"], points=[(2.0, 1.5), (4.0, 4.0)], points_label="original")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["ours", "original"]
    assert list(lines[1].get_xdata()) == [2.0, 4.0] and list(lines[1].get_ydata()) == [1.5, 4.0]
    out = tmp_path / "points.png"
    result = subprocess.run([sys.executable, "-m", "Utils.plot", run, "--out", str(out), "--points",
                             "2:1.5", "4:4"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    bad = subprocess.run([sys.executable, "-m", "Utils.plot", run, "--out", str(tmp_path / "x.png"),
                          "--points", "2-1.5"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --points takes X:Y pairs, e.g. 600:5 900:17"
    assert not (tmp_path / "x.png").exists()
