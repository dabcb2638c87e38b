"""Command line: train ACER or A3C on Gymnasium / Atari with parallel workers, or play trained weights.

    python main.py --do_train [--algo acer|a3c] [--env_name PongNoFrameskip-v4] [--n_workers 2]
    python main.py --do_train --algo a3c --no_recurrent  # the A3C paper's feed-forward agent
    python main.py --do_train --env_name Pendulum-v1    # Box actions: Gaussian ACER (SDN critic) or A3C
    python main.py --do_train --resume [RUN_DIR]       # continue a run
    python main.py [--env_name ...] [--weights FILE]   # play (no --do_train)
    python main.py --list_runs [--env_name ...]        # the runs in --models_dir, newest last

Every hyperparameter in training_configs.yml can be overridden as ``--key value``.
"""
from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from typing import NoReturn

from Utils.config import default

HERE = os.path.dirname(os.path.abspath(__file__))


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> int:
    """Parse the command line and run the export, play or training it asks for."""
    from Utils.cli import build_parser, given_flags, ignored_warning
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_runs and (args.do_train or args.export is not None):
        other, what = ("--do_train", "train") if args.do_train else ("--export", "export")
        fail(f"--list_runs lists the runs and exits; drop {other} to list them, or --list_runs "
             f"to {what}")
    warning = ignored_warning(given_flags(parser, argv), args)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    try:
        if args.list_runs:
            return list_command(args)
        if args.export is not None:
            return export_command(args)
        if not args.do_train:
            return play_command(args)
        return train_command(args)
    except KeyboardInterrupt:  # before a training run started (its own stop is handled inside)
        print("Interrupted before the first checkpoint; nothing saved", file=sys.stderr)
        return 130


def command_overrides(args) -> dict:
    """The run and hyperparameter settings given as flags (None: not given)."""
    from Utils.config import HYPERPARAMETER_KEYS, RUN_KEYS
    return {k: getattr(args, k) for k in RUN_KEYS + HYPERPARAMETER_KEYS}


def build_config(args, overrides: dict, resume_state: dict | None = None):
    """The run's :class:`Utils.config.Config`: defaults <- YAML <- ``overrides``, checked."""
    from Utils.atari_wrappers import check_env_id, has_box_actions
    from Agent.algorithms import load_run_config
    from Utils.config import ConfigError, check_keys_for_algo
    algo = overrides.get("algo") or default("algo")
    check_keys_for_algo(algo, [k for k, v in command_overrides(args).items() if v is not None])
    backend = overrides.get("backend") or default("backend")
    if args.ray_mode is not None and backend != "ray":
        raise ConfigError(f"--ray_mode is a setting of --backend ray; this run uses --backend {backend}")
    env_name = overrides.get("env_name") or default("env_name")
    check_env_id(env_name)   # before the YAML: an unknown id cannot say its action space
    # Box action spaces take the <algo>_continuous section on top of the algorithm's
    continuous = ("action_low" in resume_state if resume_state is not None
                  else args.do_train and has_box_actions(env_name))
    return load_run_config(args.config, algo, overrides, continuous)


def check_play_flags(args) -> None:
    """Refuse play settings out of range (one line, exit 2): :class:`Utils.cli.PlaySettings`'."""
    from Utils.cli import play_settings
    from Utils.config import ConfigError
    try:
        play_settings(args)
    except ConfigError as err:
        fail(str(err))


def train_hint(env_name: str, algo: str | None) -> str:
    """The command that creates a run for ``env_name``."""
    return (f"python main.py --do_train --env_name {env_name}"
            + (f" --algo {algo}" if algo and algo != "acer" else ""))


def choose_weights(args, env_name: str, algo: str | None, shipped_fallback: bool = True) -> tuple[str, str]:
    """The file to play or export and why it was chosen: given, newest run, or shipped."""
    from Utils.checkpoint import CHECKPOINT_NAME, latest_run, pretrained_path
    if args.weights and os.path.isdir(args.weights):
        return folder_checkpoint(args.weights), "the last checkpoint of the run folder given with --weights"
    if args.weights:
        return args.weights, "given with --weights"
    models_dir = args.models_dir or default("models_dir")
    run = latest_run(models_dir, env_name, algo)
    if run is not None:
        return os.path.join(run, CHECKPOINT_NAME), f"the newest {env_name} run in {models_dir}/"
    if not shipped_fallback:
        fail(f"--export: no {env_name} run in {models_dir}/ to export; give --weights FILE, or "
             f"train one with: {train_hint(env_name, algo)}")
    shipped = pretrained_path(HERE, env_name, algo or "acer")
    if os.path.isfile(shipped):
        return shipped, f"shipped weights; no {env_name} run in {models_dir}/"
    fail(f"nothing to play for {env_name}: no run in {models_dir}/ and no shipped file "
         f"{os.path.relpath(shipped, HERE)}; train one with: {train_hint(env_name, algo)}")


