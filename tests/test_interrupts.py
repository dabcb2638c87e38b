"""A signal to a training run's main process is never lost: in every phase where signals are
held or the stop is under way, SIGINT (or SIGTERM) still ends the run with its final
checkpoint and exit 130 (143).

Deterministic: the run sends itself the signal at a named phase (``ACER_INTERRUPT_AT``, the
hook :func:`Utils.interrupts.fault_point`), never after a sleep. The runs are started together
(one worker each, CartPole) and each test checks one of them.
"""
import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from Utils import interrupts
from Utils.checkpoint import load_checkpoint

MAIN = os.path.join(ROOT, "main.py")
BUDGET = 1000   # steps: a run that loses its interrupt trains to it and exits 0

# phase -> whether the run had spent its budget when the signal came. Only the first three
# runs write a checkpoint (and a console line) every iteration; the others write one every
# 5 minutes, i.e. only the final one, so a stop that skips it says "nothing saved".
PHASES = {
    "start": False,             # while the workers are being started (signals blocked)
    "episode": False,           # inside a message's handler (held until the batch is done)
    "checkpoint": False,        # inside a periodic checkpoint write (held)
    "best": False,              # inside a best.pth write (held)
    "checkpoint:TERM": False,   # SIGTERM there: the same, but exit 143
    "stopping": True,           # the budget is spent; the stop begins (old: its handlers not set)
    "stop": True,               # while the workers stop (after a spent budget)
    "final checkpoint": True,   # inside the final checkpoint write (held, while stopping)
    "final best": True,         # inside the final best.pth write (held, while stopping)
    "stop:TERM": True,
}
EVERY_ITERATION = ("checkpoint", "best", "checkpoint:TERM")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run per phase, all started at once; phase -> (Popen, its folder)."""
    started = {}
    for phase in PHASES:
        folder = tmp_path_factory.mktemp(re.sub(r"\W", "_", phase))
        env = dict(os.environ, PYTHONUNBUFFERED="1", ACER_INTERRUPT_AT=phase)
        proc = subprocess.Popen(
            [sys.executable, MAIN, "--do_train", "--env_name", "CartPole-v1", "--n_workers", "1",
             "--total_steps", str(BUDGET),
             "--interval", "1" if phase in EVERY_ITERATION else "0",
             "--models_dir", str(folder / "Models"), "--logs_dir", str(folder / "Logs")],
            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        started[phase] = (proc, folder)
    yield started
    for proc, _ in started.values():   # never leave a run behind a failed test
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def finished(proc, timeout=240):
    """stdout and stderr of ``proc`` once it ended (a guard against a hang, not a speed check)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the run did not end within {timeout} s\n{err[-3000:]}")


@pytest.mark.parametrize("phase", list(PHASES))
def test_a_signal_in_each_phase_stops_the_run_with_its_final_checkpoint(runs, phase):
    proc, folder = runs[phase]
    out, err = finished(proc)
    name, _, which = phase.partition(":")
    what, code = ("Terminated", 143) if which == "TERM" else ("Interrupted", 130)
    sent = f"ACER_INTERRUPT_AT: sending SIG{which or 'INT'} at {name}"
    assert sent in err, f"the run never reached phase {name!r}\n{err[-3000:]}"
    assert proc.returncode == code, f"exit {proc.returncode}\n{out[-1500:]}\n{err[-3000:]}"
    (run_dir,) = glob.glob(str(folder / "Models" / "*"))
    match = re.search(rf"^{what}; checkpoint written at step ([\d,]+) in (\S+); resume with: "
                      rf"python main.py --do_train --resume (\S+)$", err, re.M)
    assert match, err[-3000:]
    assert match.group(2) == match.group(3) == run_dir
    step = int(match.group(1).replace(",", ""))
    state = load_checkpoint(os.path.join(run_dir, "checkpoint.pth"))
    assert state["counters"]["global_steps"] == step    # the final checkpoint, as announced
    # written after the worker stopped: a resume continues the worker from its own file
    worker = load_checkpoint(os.path.join(run_dir, "worker_0.pth"))
    assert worker["iteration"] == state["counters"]["worker_iterations"][0]
    if PHASES[phase]:
        assert step >= BUDGET
    else:
        assert step < BUDGET, "the run trained to its budget: the interrupt was not acted on"
    assert "Traceback" not in err and "Done:" not in out, err[-3000:]
    # no message was lost or half-logged: every game the workers counted has its CSV row
    with open(os.path.join(folder, "Logs", os.path.basename(run_dir), "episodes.csv")) as fh:
        rows = len(fh.readlines()) - 1
    assert state["logger"]["episodes"] == sum(state["counters"]["worker_episodes"]) == rows


# The rules themselves, in this process (milliseconds): signal.raise_signal runs the handler
# before it returns, so each step below is deterministic.

@pytest.fixture
def handler():
    previous = {sig: signal.getsignal(sig) for sig in interrupts.SIGNALS}
    interrupts.install()
    yield
    for sig, old in previous.items():
        signal.signal(sig, old)


def test_nested_holds_deliver_once_the_outermost_ends(handler):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.signals_held():
            with interrupts.signals_held():
                signal.raise_signal(signal.SIGINT)
                done.append("inner")
            done.append("outer")   # the inner block's end delivered nothing
    assert done == ["inner", "outer"] and interrupts.installed()


def test_in_a_run_the_first_signal_raises_and_the_rest_are_the_stops(handler):
    counts = []
    with interrupts.training():
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)       # before the stop's hook: counted
        interrupts.begin_stop(counts.append)     # called at once with the count so far
        signal.raise_signal(signal.SIGTERM)
        with interrupts.signals_held():
            signal.raise_signal(signal.SIGINT)
            assert counts == [2, 3]
        assert counts == [2, 3, 4]
    assert interrupts.received() == [signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGINT]
    with pytest.raises(interrupts.Terminated):   # after the run: raised again
        signal.raise_signal(signal.SIGTERM)


def test_a_budget_that_ended_the_run_makes_the_first_signal_the_stops(handler):
    counts = []
    with interrupts.training():
        interrupts.begin_stop()
        with interrupts.signals_held():          # the final checkpoint's write
            signal.raise_signal(signal.SIGINT)
        interrupts.begin_stop(counts.append)
        assert counts == [1] and interrupts.received() == [signal.SIGINT]


def test_another_programs_handler_is_held_and_put_back():
    caught = []

    def mine(signum, frame):
        caught.append(signum)
    previous = {sig: signal.signal(sig, mine) for sig in interrupts.SIGNALS}
    try:
        with interrupts.signals_held():
            signal.raise_signal(signal.SIGTERM)
            assert caught == []
        assert caught == [signal.SIGTERM]
        assert all(signal.getsignal(sig) is mine for sig in interrupts.SIGNALS)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
