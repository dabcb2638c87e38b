"""The benches time the real training code, never a re-typed copy of it.

A bench builds its worker as a run does (``bench/harness.py``), steps it with the worker's own
``rollout`` and learns with the agent's own ``learn`` (or ``update`` / ``update_batch``): no
file in ``bench/`` runs a backward pass, clips gradients, steps an environment or an
optimizer, acts or records itself, or draws the replay schedule. The checker is tested on a
source that does; one real bench run checks that ``bench/throughput.py`` still prints its figure.
"""
import ast
import glob
import importlib
import math
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

BENCH = os.path.join(ROOT, "bench")

# method calls (x.name(...)) and plain calls (name(...)) that make up a rollout or an update
TRAINING_METHODS = {
    "backward": "a backward pass", "clip_grad_norm_": "a gradient clip",
    "zero_grad": "clearing gradients", "step": "an environment's or an optimizer's step",
    "act": "acting", "record": "recording a step", "begin_rollout": "starting a rollout",
    "poisson": "drawing the replay schedule",
}
TRAINING_FUNCTIONS = {
    "clip_grad_norm_": "a gradient clip", "SharedAdam": "an optimizer of its own",
    "update_global": "a global update", "apply_gradients": "applying gradients",
    "polyak_update": "a Polyak step", "acer_loss": "ACER's loss",
    "continuous_acer_loss": "ACER's loss", "a3c_loss": "A3C's loss",
    "gaussian_a3c_loss": "A3C's loss", "n_step_returns": "A3C's returns",
}
# the algorithms' math: a bench that imports it is computing a loss itself
MATH_MODULES = ("Agent.acer.math", "Agent.a3c.math", "Agent.shared_math", "torch.optim")


