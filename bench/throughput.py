"""Training throughput: agent steps per second of the real training command.

Runs ``main.py --do_train`` for each algorithm and worker count, reads the
global step count from its console lines as they appear (``--interval`` is set
so that a line comes about every ``--report_steps`` agent steps), discards a
warm-up, and reports steps/s over fixed windows (median, min, max).

Beside it, a **compute floor**: the same per-step work measured piece by piece in
this process on one core, by running the real worker on the real environment (built as a run
builds it, ``bench/harness.py``: the worker's own ``rollout`` and the agent's own ``learn``)
with timing wrappers on the real methods and nothing else: an environment step (with
preprocessing), an acting forward, and the update's compute (forward, loss, backward, clip,
Adam, Polyak; the weight copy an ACER off-policy update starts with is timed inside it and
taken out) times the expected updates per step: (1 + replay_ratio) / k for ACER (its
average-network and bootstrap forwards are part of the update), 1 / rollout length for A3C.
Not counted: the weight copy at a rollout's start, replay writes and sampling, the reporter,
and everything of the training command (other workers, queues, logging, checkpoints). For n workers the floor is the sum of n such measurements run at the
same time, one per core (independent processes with nothing shared), so that it
includes what the cores cost each other through the shared cache and memory but
nothing of the training command; the isolated one-core rate times n is printed
beside it. ``measured / floor`` says how much of the machine the command uses.

    python bench/throughput.py [--algo acer a3c] [--env_name PongNoFrameskip-v4]
                               [--n_workers 1 2] [--backend local ray] [--seconds 60] [--warmup 20]
                               [--precision fp32 bf16] [--rounds 2] [-- main.py flags]

With several ``--precision`` values (ACER), each precision gets its own floor and the runs
are interleaved: ``--rounds`` rounds, each running every precision for ``seconds / rounds``
(after its warm-up), so that the machine's drift falls on both alike; the windows of a
precision's rounds are pooled. It prints each figure, their ratio to the first precision, and
the one-core microbenchmark of a single ACER update (ms, isolated) per precision.

With ``--backend ray`` (a local Ray instance) each run is also measured on the Ray backend,
and the cost of one update through the parameter server is measured on its own: bytes
moved (weights pulled, average weights pulled for ACER, gradient pushed) and the round-trip
time of a pull and of a push with the real network.

With ``--backend actor_learner`` (``main.py --backend ray --ray_mode actor_learner``, a local
Ray instance) the run's closing summary gives what moved: the serialized bytes of the
rollouts the actors sent and of the weights they pulled, per agent step; the learner's
updates per second and its busy time per update; the actors' time per step; the policy lag.
Beside it, the bytes per agent step of today's Ray mode (``hogwild``) follow from one update's
pull and push (measured as above) times ACER's expected (1 + replay_ratio) / k updates per
step, and the ratio of the two is printed.

It prints the floor of each configuration as it is measured, then a table and one line per
run: ``<algo> <n> workers (<backend>, <precision>): <median> steps/s (floor <floor>, <share>;
min <min>, max <max>) on <env>``.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = re.compile(r"Steps: (\d+)")
STARTED = re.compile(r"first environment step ([\d.]+) s after launch")
SUMMARY = re.compile(r"bytes per agent step (\d+) \(rollouts (\d+), weights (\d+)\); learner (\d+) "
                     r"updates in ([\d.]+) s \(([\d.]+)/s\), busy ([\d.]+) s \(([\d.]+) ms per "
                     r"update\); actor ([\d.]+) ms per step; policy lag mean ([\d.]+), max (\d+)")
SUMMARY_KEYS = ("bytes_per_step", "rollout_bytes_per_step", "weight_bytes_per_step", "updates",
                "wall_s", "updates_per_s", "busy_s", "update_ms", "actor_step_ms", "lag_mean",
                "lag_max")
BACKEND_FLAGS = {"local": ["--backend", "local"], "ray": ["--backend", "ray"],
                 "actor_learner": ["--backend", "ray", "--ray_mode", "actor_learner"]}

from Agent.algorithms import get
from Utils.config import default
from bench.harness import RunShell, Timer, Worker, bench_config


def compute_floor(algo: str, env_name: str, n_workers: int, extra: list[str]) -> dict:
    """The floor for ``n_workers``: one-core measurements in min(n, cores) processes at once
    (workers 0, 1, ... of the run), summed; plus the isolated one-core rate."""
    isolated = floor_one_core(algo, env_name, n_workers, extra)
    cores = min(n_workers, os.cpu_count() or 1)
    if cores == 1:
        concurrent = [isolated]
    else:
        with torch.multiprocessing.get_context("spawn").Pool(cores) as pool:
            concurrent = pool.starmap(floor_one_core, [(algo, env_name, n_workers, extra, worker_id)
                                                       for worker_id in range(cores)])
    return {**{k: float(np.mean([c[k] for c in concurrent])) for k in isolated},
            "floor": sum(1e3 / c["step_ms"] for c in concurrent),
            "isolated_floor": cores * 1e3 / isolated["step_ms"],
            "isolated_update_ms": isolated["update_ms"]}


def floor_config(algo: str, env_name: str, n_workers: int, extra: list[str]):
    """The run's config for the floor: the defaults with the main.py flags that change the
    per-step work (``--no_recurrent``, ``--precision``)."""
    overrides = {"env_name": env_name, "n_workers": n_workers}
    if "--no_recurrent" in extra:
        overrides["recurrent"] = False
    if "--precision" in extra:
        overrides["precision"] = extra[extra.index("--precision") + 1]
    return bench_config(algo, overrides)


def floor_one_core(algo: str, env_name: str, n_workers: int, extra: list[str], worker_id: int = 0,
                   iterations: int = 60, warmup_iterations: int = 5) -> dict:
    """Milliseconds per agent step of the pure compute on one core, by piece, and the floor.

    Builds worker ``worker_id`` of the run as training does (:mod:`bench.harness`) and runs
    ``iterations`` of its real iterations (``rollout``, then the agent's ``learn``) after
    ``warmup_iterations``, with timing wrappers on the real methods: the environment's
    ``step``, the agent's ``act``, and each update (ACER: its ``update``, less the weight copy
    an off-policy update starts with, its ``sync``, timed inside it; A3C: ``learn``, one update).
    """
    torch.set_num_threads(1)
    cfg = floor_config(algo, env_name, n_workers, extra)
    run = RunShell(cfg)
    worker = Worker(cfg, run.params(), run.trainer.counters, worker_id)
    agent, timer = worker.agent, Timer()
    timer.patch(worker.env, "step", "env")
    timer.patch(agent, "act")
    if hasattr(agent, "update"):   # ACER: learn makes several updates, each its update method
        timer.patch(agent, "update")
        timer.patch(agent, "sync", "copy", within="update")
    else:                          # A3C: learn is one update
        timer.patch(agent, "learn", "update")
    try:
        for iteration in range(warmup_iterations + iterations):
            timer.recording = iteration >= warmup_iterations
            worker.rollout()   # Agent.runtime.worker.rollout, as run_worker calls it
            agent.learn()
    finally:
        worker.close()
        run.close()
    t_update = timer.mean("update") - timer.mean("copy") * (timer.count("copy")
                                                           / max(1, timer.count("update")))
    updates_per_step = ((1 + cfg.replay_ratio) / cfg.k if algo == "acer"
                        else 1 / agent.rollout_length)
    t_step = timer.mean("env") + timer.mean("act") + t_update * updates_per_step
    return {"env_ms": 1e3 * timer.mean("env"), "act_ms": 1e3 * timer.mean("act"),
            "update_ms": 1e3 * t_update, "updates_per_step": updates_per_step,
            "step_ms": 1e3 * t_step}


def rollout_steps(algo: str, env_name: str, n_workers: int, extra: list[str]) -> int:
    """Agent steps per worker iteration of the run ``measure`` starts (the algorithm's own
    rollout length under that config)."""
    cfg = floor_config(algo, env_name, n_workers, extra)
    return get(cfg.algo).rollout_length(cfg)


def ray_update_overhead(algo: str, env_name: str, extra: list[str], repeats: int = 30) -> dict:
    """Bytes and round-trip times of one update through the Ray parameter server (real
    network, a local Ray instance, the driver acting as the worker): the server built from a
    run's state as ``--backend ray`` builds it, and its own ``pull`` and ``push``."""
    import ray
    from Agent.backends.ray_hogwild import ParameterServer
    from Agent.backends.transport import flatten, numpy_adam, numpy_state
    cfg = floor_config(algo, env_name, 1, extra)
    run = RunShell(cfg)
    t = run.trainer.state
    ray.init(include_dashboard=False, logging_level="ERROR")
    try:
        server = ray.remote(num_cpus=0)(ParameterServer).remote(
            t.algorithm, t.network_spec, cfg.to_dict(), numpy_state(t.global_net.state_dict()),
            numpy_state(t.average_net.state_dict()) if t.average_net is not None else None,
            numpy_adam(t.optimizer.state_dict()), t.counters.numpy().copy())
        grads = flatten(t.global_net.parameters())
        row = t.counters[0].numpy().copy()
        ray.get(server.pull.remote(0, row, []))
        pulls, pushes = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            weights, average, _, _ = ray.get(server.pull.remote(0, row, []))
            pulls.append(time.perf_counter() - start)
            start = time.perf_counter()
            ray.get(server.push.remote(0, grads))
            pushes.append(time.perf_counter() - start)
        pulled = weights.nbytes + (average.nbytes if average is not None else 0)
        return {"pull_mb": pulled / 1e6, "push_mb": grads.nbytes / 1e6,
                "pull_ms": 1000 * float(np.median(pulls)), "push_ms": 1000 * float(np.median(pushes))}
    finally:
        ray.shutdown()
        run.close()


