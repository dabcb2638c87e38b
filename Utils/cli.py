"""The command line, generated from the typed settings.

Three records declare every flag with :func:`Utils.config.setting`: :class:`CommandFlags`
(what to do: train, resume, export, list), the run's :class:`Utils.config.Config` (its
:class:`Utils.config.RunSettings` and :class:`Utils.config.Hyperparameters`) and
:class:`PlaySettings` (play and export). :func:`build_parser` turns them into argparse flags,
with their help, ranges and defaults; :func:`ignored_warning` names the flags a mode does not
read, from the same declarations. Run settings and hyperparameters parse to None when not
given, so that a resumed run's saved config and the YAML fill them; the rest parse to their
defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from dataclasses import MISSING, dataclass, fields
from typing import NoReturn

from Utils.config import (EVERY_MODE, EXPORT, FIELDS, HYPERPARAMETER_KEYS, LIST, PLAY, RUN_KEYS, TRAIN,
                          ConfigError, hyperparameter_help, in_range, range_error, range_rule,
                          setting)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_YAML = os.path.join(ROOT, "training_configs.yml")


@dataclass
class CommandFlags:
    """What the command line asks for; none of it is stored in a run."""
    do_train: bool = setting(False, switch=True, const=True, modes=EVERY_MODE,
                             help="train; without it the program plays")
    train_from_scratch: bool = setting(False, switch=True, const=True,
                                       help="kept from the original, where passing it CONTINUES "
                                            "the last run; use --resume")
    resume: str | None = setting(None, nargs="?", const="latest", metavar="RUN_DIR",
                                 help="continue the newest run in --models_dir, or RUN_DIR")
    run_name: str | None = setting(None, metavar="NAME", default_text="<env>_<algo>_<date-time>",
                                   help="name of a new run's folder")
    config: str = setting(DEFAULT_YAML, default_text="training_configs.yml",
                          help="hyperparameter YAML")
    export: str | None = setting(None, nargs="?", const="default", metavar="OUT_FILE",
                                 modes=(EXPORT,), default_text="'Pre-Trained Weights/<Game>_<algo>.pth'",
                                 help="write the weights of --weights, or of the newest run for "
                                      "--env_name, as a playable file")
    list_runs: bool = setting(False, switch=True, const=True, modes=(LIST,),
                              help="list the runs in --models_dir, newest last (folder, game, "
                                   "algorithm, steps, best running reward, when last written), "
                                   "only those of --env_name and --algo if given, and exit")


@dataclass
class PlaySettings:
    """How play (and export) runs: which weights, how many games, the evaluation protocol."""
    weights: str | None = setting(None, modes=(PLAY, EXPORT),
                                  default_text="the newest run for --env_name in --models_dir, "
                                               "else the shipped file",
                                  help="play or export: checkpoint or weights file, or a run "
                                       "folder (its checkpoint.pth)")
    episodes: int = setting(1, low=1, modes=(PLAY,), help="play: number of full games")
    noop_max: int = setting(30, low=0, high=30, rule="in 0..30",
                            hint="the papers' protocol uses 30", metavar="N", modes=(PLAY,),
                            help="play, Atari: start each game with 1 to N random no-op frames "
                                 "(as in training and the papers' protocol; 0: none)")
    sticky: float = setting(0.0, low=0, high=1, high_open=True, rule="a probability in [0, 1)",
                            metavar="P", modes=(PLAY,),
                            help="play, Atari: repeat the previous frame's action with probability "
                                 "P (Machado et al. 2018; ALE v5 uses 0.25; 0: deterministic)")
    max_frames: int = setting(108_000, low=0, hint="0: no cap", metavar="N", modes=(PLAY,),
                              help="play, Atari: end a game as truncated after N emulator frames "
                                   "(108000: 30 minutes; 0: no cap)")
    fire_on_new_life: bool = setting(False, switch=True, const=True, modes=(PLAY,),
                                     help="play, Atari games that start with FIRE: press it for "
                                          "the agent after each lost life, as training does (not "
                                          "the papers' protocol, where the agent must)")
    greedy: bool = setting(False, switch=True, const=True, modes=(PLAY,),
                           help="play: take the most probable action (continuous: the Gaussian's mean)")
    no_video: bool = setting(False, switch=True, const=True, modes=(PLAY,),
                             help="play: do not record the first game to Vid/")
    render: bool = setting(False, switch=True, const=True, modes=(PLAY,),
                           help="play: show the games in a window (needs a display)")

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first play setting out of its range."""
        for f in fields(self):
            if not in_range(f.metadata, getattr(self, f.name)):
                raise ConfigError(range_error(f.name, getattr(self, f.name), f.metadata))


COMMAND_FIELDS = {f.name: f for f in fields(CommandFlags)}
PLAY_FIELDS = {f.name: f for f in fields(PlaySettings)}


