"""SIGINT and SIGTERM in the main process of a training run: one handler, never swapped.

Swapping signal handlers in and out (to hold a signal during a checkpoint write, to make a
second Ctrl-C kill the workers while stopping, to ignore signals while workers start) leaves
gaps in which a signal is lost or taken for another: a Ctrl-C that arrived while a run that
had spent its budget was stopping was taken for the second one and the run exited 0, and a
Ctrl-C while the workers were being started was ignored, so the run trained to its budget.
So :func:`install` sets :func:`_handler` once for both signals, and what a signal does
depends only on this module's state, which is changed without touching the handlers:

* outside a run (:func:`training`), a signal raises ``KeyboardInterrupt`` (SIGINT) or
  :class:`Terminated` (SIGTERM) right away;
* in a run, the first signal raises it and puts the run into its stop; a signal during the
  stop (from :func:`begin_stop` on, which a spent budget or a failure calls too) is only
  recorded and passed to the stop's hook with the run's count (the trainer kills the
  workers at the second), and a run that was not stopping for a signal raises the first
  one's exception once its final checkpoint is written;
* inside :func:`signals_held` (a checkpoint write, the start of the workers), a signal waits
  until the outermost block is done, then counts as above.

:func:`fault_point` is a test hook: with ``ACER_INTERRUPT_AT=PHASE`` (or ``PHASE:TERM``) in
the environment, the process sends itself SIGINT (SIGTERM) when the run reaches ``PHASE``
(``tests/test_interrupts.py``).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)
FAULT_ENV = "ACER_INTERRUPT_AT"


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop like Ctrl-C (final checkpoint), but exit with 143."""


def stop_exception(signum: int) -> KeyboardInterrupt:
    """The exception that stops a run for ``signum``."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


class _State:
    def __init__(self):
        self.held = 0                 # depth of signals_held blocks (main thread)
        self.pending: list[int] = []  # signals that arrived while held, oldest first
        self.in_run = False           # inside training()
        self.received: list[int] = []  # the signals the current run received
        self.stopping = False         # the run is stopping: signals are recorded, not raised
        self.on_signal: Callable[[int], None] | None = None  # the stop's hook (signal count)
        self.fired = False            # fault_point sent its signal


_state = _State()


def _handler(signum, frame) -> None:
    if _state.held:
        _state.pending.append(signum)
        return
    _deliver(signum)


def _deliver(signum: int) -> None:
    """What a signal does once it is not held (see the module docstring)."""
    if not _state.in_run:
        raise stop_exception(signum)
    _state.received.append(signum)
    if not _state.stopping:
        _state.stopping = True   # set before raising: no later signal can raise into the stop
        raise stop_exception(signum)
    if _state.on_signal is not None:
        _state.on_signal(len(_state.received))


def _release() -> None:
    """Deliver the signals held, oldest first; raise the first exception one raised."""
    error = None
    while not _state.held and _state.pending:
        signum = _state.pending.pop(0)
        try:
            _deliver(signum)
        except KeyboardInterrupt as err:
            error = error or err
    if error is not None:
        raise error


def installed() -> bool:
    """Whether this module's handler is the one for SIGINT and SIGTERM."""
    return all(signal.getsignal(sig) is _handler for sig in SIGNALS)


def install() -> None:
    """Make :func:`_handler` the handler of SIGINT and SIGTERM (the main thread only; another
    library, Ray's ``ray.init`` for one, may have replaced it)."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            if signal.getsignal(sig) is not _handler:
                signal.signal(sig, _handler)


@contextlib.contextmanager
def training():
    """The extent of one training run (:meth:`Agent.runtime.trainer.Trainer.train`): its signals are
    counted from zero; the handler is installed if it was not (and the previous handlers are
    put back after)."""
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS} if main and not installed() else {}
    _state.received, _state.stopping, _state.on_signal = [], False, None
    if not _state.held:
        _state.pending = []
    _state.in_run = True
    install()
    try:
        yield
    finally:
        _state.in_run, _state.stopping, _state.on_signal = False, False, None
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def begin_stop(on_signal: Callable[[int], None] | None = None) -> None:
    """The run is stopping (a budget was spent, a worker failed, or it was interrupted): from
    now on a signal is recorded and counted, not raised. ``on_signal(count)`` is then called
    for each, ``count`` being the run's signals so far, this one included; it is called at
    once for those already received."""
    _state.stopping = True
    if on_signal is not None:
        _state.on_signal = on_signal
        if _state.received:
            on_signal(len(_state.received))


def received() -> list[int]:
    """The signals the current (or last) run received, oldest first."""
    return list(_state.received)


@contextlib.contextmanager
def signals_held(signals=SIGNALS):
    """Hold ``signals`` while the body runs, then deliver those that arrived (the first to the
    handler in place before, if not this module's). Outside the main thread (where handlers
    cannot be set) it does nothing. Blocks nest."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if set(signals) <= set(SIGNALS) and installed():
        _state.held += 1
        try:
            yield
        finally:
            _state.held -= 1
            _release()
        return
    # another handler (a program or test that set its own): swap it out while the body runs
    pending: list[int] = []

    def hold(signum, frame):
        pending.append(signum)

    previous = {}
    try:
        for sig in signals:
            previous[sig] = signal.signal(sig, hold)
        yield
    finally:
        error = None
        for sig, handler in previous.items():  # None: a handler set outside Python
            for _ in range(3):   # signal.signal runs a pending signal's handler first: one
                try:             # for a signal already restored may raise; try again
                    signal.signal(sig, signal.SIG_DFL if handler is None else handler)
                    break
                except BaseException as err:
                    error = error or err
        if error is not None:
            raise error
        if pending:
            signal.raise_signal(pending[0])


@contextlib.contextmanager
def blocked_for_children():
    """For starting worker processes: SIGINT and SIGTERM blocked in this thread, a mask that a
    spawned process inherits, so that a Ctrl-C sent to the whole process group (a terminal,
    ``timeout -s INT``) while a worker is still importing cannot raise KeyboardInterrupt in
    it (the worker ignores both, then unblocks them: :func:`Agent.runtime.worker.worker_entry`).
    Signals sent to this process meanwhile stay pending (or reach another thread) and are
    delivered after the block; with :func:`signals_held` around it, after that one.
    Without ``pthread_sigmask`` (not POSIX) the signals are ignored instead, and one that
    arrives meanwhile is lost."""
    if not hasattr(signal, "pthread_sigmask"):
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unblock_in_child() -> None:
    """In a worker, after it set SIGINT and SIGTERM to be ignored: undo the mask it inherited
    from :func:`blocked_for_children` (its own subprocesses would inherit it too)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


def fault_point(phase: str) -> None:
    """Test hook: when ``$ACER_INTERRUPT_AT`` names ``phase`` (``PHASE`` or ``PHASE:TERM``),
    send this process SIGINT (SIGTERM) here, once, and say so on stderr."""
    spec = os.environ.get(FAULT_ENV)
    if not spec or _state.fired:
        return
    name, _, which = spec.partition(":")
    if name != phase:
        return
    _state.fired = True
    signum = signal.SIGTERM if which.upper() in ("TERM", "SIGTERM") else signal.SIGINT
    print(f"{FAULT_ENV}: sending {signal.Signals(signum).name} at {phase}", file=sys.stderr,
          flush=True)
    os.kill(os.getpid(), signum)