def folder_checkpoint(folder: str) -> str:
    """The file ``--weights`` reads from a run folder, as ``--resume`` does: its checkpoint.pth,
    the run's last weights (best.pth, where there is one, is named in a note)."""
    from Utils.checkpoint import BEST_NAME, CHECKPOINT_NAME
    path = os.path.join(folder, CHECKPOINT_NAME)
    if os.path.isfile(path):
        return path
    best = os.path.join(folder, BEST_NAME)
    if os.path.isfile(best):
        fail(f'--weights {folder}: a folder without {CHECKPOINT_NAME}; it holds {BEST_NAME}: '
             f'--weights "{best}"')
    fail(f"--weights {folder}: a folder without {CHECKPOINT_NAME}; give a checkpoint or weights "
         "file, or a run folder of --models_dir")


def shown_path(path: str) -> str:
    """``path`` as typed from the current folder: relative below it, else absolute."""
    rel = os.path.relpath(path)
    return os.path.abspath(path) if rel.startswith("..") else rel


def weights_note(args, path: str, state: dict, shipped_hint: bool = True) -> str | None:
    """A ``note:`` line for the weights chosen: a run folder's best.pth, or (``shipped_hint``)
    the shipped agent's ``--weights`` when the newest run was played instead of it."""
    from Utils.checkpoint import BEST_NAME, CheckpointError, load_checkpoint, pretrained_path
    if args.weights:
        best = os.path.join(args.weights, BEST_NAME)
        if not (os.path.isdir(args.weights) and os.path.isfile(best)):
            return None
        what = "the weights at the best running reward"
        try:
            saved = load_checkpoint(best)
            what += (f", {float(saved['best_running_reward']):.2f} at "
                     f"{int(saved['counters']['global_steps']):,} steps")
        except (CheckpointError, KeyError, TypeError, ValueError):
            pass
        return f'note: {args.weights} also holds {BEST_NAME} ({what}): --weights "{best}"'
    env_name, models_dir = state["env_name"], args.models_dir or default("models_dir")
    for algo in (state.get("algo", "acer"), args.algo or "acer"):
        shipped = pretrained_path(HERE, env_name, algo)
        if not shipped_hint or not os.path.isfile(shipped) or os.path.samefile(shipped, path):
            continue
        try:  # the file named must play here: trained on this environment
            if load_checkpoint(shipped).get("env_name") != env_name:
                continue
        except CheckpointError:
            continue
        return (f"note: playing the newest {env_name} run in {models_dir}/, not the shipped agent; "
                f'the shipped agent: --weights "{shown_path(shipped)}"')
    return None


def load_weights(args, path: str) -> dict:
    """Load ``path`` and check it against ``--algo`` and ``--env_name`` when they were given."""
    from Utils.checkpoint import CheckpointError, load_checkpoint
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:
        fail(str(err))
    algo = state.get("algo", "acer")
    if args.algo is not None and args.algo != algo:
        fail(f"{path} holds {algo} weights, not {args.algo}: drop --algo or use --algo {algo}")
    if args.env_name is not None and state.get("env_name") != args.env_name:
        fail(f"these weights were trained on {state.get('env_name')}, not {args.env_name}")
    return state


def algorithm_of(state: dict, path: str):
    """The registry record of the algorithm that trained ``state``; a one-line error when it is
    not known here."""
    from Agent.algorithms import get
    from Utils.config import ConfigError
    try:
        return get(state.get("algo", "acer"))
    except ConfigError:
        fail(f"{path} holds weights of the algorithm '{state.get('algo')}', which this "
             f"installation does not know")


def describe_weights(path: str, reason: str, state: dict) -> str:
    """``Playing FILE (why): acer on Pong..., 2,950,000 steps trained, precision fp32``."""
    steps = state.get("counters", {}).get("global_steps")
    trained = f"{steps:,} steps trained" if isinstance(steps, int) else "steps trained unknown"
    precision = state.get("config", {}).get("precision", "fp32")
    return (f"{path} ({reason}): {state.get('algo', 'acer')} on {state.get('env_name')}, "
            f"{trained}, precision {precision}")