def measure(algo: str, env_name: str, n_workers: int, seconds: float, warmup: float,
            window: float, report_steps: int, extra: list[str], backend: str = "local") -> dict:
    """Run training for ``warmup + seconds``; return steps/s statistics over windows."""
    out = tempfile.mkdtemp(prefix="throughput_")
    interval = max(1, report_steps // rollout_steps(algo, env_name, n_workers, extra))
    cmd = [sys.executable, os.path.join(ROOT, "main.py"), "--do_train", "--algo", algo,
           "--env_name", env_name, "--n_workers", str(n_workers), "--interval", str(interval),
           "--models_dir", os.path.join(out, "Models"), "--logs_dir", os.path.join(out, "Logs"),
           *BACKEND_FLAGS[backend], *extra]
    t_start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
    samples = []  # (time, global steps)
    first_report_s = first_step_s = None
    try:
        for line in proc.stdout:
            started = STARTED.search(line)
            if started:  # as the training command measures it, from its own launch
                first_step_s = float(started.group(1))
            match = STEPS.search(line)
            if not match:
                continue
            now = time.time()
            first_report_s = first_report_s or now - t_start
            samples.append((now, int(match.group(1))))
            if now - t_start > warmup + seconds + first_report_s:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest = proc.communicate(timeout=60)[0] or ""
        except subprocess.TimeoutExpired:
            proc.kill()
            rest = ""
    summary = SUMMARY.search(rest)
    t0 = samples[0][0] + warmup
    measured = [(t, s) for t, s in samples if t >= t0]
    rates = []
    start = measured[0]
    for t, s in measured[1:]:
        if t - start[0] >= window:
            rates.append((s - start[1]) / (t - start[0]))
            start = (t, s)
    total = (measured[-1][1] - measured[0][1]) / (measured[-1][0] - measured[0][0])
    result = summarize(rates, [(total, measured[-1][0] - measured[0][0])], first_step_s)
    if summary:
        result["actor_learner"] = {key: float(v) for key, v in zip(SUMMARY_KEYS, summary.groups())}
    return result


def summarize(rates: list[float], spans: list[tuple[float, float]], first_step_s) -> dict:
    """Statistics over pooled window rates; ``spans``: (mean rate, seconds) per measured run."""
    seconds = sum(t for _, t in spans)
    return {"median": float(np.median(rates)), "min": float(np.min(rates)), "max": float(np.max(rates)),
            "mean": sum(r * t for r, t in spans) / seconds, "windows": len(rates), "rates": rates,
            "spans": spans, "first_step_s": first_step_s if first_step_s is not None else float("nan")}


def measure_rounds(algo: str, env_name: str, n: int, precisions: list[str], rounds: int, args,
                   extra: list[str], backend: str) -> dict:
    """Each precision run ``rounds`` times for seconds / rounds, interleaved; pooled results."""
    pooled = {p: {"rates": [], "spans": [], "first": []} for p in precisions}
    for _ in range(rounds):
        for precision in precisions:
            flags = extra + (["--precision", precision] if len(precisions) > 1 or precision != "fp32"
                             else [])
            r = measure(algo, env_name, n, args.seconds / rounds, args.warmup, args.window,
                        args.report_steps, flags, backend)
            pooled[precision]["rates"] += r["rates"]
            pooled[precision]["spans"] += r["spans"]
            pooled[precision]["first"].append(r["first_step_s"])
            if "actor_learner" in r:
                pooled[precision]["actor_learner"] = r["actor_learner"]   # the last round's
    return {p: {**summarize(v["rates"], v["spans"], float(np.median(v["first"]))),
                **({"actor_learner": v["actor_learner"]} if "actor_learner" in v else {})}
            for p, v in pooled.items()}


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    """The bench's own options, and the flags after them that go to ``main.py`` unchanged."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", nargs="+", default=["acer", "a3c"], choices=["acer", "a3c"])
    p.add_argument("--env_name", default=default("env_name"))
    p.add_argument("--n_workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--backend", nargs="+", default=["local"], choices=list(BACKEND_FLAGS),
                   help="actor_learner: --backend ray --ray_mode actor_learner")
    p.add_argument("--seconds", type=float, default=60.0, help="measured time per worker count")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds discarded after the first report")
    p.add_argument("--window", type=float, default=10.0, help="seconds per rate window")
    p.add_argument("--report_steps", type=int, default=1000, help="agent steps between console lines")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                   help="learner precisions to compare (ACER; A3C runs fp32 only)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds per precision (default 2 with several precisions, else 1)")
    args, extra = p.parse_known_args()
    return args, [a for a in extra if a != "--"]


def print_floor(algo: str, n: int, precision: str, floor: dict) -> None:
    """One configuration's floor, piece by piece, as soon as it is measured."""
    cores = min(n, os.cpu_count() or 1)
    print(f"{algo} {n} workers {precision} floor, per agent step on each core: env "
          f"{floor['env_ms']:.2f} ms + act {floor['act_ms']:.2f} ms + update "
          f"{floor['update_ms']:.1f} ms x {floor['updates_per_step']:.4f} = "
          f"{floor['step_ms']:.2f} ms -> {floor['floor']:.1f} steps/s on "
          f"{cores} core(s) (isolated one-core rate x "
          f"{cores}: {floor['isolated_floor']:.1f})", flush=True)


def run_all(args, extra: list[str]) -> dict:
    """Floors and measured runs of every configuration, keyed (algo, n, backend, precision)."""
    rounds = args.rounds or (2 if len(args.precision) > 1 else 1)
    results = {}
    for algo in args.algo:
        precisions = args.precision if algo == "acer" else ["fp32"]
        for n in args.n_workers:
            floors = {}
            for precision in precisions:
                floors[precision] = compute_floor(algo, args.env_name, n,
                                                  extra + ["--precision", precision])
                print_floor(algo, n, precision, floors[precision])
            for backend in args.backend:
                measured = measure_rounds(algo, args.env_name, n, precisions, rounds, args, extra,
                                          backend)
                for precision, r in measured.items():
                    results[algo, n, backend, precision] = {**r, **floors[precision]}
    return results


def print_table(results: dict) -> None:
    """The table of every run: rates, windows, floor and share of it, first-step time."""
    print(f"\n{'algo':6} {'workers':>7} {'backend':>7} {'prec':>5} {'median':>8} {'min':>8} {'max':>8} "
          f"{'mean':>8} {'windows':>8} {'floor':>8} {'of floor':>9} {'1st step s':>11}")
    for (algo, n, backend, precision), r in results.items():
        print(f"{algo:6} {n:7d} {backend:>7} {precision:>5} {r['median']:8.1f} {r['min']:8.1f} "
              f"{r['max']:8.1f} {r['mean']:8.1f} {r['windows']:8d} {r['floor']:8.1f} "
              f"{r['median'] / r['floor']:8.0%} {r['first_step_s']:11.1f}")


def print_runs(results: dict, env_name: str) -> None:
    """One line per run: its median rate against its floor."""
    for (algo, n, backend, precision), r in results.items():
        print(f"{algo} {n} workers ({backend}, {precision}): {r['median']:.1f} steps/s (floor "
              f"{r['floor']:.1f}, {r['median'] / r['floor']:.0%}; min {r['min']:.1f}, max "
              f"{r['max']:.1f}) on {env_name}")


def print_precision_ratios(results: dict, first: str) -> None:
    """Each other precision against the ``first`` one: rates, floors, one isolated update."""
    for (algo, n, backend, precision), r in results.items():
        base = results.get((algo, n, backend, first))
        if precision == first or base is None:
            continue
        print(f"{algo} {n} workers ({backend}): {precision} / {first} = "
              f"{r['median'] / base['median']:.2f}x steps/s (means {r['mean'] / base['mean']:.2f}x), "
              f"floor {r['floor'] / base['floor']:.2f}x; one ACER update on one core (isolated): "
              f"{base['isolated_update_ms']:.1f} ms {first} vs "
              f"{r['isolated_update_ms']:.1f} ms {precision} "
              f"({base['isolated_update_ms'] / r['isolated_update_ms']:.2f}x)")


def print_actor_learner(results: dict) -> None:
    """What the actor_learner runs' closing summaries say moved and how busy the learner was."""
    for (algo, n, backend, precision), r in results.items():
        a = r.get("actor_learner")
        if a is None:
            continue
        local = results.get((algo, n, "local", precision))
        versus = f", {r['median'] / local['median']:.0%} of local's" if local else ""
        print(f"{algo} {n} actors (actor_learner, {precision}): {a['bytes_per_step'] / 1e3:.1f} KB "
              f"moved per agent step (rollouts {a['rollout_bytes_per_step'] / 1e3:.1f} KB, weights "
              f"{a['weight_bytes_per_step'] / 1e3:.1f} KB); {r['median']:.1f} steps/s{versus}; "
              f"learner {a['updates_per_s']:.1f} updates/s over the whole run, "
              f"{a['update_ms']:.1f} ms per update when busy ({a['busy_s'] / a['wall_s']:.0%} busy); "
              f"actors {a['actor_step_ms']:.2f} ms per step; policy lag mean {a['lag_mean']:.1f}, "
              f"max {a['lag_max']:.0f} updates")


def print_hogwild_comparison(algo: str, o: dict, results: dict) -> None:
    """Bytes per agent step of the hogwild Ray mode (one update's pull and push times ACER's
    expected updates per step), and how many times more that is than actor_learner's."""
    cfg = bench_config(algo, {})
    per_step = (o["pull_mb"] + o["push_mb"]) * 1e6 * (1 + cfg.replay_ratio) / cfg.k
    print(f"{algo} hogwild Ray mode: {per_step / 1e6:.2f} MB per agent step (pull + push "
          f"per update x {(1 + cfg.replay_ratio) / cfg.k:.2f} updates per step)")
    for (a_algo, n, backend, precision), r in results.items():
        if a_algo == algo and "actor_learner" in r:
            moved = r["actor_learner"]["bytes_per_step"]
            print(f"{algo} {n} actors: actor_learner moves {moved / 1e3:.1f} KB per agent "
                  f"step, {per_step / moved:.1f}x less than hogwild's "
                  f"{per_step / 1e6:.2f} MB")


def print_ray_overheads(args, extra: list[str], results: dict) -> None:
    """With a Ray backend: one update through the parameter server, per algorithm (ACER only
    for actor_learner alone), and for ACER the comparison with actor_learner."""
    if not {"ray", "actor_learner"} & set(args.backend):
        return
    for algo in args.algo:
        if algo != "acer" and "ray" not in args.backend:
            continue
        o = ray_update_overhead(algo, args.env_name, extra)
        print(f"{algo} update through the Ray parameter server: pull {o['pull_mb']:.1f} MB in "
              f"{o['pull_ms']:.1f} ms, push {o['push_mb']:.1f} MB in {o['push_ms']:.1f} ms "
              f"(round trips, median of 30)")
        if algo == "acer":
            print_hogwild_comparison(algo, o, results)


def main() -> None:
    """Measure every configuration (floors first, as they come), then print the comparisons."""
    args, extra = parse_args()
    results = run_all(args, extra)
    print_table(results)
    print_runs(results, args.env_name)
    print_precision_ratios(results, args.precision[0])
    print_actor_learner(results)
    print_ray_overheads(args, extra, results)


if __name__ == "__main__":
    main()