def training_code(source: str) -> list[str]:
    """Where ``source`` does what only training should: 'line N: what (call)'."""
    found = []   # (line, what)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in TRAINING_METHODS:
                found.append((node.lineno, f"{TRAINING_METHODS[func.attr]} (.{func.attr}())"))
            elif isinstance(func, ast.Name) and func.id in TRAINING_FUNCTIONS:
                found.append((node.lineno, f"{TRAINING_FUNCTIONS[func.id]} ({func.id}())"))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                       else [alias.name for alias in node.names])
            for module in modules:
                if module.startswith(MATH_MODULES):
                    found.append((node.lineno, f"imports {module}"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


def called(source: str) -> set[str]:
    """The names ``source`` calls, as ``name(...)`` or ``x.name(...)``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                names.add(node.func.id)
            elif isinstance(node.func, ast.Attribute):
                names.add(node.func.attr)
    return names


def imported_from(source: str, module: str) -> set[str]:
    return {alias.name for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ImportFrom) and node.module == module for alias in node.names}


def read(name: str) -> str:
    with open(os.path.join(BENCH, name)) as fh:
        return fh.read()


RETYPED_LOOP = '''
import numpy as np
from Agent.acer.math import acer_loss

def train(agent, env, optimizer, rng, obs, cfg):
    agent.begin_rollout()
    for _ in range(cfg.k):
        action = agent.act(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        agent.record(action, reward, terminated, truncated, obs)
    for _ in range(rng.poisson(cfg.replay_ratio)):
        loss, _ = acer_loss(agent.replay.sample(rng))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.local_net.parameters(), cfg.max_grad_norm)
        optimizer.step()
'''


def test_the_checker_finds_a_retyped_training_loop():
    found = "\n".join(training_code(RETYPED_LOOP))
    for what in ("starting a rollout (.begin_rollout())", "acting (.act())",
                 "an environment's or an optimizer's step (.step())", "recording a step (.record())",
                 "drawing the replay schedule (.poisson())", "ACER's loss (acer_loss())",
                 "clearing gradients (.zero_grad())", "a backward pass (.backward())",
                 "a gradient clip (.clip_grad_norm_())", "imports Agent.acer.math"):
        assert what in found, found
    assert len(re.findall(r"\.step\(\)", found)) == 2          # the environment's and Adam's
    # calling the real objects is not training code
    assert training_code("obs = rollout(agent, env, obs, 1.0, reporter)\nagent.learn()\n"
                         "agent.update_batch(batch)\ntimer.patch(env, 'step')\n") == []


@pytest.mark.parametrize("name", sorted(os.path.basename(p) for p in glob.glob(os.path.join(BENCH, "*.py"))))
def test_no_bench_holds_a_copy_of_the_training_loop(name):
    assert training_code(read(name)) == [], f"bench/{name} re-types training code"


@pytest.mark.parametrize("name", ["throughput.py", "replay_memory.py"])
def test_the_benches_call_the_real_rollout_and_learn(name):
    source = read(name)
    assert {"rollout", "learn"} <= called(source), f"bench/{name}"
    assert "Worker" in imported_from(source, "bench.harness"), f"bench/{name}"


def test_the_harness_builds_and_steps_the_worker_as_training_does():
    source = read("harness.py")
    assert {"Reporter", "rollout", "start_worker"} <= imported_from(source, "Agent.runtime.worker")
    assert "build_trainer" in imported_from(source, "Agent.training")
    assert {"rollout", "start_worker", "Reporter", "build_trainer"} <= called(source)
    import Agent.runtime.worker as worker
    harness = importlib.import_module("bench.harness")
    assert harness.rollout is worker.rollout and harness.start_worker is worker.start_worker
    assert harness.Reporter is worker.Reporter


def test_the_throughput_floor_runs_the_agents_own_learn_and_the_real_rollout(monkeypatch):
    """The floor's iterations are ACERAgent.learn after Agent.runtime.worker.rollout, whose
    every step goes through the real Reporter; its figures come from timing them."""
    import torch
    from Agent.acer.agent import ACERAgent
    from Agent.runtime.worker import Reporter
    calls = {"learn": 0, "steps": 0}
    learn, step = ACERAgent.learn, Reporter.step

    def counted_learn(self):
        calls["learn"] += 1
        return learn(self)

    def counted_step(self, info):
        calls["steps"] += 1
        return step(self, info)
    monkeypatch.setattr(ACERAgent, "learn", counted_learn)
    monkeypatch.setattr(Reporter, "step", counted_step)
    throughput = importlib.import_module("bench.throughput")
    threads = torch.get_num_threads()
    try:
        floor = throughput.floor_one_core("acer", "CartPole-v1", 1, [], iterations=3,
                                          warmup_iterations=1)
    finally:
        torch.set_num_threads(threads)
    k = throughput.floor_config("acer", "CartPole-v1", 1, []).k
    assert calls == {"learn": 4, "steps": 4 * k}
    assert all(math.isfinite(v) and v > 0 for v in floor.values()), floor


def test_throughput_bench_prints_its_figures():
    """A few seconds of the real bench on CartPole: its floor line and its figure line."""
    result = subprocess.run(
        [sys.executable, os.path.join(BENCH, "throughput.py"), "--algo", "acer", "--env_name",
         "CartPole-v1", "--n_workers", "1", "--seconds", "3", "--warmup", "1", "--window", "1",
         "--report_steps", "200"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,   # only against a hang
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert re.search(r"^acer 1 workers fp32 floor, per agent step on each core: env [\d.]+ ms \+ "
                     r"act [\d.]+ ms \+ update [\d.]+ ms x 0\.\d+ = [\d.]+ ms -> [\d.]+ steps/s",
                     result.stdout, re.M), result.stdout
    assert re.search(r"^acer 1 workers \(local, fp32\): [\d.]+ steps/s \(floor [\d.]+, \d+%; "
                     r"min [\d.]+, max [\d.]+\) on CartPole-v1$", result.stdout, re.M), result.stdout