def weights_for(args, shipped_fallback: bool = True) -> tuple[str, str, dict]:
    """Path, reason and loaded state of the weights that play or export use."""
    from Utils.atari_wrappers import check_env_id
    env_name = args.env_name
    if env_name is None and args.weights is None:
        env_name = default("env_name")
    if env_name is not None:
        try:
            check_env_id(env_name)
        except ValueError as err:
            fail(str(err))
    path, reason = choose_weights(args, env_name, args.algo, shipped_fallback)
    return path, reason, load_weights(args, path)


def list_command(args) -> int:
    """``--list_runs``: a table of the run folders in --models_dir (those of --env_name and
    --algo if given), newest last; one line when there are none. Nothing is trained or played."""
    from Utils.runs import format_table, list_runs
    models_dir = args.models_dir or default("models_dir")
    shown_dir = os.path.join(models_dir, "")
    hint = ("python main.py --do_train" + (f" --env_name {args.env_name}" if args.env_name else "")
            + (f" --algo {args.algo}" if args.algo and args.algo != "acer" else "")
            + (f" --models_dir {shlex.quote(models_dir)}" if args.models_dir else ""))
    rows = list_runs(models_dir, args.logs_dir)
    if rows is None:
        print(f"no runs: {shown_dir} does not exist (train one with: {hint})")
        return 0
    which = " ".join(w for w in (args.env_name, args.algo) if w)
    shown = [r for r in rows if args.env_name in (None, r.env_name) and args.algo in (None, r.algo)]
    if not shown:
        among = f" among the {len(rows)} folders" if rows else ""
        print(f"no {which + ' ' if which else ''}runs{among} in {shown_dir} (train one with: {hint})")
        return 0
    print("\n".join(format_table(shown)))
    plural = "s" if len(shown) != 1 else ""
    if which:
        print(f"{len(shown)} {which} run{plural} of {len(rows)} folders in {shown_dir}, newest last")
    else:
        print(f"{len(shown)} run folder{plural} in {shown_dir}, newest last")
    return 0


def export_command(args) -> int:
    """``--export``: write the playable part of a checkpoint."""
    from Utils.checkpoint import CheckpointError, export_weights, pretrained_path
    path, reason, state = weights_for(args, shipped_fallback=False)
    out = (pretrained_path(HERE, state["env_name"], state["algo"]) if args.export == "default"
           else args.export)
    try:
        export_weights(state, out)
    except CheckpointError as err:
        fail(str(err))
    print(f"Exported the weights of {describe_weights(path, reason, state)} to {out}")
    note = weights_note(args, path, state, shipped_hint=False)
    if note:
        print(note)
    return 0


def play_command(args) -> int:
    """Play full games with the chosen weights; print the scores and the protocol summary."""
    from Utils.atari_wrappers import game_starts_with_fire, is_atari, pipeline_note, sticky_probability
    from Utils.checkpoint import CheckpointError
    from Utils.evaluation import cut_off_note, summarize, summary_line
    from Utils.play import play
    check_play_flags(args)
    path, reason, state = weights_for(args)
    algorithm = algorithm_of(state, path)
    env_name = state["env_name"]
    seed = args.seed if args.seed is not None else default("seed")
    if args.sticky and sticky_probability(env_name):
        fail(f"--sticky: {env_name} already repeats actions with probability "
             f"{sticky_probability(env_name):g} in the emulator; use a NoFrameskip-v4 id with --sticky")
    if args.fire_on_new_life and not game_starts_with_fire(env_name):
        fail(f"--fire_on_new_life is for Atari games that start with FIRE; {env_name} is not one")
    note = pipeline_note(env_name)
    if note:
        print(note)
    print(f"Playing {describe_weights(path, reason, state)}", flush=True)
    note = weights_note(args, path, state)
    if note:
        print(note, flush=True)
    try:
        scores = play(state, env_name, args.episodes, seed, args.greedy,
                      video_dir=None if args.no_video else "Vid", render=args.render,
                      noop_max=args.noop_max, sticky=args.sticky, max_frames=args.max_frames,
                      fire_on_new_life=args.fire_on_new_life,
                      build_network=algorithm.build_network)
    except CheckpointError as err:
        fail(str(err))
    summary = summarize(scores)
    cut = cut_off_note(scores.truncated, is_atari(env_name))
    print(f"Mean score over {len(scores)} games: {summary['mean']:.2f} +- {summary['std']:.2f}"
          + (f" ({cut})" if cut else ""))
    if is_atari(env_name):
        sticky = args.sticky or sticky_probability(env_name)
        fire = ", FIRE pressed for the agent at each new life" if args.fire_on_new_life else ""
        print(f"Protocol (no-op starts up to {args.noop_max}, sticky {sticky:g}, "
              f"cap {args.max_frames:,} frames{fire}, {sum(scores.truncated)} truncated): "
              f"{summary_line(env_name, scores)}")
    return 0


