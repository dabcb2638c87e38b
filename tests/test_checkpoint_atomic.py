"""A process killed while saving never leaves an unreadable checkpoint; a signal during a save
waits for it; saves made while workers update see only whole weights."""
import collections
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from Agent.trainer import Trainer
from conftest import ROOT
from Utils.checkpoint import load_checkpoint, save_checkpoint
from Utils.config import Config

SAVER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
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
    script.write_text(SAVER.format(root=ROOT))
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


def step_forever(optimizer, stop_event):
    torch.set_num_threads(1)
    grads = [torch.randn_like(p) for p in optimizer.params]
    while not stop_event.is_set():
        optimizer.step(grads)
        time.sleep(0.001)   # a worker's rollout; without it this loop would hold the lock always


def test_saves_during_updates_never_mistake_weights_for_non_finite(tmp_path):
    # The check used to read the shared weights while a worker wrote them; torch's isfinite reads
    # each value twice, so a value changed in between looked like NaN and a save was skipped.
    # Now every checkpoint holds a copy taken between two updates, and the check reads the copy.
    cfg = Config(env_name="PongNoFrameskip-v4", n_workers=1)
    trainer = Trainer(cfg, str(tmp_path / "M" / "run"), str(tmp_path / "L" / "run"))
    ctx = torch.multiprocessing.get_context("spawn")
    stop_event = ctx.Event()
    writer = ctx.Process(target=step_forever, args=(trainer.optimizer, stop_event), daemon=True)
    writer.start()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as in a training run's main process
    try:
        while int(trainer.optimizer.step_count) < 5:
            time.sleep(0.05)
        false_alarms = 0
        for _ in range(150):
            model = trainer.checkpoint_state()["model"]
            false_alarms += not all(torch.isfinite(v).all() for v in model.values())
        saved = [trainer.save() for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
        stop_event.set()
        writer.join(timeout=10)
        trainer.logger.close()
    assert false_alarms == 0 and all(saved)
    assert load_checkpoint(os.path.join(trainer.run_dir, "checkpoint.pth"))["optimizer"]["step"] > 5
