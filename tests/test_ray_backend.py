"""The Ray backend on a real local Ray cluster: a head and a second node started with
``ray start`` on loopback, two worker actors, a parameter server, and a checkpoint that the
local backend resumes and plays."""
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from Utils.checkpoint import load_checkpoint

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(monkeypatch):
    """A head node and one more node, one CPU each, on 127.0.0.1, sharing a token (Ray 2.59+
    authenticates local clusters by default); torn down afterwards. The token is in this
    process's environment, so the training command inherits it."""
    ray_cli = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    port = free_port()
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    env = dict(os.environ)
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    started = []
    try:
        head = subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1",
                               "--port", str(port), "--include-dashboard", "false",
                               "--temp-dir", tempfile.mkdtemp(prefix="ray", dir="/tmp"), *common],
                              capture_output=True, text=True, timeout=180, env=env)
        assert head.returncode == 0, head.stderr
        started.append("head")
        node = subprocess.run([ray_cli, "start", "--address", f"127.0.0.1:{port}",
                               "--node-ip-address", "127.0.0.1", *common],
                              capture_output=True, text=True, timeout=180, env=env)
        assert node.returncode == 0, node.stderr
        yield f"127.0.0.1:{port}"
    finally:
        if started:
            subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120, env=env)


def test_acer_on_a_two_node_ray_cluster_checkpoints_for_the_local_backend(tmp_path, main_cli, ray_cluster):
    nodes = subprocess.run([sys.executable, "-c",
                            f"import ray; ray.init(address='{ray_cluster}', logging_level='ERROR'); "
                            "print(sum(1 for n in ray.nodes() if n['Alive']))"],
                           capture_output=True, text=True, timeout=120)
    assert nodes.stdout.strip().splitlines()[-1] == "2", nodes.stderr
    result = main_cli(["--do_train", "--backend", "ray", "--ray_address", ray_cluster,
                       "--env_name", "CartPole-v1", "--n_workers", "2", "--total_steps", "400",
                       "--interval", "10"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    (run,) = [os.path.join(tmp_path, "Models", d) for d in os.listdir(tmp_path / "Models")]
    state = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    counters = state["counters"]
    assert state["config"]["backend"] == "ray" and counters["global_steps"] >= 400
    assert all(u > 0 for u in counters["worker_updates"])          # both actors pushed gradients
    # the parameter server applied exactly the gradients the workers sent
    assert counters["optimizer_steps"] == sum(counters["worker_updates"])
    assert state["optimizer"]["step"] == counters["optimizer_steps"]
    assert all(os.path.exists(os.path.join(run, f"worker_{i}.pth")) for i in range(2))

    # the same checkpoint resumes on the local backend and plays
    result = main_cli(["--do_train", "--resume", run, "--backend", "local", "--total_steps", "600",
                       "--interval", "10"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "resume: backend ray -> local" in result.stdout
    resumed = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    assert resumed["counters"]["global_steps"] >= 600
    assert resumed["counters"]["optimizer_steps"] == sum(resumed["counters"]["worker_updates"])
    result = main_cli(["--env_name", "CartPole-v1", "--weights", os.path.join(run, "checkpoint.pth"),
                       "--episodes", "1", "--no_video"], tmp_path)
    assert result.returncode == 0 and "Game 1/1: score" in result.stdout, result.stderr


def test_one_ray_worker_trains_bit_identically_to_one_local_worker(tmp_path, main_cli, monkeypatch):
    """With a single worker there are no races, so the parameter server must reproduce the
    shared-memory path exactly: same seed, same weights, average weights and Adam moments."""
    import torch
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    states = {}
    for backend in ("local", "ray"):
        folder = tmp_path / backend
        folder.mkdir()
        result = main_cli(["--do_train", "--backend", backend, "--env_name", "CartPole-v1",
                           "--n_workers", "1", "--total_steps", "600", "--seed", "5", "--interval", "10"],
                          folder, timeout=600)
        assert result.returncode == 0, result.stderr
        (run,) = [os.path.join(folder, "Models", d) for d in os.listdir(folder / "Models")]
        states[backend] = load_checkpoint(os.path.join(run, "checkpoint.pth"))
    local, remote = states["local"], states["ray"]
    assert local["counters"]["optimizer_steps"] == remote["counters"]["optimizer_steps"] > 50
    for key in ("model", "average_model"):
        for name, value in local[key].items():
            assert torch.equal(value, remote[key][name]), (key, name)
    for m_local, m_remote in zip(local["optimizer"]["exp_avg_sq"], remote["optimizer"]["exp_avg_sq"]):
        assert torch.equal(m_local, m_remote)