def resume_settings(args, overrides: dict) -> tuple[dict, str, dict, list[str]]:
    """For ``--resume``: the settings to continue with (the run's saved config, then the flags
    given now), the run folder, its checkpoint and one line per setting the flags change
    (printed once every check has passed)."""
    from Utils.checkpoint import CHECKPOINT_NAME, latest_run, load_checkpoint
    from Utils.config import HYPERPARAMETER_KEYS, RUN_KEYS, article
    models_dir = args.models_dir or default("models_dir")
    run_dir = (latest_run(models_dir, args.env_name, args.algo) if args.resume == "latest"
               else args.resume)
    if run_dir is None:
        which = f" for {args.env_name}" if args.env_name else ""
        fail(f"--resume: no run with a checkpoint in {models_dir}/{which}; start one with: "
             f"{train_hint(args.env_name or default('env_name'), args.algo)}")
    resume_state = load_checkpoint(os.path.join(run_dir, CHECKPOINT_NAME))
    saved = resume_state["config"]
    if args.algo is not None and args.algo != resume_state.get("algo"):
        algo = resume_state.get("algo")
        fail(f"--resume: {run_dir} is {article(algo)} {algo} run, not {args.algo}")
    # the run's saved config (all of it) wins over the YAML; flags given now win over both
    base = {k: v for k, v in saved.items() if k in RUN_KEYS + HYPERPARAMETER_KEYS}
    merged = {**base, **{k: v for k, v in overrides.items() if v is not None}}
    if merged["env_name"] != resume_state["env_name"]:
        env = resume_state["env_name"]
        fail(f"--resume: {run_dir} is {article(env)} {env} run, not {merged['env_name']}")
    no_budget = ("total_steps", "max_episodes")
    changes = [f"resume: {key} {saved.get(key, saved_default(key))} -> {value}"
               + (" (no budget)" if key in no_budget and not value else "")
               for key, value in overrides.items()  # flags given now override the saved config
               if value is not None and key not in ("models_dir", "logs_dir")
               and str(saved.get(key)) != str(value)]
    return merged, run_dir, resume_state, changes


def saved_default(key: str):
    """The default a run saved before ``key`` existed ran with."""
    from Utils.config import Config
    return getattr(Config(), key, None)


def new_run_dir(args, cfg) -> str:
    """``<models_dir>/<run_name>``, by default ``<env>_<algo>_<date-time>``; never an existing run."""
    name = args.run_name or (f"{cfg.env_name.replace('/', '-').replace(':', '-')}_{cfg.algo}_"
                             f"{time.strftime('%Y-%m-%d-%H-%M-%S')}")
    if os.sep in name or name in (".", ".."):
        fail(f"--run_name must be a folder name, not a path: {name}")
    run_dir = os.path.join(cfg.models_dir, name)
    if os.path.exists(run_dir) and os.listdir(run_dir):
        fail(f"--run_name {name}: {run_dir} already exists; continue it with --resume {run_dir} "
             "or choose another name")
    return run_dir


def prepare_training(args):
    """Settings, run folder and trainer of the run to start or resume; checks everything
    before anything is written."""
    from Agent.runtime.state import env_spec
    from Agent.algorithms import check_fits
    from Agent.training import backend_class, build_trainer
    from Utils.checkpoint import CheckpointError, check_writable_dir
    from Utils.config import ConfigError, save_config
    from Utils.atari_wrappers import pipeline_note
    overrides, run_dir, resume_state, changes = command_overrides(args), None, None, []
    if args.train_from_scratch and args.resume is None:
        print("warning: --train_from_scratch keeps the original project's meaning: it CONTINUES "
              "the last run. Use --resume to say so, or drop the flag to start a new run.",
              file=sys.stderr)
        args.resume = "latest"
    try:
        if args.resume is not None:
            overrides, run_dir, resume_state, changes = resume_settings(args, overrides)
        cfg = build_config(args, overrides, resume_state)
        note = pipeline_note(cfg.env_name)
        run_dir = run_dir or new_run_dir(args, cfg)
        log_dir = os.path.join(cfg.logs_dir, os.path.basename(os.path.normpath(run_dir)))
        check_writable_dir(run_dir, "--models_dir")
        check_writable_dir(log_dir, "--logs_dir")
        spec = env_spec(cfg)
        check_fits(cfg, spec)
        try:
            backend = backend_class(cfg)
        except ImportError:
            fail("--backend ray needs Ray: pip install -r requirements-ray.txt")
        trainer = build_trainer(cfg, run_dir, log_dir, resume_state, spec=spec, backend=backend)
        save_config(cfg, os.path.join(run_dir, "config.yml"))
        for change in changes:  # printed once nothing can refuse the run any more
            print(change)
        if note:
            print(note)
    except (ConfigError, CheckpointError, ValueError) as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot write the run's files: {err}")
    return cfg, run_dir, log_dir, trainer