def all_fields() -> dict:
    """Every flag's field by name (a function: a registered algorithm's own settings join
    :data:`Utils.config.FIELDS` after this module is imported)."""
    return {**COMMAND_FIELDS, **FIELDS, **PLAY_FIELDS}


def play_settings(args) -> PlaySettings:
    """The :class:`PlaySettings` of parsed ``args``, checked."""
    settings = PlaySettings(**{name: getattr(args, name) for name in PLAY_FIELDS})
    settings.validate()
    return settings


def flag_name(name: str) -> str:
    return all_fields()[name].metadata["flag"] or f"--{name}"


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default is MISSING else f.default


def _help(f: dataclasses.Field, hyperparameter: bool) -> str:
    """A flag's help: its description, range and default (a run's setting: per algorithm)."""
    meta = f.metadata
    if f.name in FIELDS:
        return hyperparameter_help(f.name)
    rule = "" if meta["switch"] or meta["rule"] else range_rule(meta)
    text = meta["help"] + (f"; {rule}" if rule else "")
    shown = meta["default_text"] or (None if meta["switch"] else _default(f))
    if shown is not None and shown != "":
        text += f" (default {shown:g})" if isinstance(shown, float) else f" (default {shown})"
    return text.replace("%", "%%")


def _add(group, f: dataclasses.Field, keep_default: bool, hyperparameter: bool = False) -> None:
    """One flag from a field's declaration. ``keep_default``: the parsed value is the default
    when not given; else None (a run setting or hyperparameter that the YAML or a resumed run's
    saved config fills)."""
    meta = f.metadata
    kwargs = {"dest": f.name, "help": _help(f, hyperparameter)}
    default = _default(f) if keep_default else None
    if meta["switch"]:
        kwargs.update(action="store_const", const=meta["const"], default=default)
    else:
        kwargs.update(default=default, metavar=meta["metavar"])
        if meta["nargs"]:
            kwargs.update(nargs=meta["nargs"], const=meta["const"])
        if hyperparameter:
            kwargs["metavar"] = meta["metavar"] or f.type.upper()
        elif f.type in ("int", "float"):
            kwargs["type"] = int if f.type == "int" else float
    group.add_argument(meta["flag"] or f"--{f.name}", **kwargs)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: a mistyped flag gets a did-you-mean, not the usage dump."""

    def error(self, message: str) -> NoReturn:
        unknown = [w for w in message.split(": ", 1)[-1].split() if w.startswith("-")]
        if message.startswith("unrecognized arguments") and unknown:
            flag = unknown[0].split("=")[0]
            close = difflib.get_close_matches(flag, list(self._option_string_actions), n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]}?)" if close else " (python main.py --help lists them)"
            message = f"unknown flag {flag}{hint}"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, from :class:`CommandFlags`, :class:`Utils.config.Config` and
    :class:`PlaySettings`."""
    p = Parser(description="ACER (Wang et al. 2016) and A3C (Mnih et al. 2016) on Atari and "
                           "Gymnasium.", allow_abbrev=False)
    for f in fields(CommandFlags):
        _add(p, f, keep_default=True)
    run = p.add_argument_group("run settings (saved with the run; a resumed run keeps its own)")
    for name in RUN_KEYS:
        _add(run, FIELDS[name], keep_default=False)
    play = p.add_argument_group("play and export")
    for f in fields(PlaySettings):
        _add(play, f, keep_default=True)
    hp = p.add_argument_group("hyperparameters (override training_configs.yml)")
    for name in HYPERPARAMETER_KEYS:
        _add(hp, FIELDS[name], keep_default=False, hyperparameter=not FIELDS[name].metadata["switch"])
    return p


def given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the flags typed on the command line."""
    given = set()
    for word in argv:
        if word.startswith("--"):
            action = parser._option_string_actions.get(word.split("=", 1)[0])
            if action is not None:
                given.add(action.dest)
    return given


def mode_of(args) -> str:
    """What ``main.py`` does with ``args``, in the order it decides it."""
    if args.list_runs:
        return LIST
    if args.export is not None:
        return EXPORT
    return TRAIN if args.do_train else PLAY


HINTS = {LIST: "it reads --models_dir, --logs_dir, --env_name and --algo",
         TRAIN: "play only", PLAY: "training only; add --do_train to train",
         EXPORT: "not read by --export"}
MODE_WORDS = {LIST: "--list_runs", TRAIN: "training", PLAY: "play", EXPORT: "export"}


def ignored_warning(given: set[str], args) -> str | None:
    """One warning line naming the flags given that the chosen mode does not read."""
    mode = mode_of(args)
    known = all_fields()
    ignored = [name for name in known if name in given and mode not in known[name].metadata["modes"]]
    if not ignored:
        return None
    names = ", ".join(flag_name(name) for name in ignored)
    return f"warning: {MODE_WORDS[mode]} ignores {names} ({HINTS[mode]})"
