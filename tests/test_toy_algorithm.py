"""Adding an algorithm touches only its own files: ``tests/toy_algorithm.py`` defines and
registers REINFORCE with a baseline, and the project's own command line trains it with two
worker processes, checkpoints it, resumes it and plays it, through ``main.main``. The toy is
imported only in those subprocesses: registering it here would add it to this test process's
registry and config for the tests that follow."""
import glob
import os
import subprocess
import sys

import torch

from Utils.checkpoint import load_checkpoint
from conftest import ROOT

HERE = os.path.dirname(os.path.abspath(__file__))
# the toy registers itself on import; then main.py's own main() runs the command line
LAUNCH = "import sys, toy_algorithm, main; sys.exit(main.main(sys.argv[1:]))"


def toy_main(args, cwd, timeout=600):
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([HERE, ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", LAUNCH, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_a_toy_algorithm_trains_resumes_and_plays_through_main(tmp_path):
    (tmp_path / "toy.yml").write_text("reinforce:\n  lr: 0.003\n  entropy_coef: 0.01\n"
                                      "  mlp_hidden: 32\n  t_max: 16\n"     # t_max: shared with a3c
                                      "  baseline_coef: 0.25\n")            # its own setting
    common = ["--config", str(tmp_path / "toy.yml"), "--models_dir", "M", "--logs_dir", "L"]
    trained = toy_main(["--do_train", "--algo", "reinforce", "--env_name", "CartPole-v1",
                        "--n_workers", "2", "--total_steps", "3000", "--seed", "1", *common], tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "Training REINFORCE (toy) on CartPole-v1 with 2 workers" in trained.stdout
    (run,) = glob.glob(str(tmp_path / "M" / "*"))
    first = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    assert first["algo"] == "reinforce" and "average_model" not in first
    assert first["config"]["baseline_coef"] == 0.25 and first["config"]["t_max"] == 16
    counters = first["counters"]
    assert counters["global_steps"] >= 3000 and all(n > 0 for n in counters["worker_updates"])
    assert counters["optimizer_steps"] == sum(counters["worker_updates"])
    assert sum(counters["worker_steps"]) == 16 * sum(counters["worker_iterations"])   # t_max 16

    resumed = toy_main(["--do_train", "--resume", run, "--total_steps", "5000",
                        "--baseline_coef", "0.3", *common], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume: baseline_coef 0.25 -> 0.3" in resumed.stdout
    assert f"resuming {run} from step {counters['global_steps']:,}" in resumed.stdout
    assert "starts afresh" not in resumed.stderr
    later = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    after = later["counters"]
    assert later["config"]["baseline_coef"] == 0.3
    assert after["global_steps"] >= 5000 and after["optimizer_steps"] > counters["optimizer_steps"]
    assert all(not torch.equal(first["model"][k], later["model"][k]) for k in first["model"])

    played = toy_main(["--env_name", "CartPole-v1", "--weights", run, "--episodes", "2",
                       "--no_video", "--models_dir", "M"], tmp_path)
    assert played.returncode == 0, played.stderr[-3000:]
    assert played.stdout.count("Game ") == 2 and "Mean score over 2 games" in played.stdout
    assert "reinforce on CartPole-v1" in played.stdout


def refusal(algo: str, flags: list[str], cwd) -> str:
    """The one line a training command with ``flags`` is refused with (exit 2)."""
    refused = toy_main(["--do_train", "--algo", algo, "--env_name", "CartPole-v1", *flags], cwd)
    assert refused.returncode == 2, refused.stderr[-3000:]
    return refused.stderr.strip()


def test_the_toy_reads_a3cs_t_max_and_no_other_a3c_setting(tmp_path):
    assert refusal("reinforce", ["--hidden_size", "8"], tmp_path) == (
        "error: --hidden_size is a setting of --algo a3c; --algo reinforce does not use it")
    assert not (tmp_path / "Models").exists()


def test_the_toys_own_setting_is_a_flag_with_help_a_range_and_an_owner(tmp_path):
    """baseline_coef, declared in the toy's record only: in --help, range-checked, refused for
    another algorithm; each refusal one line, exit 2, nothing written."""
    helped = toy_main(["--help"], tmp_path)
    assert helped.returncode == 0 and "--baseline_coef" in helped.stdout
    assert "weight of the baseline's squared error" in " ".join(helped.stdout.split())
    assert refusal("reinforce", ["--baseline_coef", "-1"], tmp_path) == (
        "error: --baseline_coef must be >= 0, got -1.0")
    assert refusal("a3c", ["--baseline_coef", "0.3"], tmp_path) == (
        "error: --baseline_coef is a setting of --algo reinforce; --algo a3c does not use it")
    assert not (tmp_path / "Models").exists()


def test_the_toy_touches_only_the_public_seam():
    """Its imports from the project: the registry, the agent interface, the shared math and the
    network spec its network is built from."""
    import ast
    tree = ast.parse(open(os.path.join(HERE, "toy_algorithm.py")).read())
    project = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module and node.module.split(".")[0] in ("Agent", "NN", "Utils")}
    assert project == {"Agent.registry", "Agent.interface", "Agent.shared_math", "Utils.network_spec"}
