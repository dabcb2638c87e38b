"""A process killed while saving never leaves an unreadable checkpoint; a signal during a save
waits for it; saves made while workers update see only whole weights."""
import collections
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

from Agent.training import build_trainer
from Utils.checkpoint import load_checkpoint, save_checkpoint
from Utils.config import Config

SAVER = textwrap.dedent("""
    import sys, torch
    from Utils.checkpoint import save_checkpoint
    path = sys.argv[1]
    i = int(sys.argv[2])
    while True:   # save forever, each state tagged with its number, until killed
        i += 1
        save_checkpoint({{"format_version": 1, "n": i, "weights": torch.full((4_000_000,), float(i))}}, path)
        print(i, flush=True)
""")


def test_kill_during_save_keeps_a_loadable_checkpoint(tmp_path):
    path = str(tmp_path / "checkpoint.pth")
    script = tmp_path / "saver.py"
    script.write_text(SAVER.format())
    rng = random.Random(0)
    last_n = 0
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, str(script), path, str(last_n)],
                                stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()                    # at least one save finished
        time.sleep(rng.uniform(0.0, 0.5))         # then kill at a random moment, likely mid-save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = load_checkpoint(path)
        assert state["n"] > last_n
        assert torch.equal(state["weights"], torch.full((4_000_000,), float(state["n"])))
        last_n = state["n"]
    leftovers = [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]
    assert len(leftovers) <= 1                    # the next save removes what a killed one left


class SendsSigterm:
    """Sends SIGTERM to this process while it is being pickled, i.e. in the middle of a save."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        return (collections.OrderedDict, ())


class Stopped(Exception):
    pass


def test_sigterm_during_a_save_is_held_until_the_file_is_written(tmp_path):
    def stop(signum, frame):
        raise Stopped()
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        path = str(tmp_path / "checkpoint.pth")
        weights = torch.arange(2_000_000, dtype=torch.float32)
        with pytest.raises(Stopped):   # not torch's zip-writer error, and only after the write
            save_checkpoint({"format_version": 1, "weights": weights, "mid_save": SendsSigterm()}, path)
        assert torch.equal(load_checkpoint(path)["weights"], weights)
        assert signal.getsignal(signal.SIGTERM) is stop
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def hold_torn_weights(optimizer, ready, go):
    """A worker caught mid-update: under the optimizer's lock a weight is NaN until ``go``."""
    params = optimizer.params
    with optimizer.lock, torch.no_grad():
        saved = params[0].clone()
        params[0].fill_(float("nan"))
        ready.send("torn")
        go.recv()
        params[0].copy_(saved)


class ReportingLock:
    """The optimizer's lock, reporting (an event) when the main process starts waiting for it."""

    def __init__(self, lock):
        self.lock, self.waiting = lock, threading.Event()

    def acquire(self, *args, **kwargs):
        self.waiting.set()
        return self.lock.acquire(*args, **kwargs)

    def release(self):
        self.lock.release()


def test_a_save_never_reads_weights_a_worker_is_writing(tmp_path):
    # Deterministic: a child holds the lock with a torn (NaN) weight, as a worker does in the
    # middle of an Adam step; the save must wait for the lock and copy the whole weights after
    # the step. A save that read the shared weights without the lock would see the NaN and
    # refuse to write (the bug this guards against: torch's isfinite reads each value twice,
    # so weights changed in between looked non-finite).
    cfg = Config(env_name="PongNoFrameskip-v4", n_workers=1)
    trainer = build_trainer(cfg, str(tmp_path / "M" / "run"), str(tmp_path / "L" / "run"))
    ctx = torch.multiprocessing.get_context("spawn")
    ready_parent, ready_child = ctx.Pipe()
    go_parent, go_child = ctx.Pipe()
    writer = ctx.Process(target=hold_torn_weights, args=(trainer.optimizer, ready_child, go_child),
                         daemon=True)
    writer.start()
    result = {}
    try:
        assert ready_parent.poll(120) and ready_parent.recv() == "torn"
        assert torch.isnan(trainer.optimizer.params[0]).all()      # torn while the lock is held
        lock = trainer.optimizer.lock = ReportingLock(trainer.optimizer.lock)
        saver = threading.Thread(target=lambda: result.update(saved=trainer.save()))
        saver.start()
        assert lock.waiting.wait(120)                                # the save waits for the lock
        go_parent.send("go")                                         # the worker's step ends
        saver.join(120)
    finally:
        writer.join(timeout=30)
        trainer.logger.close()
    assert result == {"saved": True}
    state = load_checkpoint(os.path.join(trainer.run_dir, "checkpoint.pth"))
    assert all(torch.isfinite(v).all() for v in state["model"].values())