def train_command(args) -> int:
    """Train until a budget is spent or the run is stopped; exit 0, 1 (a failure), 130 or 143."""
    from Agent.runtime.trainer import Terminated, WorkerFailed
    from Utils import interrupts
    from Utils.config import plural
    cfg, run_dir, log_dir, trainer = prepare_training(args)
    # SIGINT has Python's handler since startup (see the end of this file); from here on SIGINT
    # and SIGTERM (exit 143) have Utils/interrupts.py's, which nothing swaps out during the run,
    # so that one arriving while a checkpoint is written or the run stops is never lost
    interrupts.install()
    print(f"Training {algo_variant(cfg)} on {cfg.env_name} with {plural(cfg.n_workers, 'worker')}"
          f"{' (bf16 learner)' if cfg.precision == 'bf16' else ''}; "
          f"run {run_dir}, logs {log_dir}", flush=True)
    if trainer.resumed:
        print(f"resuming {run_dir} from step {trainer.last_saved_step:,}; {budget_text(cfg)}",
              flush=True)
    try:
        counters = trainer.train()
        # inside the try: a signal now, after the run, still gets the message below
        print(done_summary(cfg, run_dir, counters, trainer))
    except WorkerFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        what = "Terminated" if isinstance(stop, Terminated) else "Interrupted"
        resume = f"; resume with: python main.py --do_train --resume {shlex.quote(run_dir)}"
        if trainer.saved:
            print(f"{what}; checkpoint written at step {trainer.last_saved_step:,} in {run_dir}"
                  f"{resume}", file=sys.stderr)
        elif trainer.resumed:
            print(f"{what}; no new checkpoint written, the run's last one (step "
                  f"{trainer.last_saved_step:,}) is kept in {run_dir}{resume}", file=sys.stderr)
        else:
            print(f"{what} before the first checkpoint; nothing saved", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    return 0


def algo_variant(cfg) -> str:
    """The algorithm as the banner names it: 'ACER', 'recurrent A3C' or 'feed-forward A3C'
    (its registry record's ``title``)."""
    from Agent.algorithms import get
    return get(cfg.algo).banner(cfg)


def budget_text(cfg) -> str:
    """The run's stop condition in words: ``--total_steps`` and ``--max_episodes`` count from
    the run's start (a resumed run's steps included); 0 is no budget."""
    limits = []
    if cfg.total_steps:
        limits.append(f"until step {cfg.total_steps:,}")
    if cfg.max_episodes:
        limits.append(f"until game {cfg.max_episodes:,}")
    return " or ".join(limits) if limits else "no budget (until Ctrl-C)"


def done_summary(cfg, run_dir: str, counters: dict, trainer) -> str:
    """What a user wants once a run is done: how far it got, its rewards, where it was saved
    and the commands to play and to continue it."""
    from Utils.checkpoint import BEST_NAME, CHECKPOINT_NAME
    logger = trainer.logger
    games = sum(counters["worker_episodes"])
    rewards = "no game finished"
    if logger.running_reward is not None:
        rewards = f"running reward {logger.running_reward:.2f}"
        if trainer.best_reward is not None:
            rewards += f" (best {trainer.best_reward:.2f}, its weights in {BEST_NAME})"
    folder = shlex.quote(run_dir)
    more = (f"--max_episodes {2 * max(games, 1)}" if cfg.max_episodes and not cfg.total_steps
            else f"--total_steps {2 * max(counters['global_steps'], 1)}")
    return (f"Done: {counters['global_steps']:,} steps, {games:,} games, "
            f"{counters['optimizer_steps']:,} updates; {rewards}.\n"
            f"  saved in {run_dir} ({CHECKPOINT_NAME}); logs in {trainer.log_dir}\n"
            f"  play it:     python main.py --env_name {cfg.env_name} --weights {folder}\n"
            f"  continue it: python main.py --do_train --resume {folder} {more}"
            f"   (a new total; 0: no budget)")


if __name__ == "__main__":
    # A process started in the background by a non-interactive shell (nohup ... &, CI) inherits
    # SIGINT ignored; Ctrl-C's signal stops a run cleanly however it was started, from here on.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # while Python was still importing what main() needs
        print("Interrupted before the first checkpoint; nothing saved", file=sys.stderr)
        sys.exit(130)
