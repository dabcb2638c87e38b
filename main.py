"""Command line: train ACER or A3C on Gymnasium / Atari with parallel workers, or play trained weights.

    python main.py --do_train [--algo acer|a3c] [--env_name PongNoFrameskip-v4] [--n_workers 2]
    python main.py --do_train --algo a3c --no_recurrent  # the A3C paper's feed-forward agent
    python main.py --do_train --env_name Pendulum-v1    # Box actions: Gaussian ACER (SDN critic) or A3C
    python main.py --do_train --resume [RUN_DIR]       # continue a run
    python main.py [--env_name ...] [--weights FILE]   # play (no --do_train)

Every hyperparameter in training_configs.yml can be overridden as ``--key value``.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import NoReturn

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def build_parser() -> argparse.ArgumentParser:
    from Utils.config import HYPERPARAMETER_KEYS, Config
    defaults = Config()
    p = argparse.ArgumentParser(description="ACER (Wang et al. 2016) and A3C (Mnih et al. 2016) "
                                            "on Atari and Gymnasium.")
    p.add_argument("--env_name", default=None, help="Gymnasium id (default PongNoFrameskip-v4)")
    p.add_argument("--interval", type=int, default=None,
                   help=f"iterations between console lines and checkpoints (default {defaults.interval})")
    p.add_argument("--do_train", action="store_true", help="train; without it the program plays")
    p.add_argument("--train_from_scratch", action="store_true",
                   help="kept from the original, where passing it CONTINUES the last run; use --resume")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN_DIR",
                   help="continue the newest run in --models_dir, or RUN_DIR")
    p.add_argument("--seed", type=int, default=None, help=f"random seed (default {defaults.seed})")
    p.add_argument("--algo", default=None, help="acer (default) or a3c")
    p.add_argument("--no_recurrent", dest="recurrent", action="store_const", const=False, default=None,
                   help="a3c: the paper's feed-forward network instead of the LSTM (recurrent: false)")
    p.add_argument("--n_workers", type=int, default=None, help="worker processes (default: CPU count)")
    p.add_argument("--total_steps", type=int, default=None, help="stop after this many agent steps")
    p.add_argument("--max_episodes", type=int, default=None, help="stop after this many games")
    p.add_argument("--config", default=os.path.join(HERE, "training_configs.yml"),
                   help="hyperparameter YAML (default training_configs.yml)")
    p.add_argument("--save_replay", action="store_const", const=True, default=None,
                   help="also save the workers' replay memories when the run stops (exact resume)")
    p.add_argument("--max_bad_updates", type=int, default=None,
                   help="stop after this many non-finite updates in a row in one worker (default 100; 0: never)")
    p.add_argument("--stop_on_save_error", action="store_const", const=True, default=None,
                   help="stop the run when a checkpoint cannot be written (default: warn and go on)")
    p.add_argument("--backend", default=None,
                   help="local (default: shared-memory worker processes) or ray (actors and a "
                        "parameter server; pip install -r requirements-ray.txt)")
    p.add_argument("--ray_address", default=None,
                   help="ray: 'auto' or host:port joins a running cluster (default: start a local one)")
    p.add_argument("--precision", default=None, choices=["fp32", "bf16"],
                   help="acer training: bf16 runs the learner's image trunk in bfloat16 on CPUs "
                        "with native bf16, about 1.6x the steps/s (default fp32; a resumed run keeps its own)")
    p.add_argument("--models_dir", default=None, help="where runs are saved (default Models)")
    p.add_argument("--logs_dir", default=None, help="where TensorBoard logs go (default Logs)")
    p.add_argument("--weights", default=None, help="play: checkpoint or weights file to load")
    p.add_argument("--episodes", type=int, default=1, help="play: number of full games")
    p.add_argument("--noop_max", type=int, default=30, metavar="N",
                   help="play, Atari: start each game with 1 to N random no-op frames (0 to 30; "
                        "default 30, as in training and the papers' protocol; 0: none)")
    p.add_argument("--sticky", type=float, default=0.0, metavar="P",
                   help="play, Atari: repeat the previous frame's action with probability P "
                        "(Machado et al. 2018; ALE v5 uses 0.25; default 0: deterministic)")
    p.add_argument("--max_frames", type=int, default=108_000, metavar="N",
                   help="play, Atari: end a game as truncated after N emulator frames "
                        "(default 108000, 30 minutes; 0: no cap)")
    p.add_argument("--greedy", action="store_true",
                   help="play: take the most probable action (continuous: the Gaussian's mean)")
    p.add_argument("--no_video", action="store_true", help="play: do not record the first game to Vid/")
    p.add_argument("--render", action="store_true", help="play: show the games in a window (needs a display)")
    p.add_argument("--export", nargs="?", const="default", default=None, metavar="OUT_FILE",
                   help="write the weights of --weights, or of the newest run for --env_name, as a "
                        "playable file (default: 'Pre-Trained Weights/<Game>_<algo>.pth')")
    hp = p.add_argument_group("hyperparameters (override training_configs.yml)")
    for key in HYPERPARAMETER_KEYS:
        if key == "recurrent":
            continue  # --no_recurrent above
        hp.add_argument(f"--{key}", default=None, metavar=type(getattr(defaults, key)).__name__.upper())
    return p


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from Utils.atari_wrappers import check_env_id, has_box_actions, is_atari
    from Utils.checkpoint import (CHECKPOINT_NAME, CheckpointError, export_weights, latest_run,
                                  load_checkpoint, pretrained_path)
    from Utils.config import (RUN_KEYS, ConfigError, HYPERPARAMETER_KEYS, check_keys_for_algo,
                              load_config, save_config)

    overrides = {k: getattr(args, k) for k in RUN_KEYS + HYPERPARAMETER_KEYS}
    given = [k for k, v in overrides.items() if v is not None]
    if args.train_from_scratch and args.resume is None:
        print("warning: --train_from_scratch keeps the original project's meaning: it CONTINUES "
              "the last run. Use --resume to say so, or drop the flag to start a new run.",
              file=sys.stderr)
        args.resume = "latest"
    try:
        resume_state, run_dir = None, None
        models_dir = args.models_dir or "Models"
        if args.do_train and args.resume is not None:
            run_dir = (latest_run(models_dir, args.env_name, args.algo) if args.resume == "latest"
                       else args.resume)
            if run_dir is None:
                fail(f"--resume: no run with a checkpoint in {models_dir}/")
            resume_state = load_checkpoint(os.path.join(run_dir, CHECKPOINT_NAME))
            saved = resume_state["config"]
            if args.algo is not None and args.algo != resume_state.get("algo"):
                fail(f"--resume: {run_dir} is an {resume_state.get('algo')} run, not {args.algo}")
            for key, value in overrides.items():  # flags given now override the saved config
                if value is not None and key not in ("models_dir", "logs_dir") and str(saved.get(key)) != str(value):
                    print(f"resume: {key} {saved.get(key)} -> {value}")
            # the run's saved config (all of it) wins over the YAML; flags given now win over both
            base = {k: v for k, v in saved.items() if k in RUN_KEYS + HYPERPARAMETER_KEYS}
            overrides = {**base, **{k: v for k, v in overrides.items() if v is not None}}
            if overrides["env_name"] != resume_state["env_name"]:
                fail(f"--resume: {run_dir} is a {resume_state['env_name']} run, not {overrides['env_name']}")
        if args.episodes < 1:
            fail(f"--episodes must be at least 1, got {args.episodes}")
        if not 0 <= args.noop_max <= 30:
            fail(f"--noop_max must be in 0..30 (the papers' protocol uses 30), got {args.noop_max}")
        if not 0 <= args.sticky < 1:
            fail(f"--sticky must be a probability in [0, 1), got {args.sticky}")
        if args.max_frames < 0:
            fail(f"--max_frames must be >= 0 (0: no cap), got {args.max_frames}")
        algo = overrides.get("algo") or "acer"
        check_keys_for_algo(algo, given)
        env_name = overrides.get("env_name") or "PongNoFrameskip-v4"
        check_env_id(env_name)
        # Box action spaces take the <algo>_continuous section on top of the algorithm's
        continuous = ("action_low" in resume_state if resume_state is not None
                      else args.do_train and has_box_actions(env_name))
        cfg = load_config(args.config, algo, overrides, continuous)
    except (ConfigError, CheckpointError, ValueError) as err:
        fail(str(err))

    if args.export is not None:
        run = None if args.weights else latest_run(cfg.models_dir, cfg.env_name)
        if args.weights is None and run is None:
            fail(f"--export: no run for {cfg.env_name} in {cfg.models_dir}/; give --weights FILE")
        source = args.weights or os.path.join(run, CHECKPOINT_NAME)
        try:
            state = load_checkpoint(source)
            out = (pretrained_path(HERE, state["env_name"], state["algo"])
                   if args.export == "default" else args.export)
            export_weights(state, out)
        except CheckpointError as err:
            fail(str(err))
        print(f"Exported the weights of {source} to {out}")
        return 0

    if not args.do_train:
        from Utils.play import play
        path = args.weights
        if path is None:
            run = latest_run(cfg.models_dir, cfg.env_name, args.algo)
            path = (os.path.join(run, CHECKPOINT_NAME) if run
                    else pretrained_path(HERE, cfg.env_name, cfg.algo))
        try:
            scores = play(load_checkpoint(path), cfg.env_name, args.episodes, cfg.seed, args.greedy,
                          video_dir=None if args.no_video else "Vid", render=args.render,
                          noop_max=args.noop_max, sticky=args.sticky, max_frames=args.max_frames)
        except CheckpointError as err:
            fail(str(err))
        print(f"Mean score over {len(scores)} games: {np.mean(scores):.2f} +- {np.std(scores):.2f}")
        if is_atari(cfg.env_name):
            from Utils.evaluation import summary_line
            print(f"Protocol (no-op starts up to {args.noop_max}, sticky {args.sticky:g}, "
                  f"cap {args.max_frames:,} frames, {sum(scores.truncated)} truncated): "
                  f"{summary_line(cfg.env_name, scores)}")
        return 0

    from Agent.trainer import Terminated, Trainer, WorkerFailed, env_spec
    from Utils.checkpoint import check_writable_dir
    from Utils.config import check_memory
    from Utils.precision import check_precision
    if run_dir is None:
        stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
        run_dir = os.path.join(cfg.models_dir, stamp)
    log_dir = os.path.join(cfg.logs_dir, os.path.basename(os.path.normpath(run_dir)))
    try:  # everything is checked before anything is written
        check_writable_dir(run_dir, "--models_dir")
        check_writable_dir(log_dir, "--logs_dir")
        spec = env_spec(cfg)
        problem = check_precision(cfg.precision, spec[0])
        if problem:
            fail(problem)
        check_memory(cfg, *spec)
        trainer_class = Trainer
        if cfg.backend == "ray":
            try:
                from Agent.ray_backend import RayTrainer as trainer_class
            except ImportError:
                fail("--backend ray needs Ray: pip install -r requirements-ray.txt")
        trainer = trainer_class(cfg, run_dir, log_dir, resume_state, spec=spec)
        save_config(cfg, os.path.join(run_dir, "config.yml"))
    except (ConfigError, ValueError) as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot write the run's files: {err}")

    def terminate(signum, frame):
        raise Terminated()
    # A process started in the background by a non-interactive shell inherits SIGINT ignored;
    # a training run stops cleanly on SIGINT (exit 130) or SIGTERM (143) however it was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)
    print(f"Training {cfg.algo} on {cfg.env_name} with {cfg.n_workers} workers"
          f"{' (bf16 learner)' if cfg.precision == 'bf16' else ''}; "
          f"run {run_dir}, logs {log_dir}", flush=True)
    try:
        counters = trainer.train()
    except WorkerFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        print(f"{'Terminated' if isinstance(stop, Terminated) else 'Interrupted'}: workers stopped, "
              f"checkpoint saved in {run_dir}", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    print(f"Done: {counters['global_steps']} steps, {sum(counters['worker_episodes'])} episodes, "
          f"{counters['optimizer_steps']} updates. Checkpoint: {os.path.join(run_dir, CHECKPOINT_NAME)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
