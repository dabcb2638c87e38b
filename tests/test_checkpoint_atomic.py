"""A process killed while saving never leaves an unreadable checkpoint."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import torch

from conftest import ROOT
from Utils.checkpoint import load_checkpoint

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
