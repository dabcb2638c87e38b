"""Checkpoint files: plain dicts of tensors and numbers, written atomically, loaded safely.

A checkpoint is written to a temporary file in the same folder, flushed and
fsynced, then moved over the old one with ``os.replace``, so a crash during a
save leaves the previous file intact. Files are read with
``torch.load(weights_only=True)``, which refuses pickles that would run code.
SIGINT and SIGTERM that arrive during a write are held until it is done, so a
stopped run exits the usual way (130 or 143) instead of through torch's zip
writer, which turns an exception raised inside it into an unrelated error
(:func:`Utils.interrupts.signals_held`).
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile

import torch
import yaml

from Utils.interrupts import signals_held

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pth"
BEST_NAME = "best.pth"   # the weights at the best full-game running reward (Agent/runtime/trainer.py)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line for the user."""


class _WriteErrorRecorder:
    """A file object that remembers the first ``OSError`` its writes raised."""

    def __init__(self, fh):
        self.fh, self.error = fh, None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.fh.flush()


def save_checkpoint(state: dict, path: str) -> None:
    """Write ``state`` to ``path`` atomically; SIGINT and SIGTERM wait until it is written."""
    with signals_held():
        _write_atomically(state, path)


def _write_atomically(state: dict, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    prefix = f".tmp-{os.path.basename(path)}-"
    for stale in os.listdir(folder):  # left by a save that was killed; one saver per path
        if stale.startswith(prefix):
            os.unlink(os.path.join(folder, stale))
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; keep the usual permissions
        with os.fdopen(fd, "wb") as fh:
            writer = _WriteErrorRecorder(fh)
            try:
                torch.save(state, writer)
            except RuntimeError:
                # torch's zip writer reports a failed write (disk full, file too large) as a
                # RuntimeError about stream positions; raise the operating system's error instead
                if writer.error is not None:
                    raise writer.error from None
                raise
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str, mmap: bool = False) -> dict:
    """Read a checkpoint without executing code; :class:`CheckpointError` on any problem.
    ``mmap``: map the tensors' bytes instead of reading them (cheap when only the counters
    and settings are wanted: ``python main.py --list_runs``)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint file at {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(f"{path} is not a readable checkpoint (not a PyTorch zip archive)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe content"
        raise CheckpointError(f"{path} is not a safe checkpoint (refused to unpickle: {first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else 'truncated or corrupt'})") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not a checkpoint of this project")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {state['format_version']}, newer than "
                              f"this program's {FORMAT_VERSION}; update the program")
    return state


PRETRAINED_DIR = "Pre-Trained Weights"
WEIGHT_KEYS = ("format_version", "algo", "env_name", "obs_shape", "n_actions", "network_kind",
               "config", "counters", "model", "action_low", "action_high")


def read_worker_state(path: str, iteration: int,
                      fresh: str = "new seed and environment") -> tuple[dict | None, str | None]:
    """The one rule for resuming a worker from its ``worker_<i>.pth``, on either backend:
    ``(state, None)`` to continue from it, or ``(None, warning)`` to start afresh (a new seed
    drawn from the run's seed, the worker id and its iteration count; a new environment and
    game; an empty replay, or A3C's zero LSTM state: ``fresh`` says so in the warning).

    * no file (a new run, or none was written): afresh, ``warning`` None;
    * a file written at another iteration than ``iteration``, the one the run's checkpoint
      recorded for this worker (the run crashed, or the file is older): afresh, None;
    * a file that cannot be read (truncated, corrupt, not a checkpoint): afresh, with a
      one-line warning naming the file; the run goes on, and the worker writes a good file
      when it stops.
    """
    if not os.path.exists(path):
        return None, None
    try:
        saved = load_checkpoint(path)
    except CheckpointError as err:
        return None, f"{err}; the worker starts afresh ({fresh})"
    return (saved if saved.get("iteration") == iteration else None), None


def game_name(env_name: str) -> str:
    """Short game name for file names: PongNoFrameskip-v4 -> Pong, ALE/Pong-v5 -> Pong,
    CartPole-v1 -> CartPole."""
    return env_name.split("/")[-1].split("NoFrameskip")[0].split("-v")[0]


def pretrained_path(root: str, env_name: str, algo: str) -> str:
    """Where the shipped weights for a game and algorithm live."""
    return os.path.join(root, PRETRAINED_DIR, f"{game_name(env_name)}_{algo}.pth")


def export_weights(state: dict, path: str) -> None:
    """Write the playable part of a checkpoint (model and metadata, no optimizer or
    average network) to ``path``; an existing file is never overwritten."""
    if os.path.exists(path):
        raise CheckpointError(f"{path} already exists; remove it first or choose another file")
    save_checkpoint({key: state[key] for key in WEIGHT_KEYS if key in state}, path)


def check_writable_dir(path: str, flag: str) -> None:
    """Raise :class:`OSError` with a one-line reason when ``path`` (a folder that may not exist
    yet) could not be created or written; create nothing."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise OSError(f"{flag} {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OSError(f"{flag} {path}: {probe} is not writable")


def latest_run(models_dir: str, env_name: str | None = None, algo: str | None = None) -> str | None:
    """The newest run folder in ``models_dir`` holding a checkpoint (for ``env_name`` and
    ``algo`` if given): the one whose checkpoint was written last, whatever the folders are
    called (``<env>_<algo>_<date-time>``, a ``--run_name``, or the older bare date-time)."""
    if not os.path.isdir(models_dir):
        return None
    def written(d: str) -> float:
        return os.path.getmtime(os.path.join(models_dir, d, CHECKPOINT_NAME))
    runs = sorted((d for d in os.listdir(models_dir)
                   if os.path.isfile(os.path.join(models_dir, d, CHECKPOINT_NAME))),
                  key=lambda d: (written(d), d), reverse=True)
    for run in runs:
        path = os.path.join(models_dir, run)
        if env_name is None and algo is None:
            return path
        run_env, run_algo = _run_identity(path)
        if env_name in (None, run_env) and algo in (None, run_algo):
            return path
    return None


def _run_identity(run_dir: str) -> tuple[str | None, str | None]:
    """The environment and algorithm of a run, read from its ``config.yml`` (cheap) or its
    checkpoint."""
    try:
        with open(os.path.join(run_dir, "config.yml")) as fh:
            saved = yaml.safe_load(fh)
        return saved.get("env_name"), saved.get("algo", "acer")
    except (OSError, yaml.YAMLError, AttributeError):
        try:
            state = load_checkpoint(os.path.join(run_dir, CHECKPOINT_NAME))
            return state.get("env_name"), state.get("algo")
        except CheckpointError:
            return None, None
