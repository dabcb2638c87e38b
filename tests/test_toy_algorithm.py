"""Adding an algorithm touches only its own files: ``tests/toy_algorithm.py`` defines and
registers REINFORCE with a baseline, and the project's own command line trains it with two
worker processes, checkpoints it, resumes it and plays it, through ``main.main``."""
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
                                      "  mlp_hidden: 32\n")
    common = ["--config", str(tmp_path / "toy.yml"), "--models_dir", "M", "--logs_dir", "L"]
    trained = toy_main(["--do_train", "--algo", "reinforce", "--env_name", "CartPole-v1",
                        "--n_workers", "2", "--total_steps", "3000", "--seed", "1", *common], tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "Training REINFORCE (toy) on CartPole-v1 with 2 workers" in trained.stdout
    (run,) = glob.glob(str(tmp_path / "M" / "*"))
    first = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    assert first["algo"] == "reinforce" and "average_model" not in first
    counters = first["counters"]
    assert counters["global_steps"] >= 3000 and all(n > 0 for n in counters["worker_updates"])
    assert counters["optimizer_steps"] == sum(counters["worker_updates"])
    torch.manual_seed(1)
    import toy_algorithm
    initial = toy_algorithm.ToyNet((4,), 2, 32).state_dict()
    assert all(not torch.equal(initial[k], first["model"][k]) for k in initial)

    resumed = toy_main(["--do_train", "--resume", run, "--total_steps", "5000", *common], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {run} from step {counters['global_steps']:,}" in resumed.stdout
    assert "starts afresh" not in resumed.stderr
    after = load_checkpoint(os.path.join(run, "checkpoint.pth"))["counters"]
    assert after["global_steps"] >= 5000 and after["optimizer_steps"] > counters["optimizer_steps"]

    played = toy_main(["--env_name", "CartPole-v1", "--weights", run, "--episodes", "2",
                       "--no_video", "--models_dir", "M"], tmp_path)
    assert played.returncode == 0, played.stderr[-3000:]
    assert played.stdout.count("Game ") == 2 and "Mean score over 2 games" in played.stdout
    assert "reinforce on CartPole-v1" in played.stdout


def test_the_toy_touches_only_the_public_seam():
    """Its imports from the project: the registry, the agent interface and the shared math."""
    import ast
    tree = ast.parse(open(os.path.join(HERE, "toy_algorithm.py")).read())
    project = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module and node.module.split(".")[0] in ("Agent", "NN", "Utils")}
    assert project == {"Agent.registry", "Agent.interface", "Agent.shared_math"}
