"""Faults: interrupts, dying and failing workers, non-finite updates, failed saves.

Real training runs in subprocesses; the faulty environments are real Gymnasium
environments (tests/faulty_envs.py) that crash or return NaN rewards.
"""
import os
import resource
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
import torch

import Agent.backends.local as local_backend
from Agent.interface import BAD_STREAK, SKIPPED, STEPS, UPDATES, apply_gradients
from Agent.runtime.trainer import Trainer, WorkerFailed
from Agent.training import build_trainer
from NN.networks import ACERNet
from NN.shared_adam import SharedAdam
from Utils.checkpoint import load_checkpoint
from Utils.config import Config

from conftest import ROOT


def start(args, cwd, **kwargs):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.update(kwargs.pop("env", {}))
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), "--do_train", *args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, **kwargs)


def wait_for(proc, text, timeout=120):
    """Read stdout until a line contains ``text``; return the lines read."""
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"'{text}' not seen: {''.join(lines)[-2000:]}")


def children_of(proc):
    return psutil.Process(proc.pid).children(recursive=True)


def running(processes, timeout):
    """Those of ``processes`` still running after ``timeout`` s (a zombie has exited: it only
    waits to be reaped, which this machine's init process may never do)."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    out = []
    for p in alive:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def only_checkpoint(folder):
    runs = [os.path.join(folder, d) for d in os.listdir(folder)]
    assert len(runs) == 1
    return os.path.join(runs[0], "checkpoint.pth")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_all_workers_saves_and_exits(tmp_path, sig, code):
    proc = start(["--env_name", "CartPole-v1", "--n_workers", "2", "--interval", "20"], tmp_path)
    wait_for(proc, "Steps:")
    children = children_of(proc)
    assert len([c for c in children if "spawn_main" in " ".join(c.cmdline())]) == 2
    proc.send_signal(sig)
    proc.wait(timeout=120)   # a guard against a hang, not a speed check
    assert proc.returncode == code, proc.stderr.read()
    assert not running(children, timeout=60)
    state = load_checkpoint(only_checkpoint(tmp_path / "Models"))
    assert state["counters"]["global_steps"] > 0


def test_second_ctrl_c_hurries_the_stop_and_files_stay_whole(tmp_path):
    proc = start(["--env_name", "PongNoFrameskip-v4", "--n_workers", "2", "--interval", "5"], tmp_path)
    wait_for(proc, "Steps:", timeout=180)
    wait_for(proc, "Steps:", timeout=180)   # the first report's checkpoint is written by now
    children = children_of(proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    assert proc.returncode == 130
    assert "Interrupted; checkpoint written at step" in proc.stderr.read()
    assert not running(children, timeout=60)
    load_checkpoint(only_checkpoint(tmp_path / "Models"))    # whole, written after the workers died


def test_killed_worker_stops_the_run_and_is_named(tmp_path):
    proc = start(["--env_name", "CartPole-v1", "--n_workers", "2", "--interval", "20"], tmp_path)
    wait_for(proc, "Steps:")
    workers = [c for c in children_of(proc) if "spawn_main" in " ".join(c.cmdline())]
    victim = workers[1]
    victim.send_signal(signal.SIGKILL)
    proc.wait(timeout=120)
    stderr = proc.stderr.read()
    assert proc.returncode == 1
    assert "died with exit code -9 (killed by SIGKILL)" in stderr
    assert "error: worker " in stderr
    assert not running(workers, timeout=60)
    load_checkpoint(only_checkpoint(tmp_path / "Models"))


def cartpole_run(tmp_path) -> Trainer:
    cfg = Config(env_name="CartPole-v1", n_workers=2, interval=20, models_dir=str(tmp_path / "M"))
    return build_trainer(cfg, str(tmp_path / "M" / "run"), str(tmp_path / "L" / "run"))


def when_both_step(trainer: Trainer, then, deadline_s=120.0) -> threading.Thread:
    """A thread that calls ``then()`` once both workers have stepped (a guard against a hang:
    after ``deadline_s`` it kills the workers, so that a failing test ends)."""
    def watch():
        deadline = time.time() + deadline_s
        while time.time() < deadline and not (trainer.counters[:, STEPS] > 0).all():
            time.sleep(0.05)
        then()
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_worker_killed_holding_the_optimizer_lock_does_not_hang_the_run(tmp_path, monkeypatch, capfd):
    # A worker killed inside its Adam step leaves the shared lock held for good: the other
    # worker blocks on it and never stops by itself. Here the test holds the real lock (as the
    # killed worker would) and kills worker 1. The run must still end, name the dead worker,
    # kill the stuck one (workers ignore SIGTERM) and write its checkpoint.
    monkeypatch.setattr(local_backend, "STUCK_TIMEOUT_S", 5.0)
    trainer = cartpole_run(tmp_path)
    lock = trainer.optimizer.lock

    def kill_holding_the_lock():
        lock.acquire()
        trainer.backend.processes[1].kill()
    when_both_step(trainer, kill_holding_the_lock)
    try:
        with pytest.raises(WorkerFailed, match="worker 1 died with exit code -9"):
            trainer.train()
        workers = trainer.backend.processes
        assert [w.is_alive() for w in workers] == [False, False]
        assert workers[0].exitcode == -signal.SIGKILL      # stuck on the lock, so killed
        assert "warning: worker 0 did not stop; killed" in capfd.readouterr().err
        assert load_checkpoint(os.path.join(trainer.run_dir, "checkpoint.pth"))["counters"]["global_steps"] > 0
    finally:
        lock.release()


def test_stop_waits_for_workers_saving_their_state(tmp_path, monkeypatch, capfd):
    # A worker that is still saving its own state (a replay of hundreds of MB takes a minute;
    # here the environment's close, which comes after the save, takes 4 s) is waited for, not
    # killed, however short the usual waits are.
    monkeypatch.setattr(local_backend.LocalBackend, "join_timeout_s", 0.0)
    monkeypatch.setattr(local_backend, "STUCK_TIMEOUT_S", 0.5)
    monkeypatch.setenv("SLOW_CLOSE_S", "4")
    cfg = Config(env_name="tests.faulty_envs:CartPoleSlowClose-v0", n_workers=2, total_steps=400,
                 models_dir=str(tmp_path / "M"))
    trainer = build_trainer(cfg, str(tmp_path / "M" / "run"), str(tmp_path / "L" / "run"))
    trainer.train()
    assert [w.exitcode for w in trainer.backend.processes] == [0, 0]
    err = capfd.readouterr().err
    assert "to finish saving their state" in err and "did not stop" not in err
    for i in range(2):
        assert load_checkpoint(os.path.join(trainer.run_dir, f"worker_{i}.pth"))["worker_id"] == i


def test_worker_exception_shows_its_traceback(tmp_path):
    proc = start(["--env_name", "tests.faulty_envs:CartPoleCrashing-v0", "--n_workers", "2"], tmp_path,
                 env={"FAULT_AFTER": "300"})
    proc.wait(timeout=120)
    stderr = proc.stderr.read()
    assert proc.returncode == 1
    assert "error: worker " in stderr and " failed:" in stderr
    assert "Traceback (most recent call last)" in stderr
    assert "RuntimeError: simulated environment crash after 300 steps" in stderr


def test_nan_loss_never_reaches_the_shared_weights():
    torch.manual_seed(0)
    net = ACERNet((4,), 2, mlp_hidden=8)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = SharedAdam(net.parameters())
    counters = torch.zeros(1, 6, dtype=torch.int64)
    local = ACERNet((4,), 2, mlp_hidden=8)
    logits, q = local(torch.randn(3, 4))
    loss = logits.sum() + q.sum() * float("nan")
    assert apply_gradients(loss, list(local.parameters()), optimizer, 40.0, counters, 0) is None
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert int(optimizer.step_count) == 0
    assert counters[0, SKIPPED] == 1 and counters[0, BAD_STREAK] == 1 and counters[0, UPDATES] == 0
    logits, q = local(torch.randn(3, 4))                     # a good update resets the streak
    assert apply_gradients(logits.sum() + q.sum(), list(local.parameters()), optimizer, 40.0, counters, 0)
    assert counters[0, BAD_STREAK] == 0 and counters[0, UPDATES] == 1 and int(optimizer.step_count) == 1


def test_run_with_nan_rewards_stops_after_consecutive_bad_updates(tmp_path, main_cli):
    result = main_cli(["--do_train", "--env_name", "tests.faulty_envs:CartPoleNaNReward-v0",
                       "--n_workers", "1", "--max_bad_updates", "30", "--interval", "5"], tmp_path)
    assert result.returncode == 1
    assert "updates in a row with a non-finite loss or gradient" in result.stderr
    state = load_checkpoint(only_checkpoint(tmp_path / "Models"))
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    counters = state["counters"]
    assert counters["worker_skipped_updates"][0] >= 30
    assert counters["optimizer_steps"] == counters["worker_updates"][0] > 0


def test_failed_saves_keep_the_previous_checkpoint(tmp_path, main_cli):
    args = ["--env_name", "CartPole-v1", "--n_workers", "1", "--interval", "10"]
    result = main_cli(["--do_train", *args, "--total_steps", "1000"], tmp_path)
    assert result.returncode == 0, result.stderr
    path = only_checkpoint(tmp_path / "Models")
    saved = open(path, "rb").read()

    def small_files():  # a write past 64 KB fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    run = [sys.executable, os.path.join(ROOT, "main.py"), "--do_train", *args, "--resume",
           "--total_steps", "3000"]
    result = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, env=env,
                            preexec_fn=small_files, timeout=300)
    assert result.returncode == 1                            # trained on, but could not save
    assert "warning: checkpoint not saved to" in result.stderr and "File too large" in result.stderr
    assert "the final checkpoint could not be written" in result.stderr
    assert open(path, "rb").read() == saved                  # the previous checkpoint, intact
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp-")]

    result = subprocess.run(run + ["--stop_on_save_error"], cwd=tmp_path, capture_output=True,
                            text=True, env=env, preexec_fn=small_files, timeout=300)
    assert result.returncode == 1 and "error: stopping: checkpoint not saved" in result.stderr
    assert open(path, "rb").read() == saved


@pytest.mark.parametrize("delay", [0.3, 2.0])
def test_workers_do_not_outlive_a_killed_main_process(tmp_path, delay):
    """kill -9 of the main process while its workers start up (0.3 s) or train (2 s)."""
    proc = start(["--env_name", "CartPole-v1", "--n_workers", "2"], tmp_path)
    wait_for(proc, "Training ACER")
    time.sleep(delay)
    children = children_of(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not running(children, timeout=10)
