"""best.pth: the weights at the best full-game running reward, rewritten only on improvement,
atomic under a kill mid-write, and playable."""
import os
import subprocess
import sys
import textwrap

import torch

from Agent.training import build_trainer
from Utils.checkpoint import BEST_NAME, load_checkpoint
from Utils.config import Config



def cartpole_trainer(tmp_path) :
    cfg = Config(env_name="CartPole-v1", n_workers=1, models_dir=str(tmp_path / "M"))
    return build_trainer(cfg, str(tmp_path / "M" / "run"), str(tmp_path / "L" / "run"))


def test_best_is_rewritten_only_when_the_running_reward_improves(tmp_path):
    trainer = cartpole_trainer(tmp_path)
    path = os.path.join(trainer.run_dir, BEST_NAME)
    try:
        assert trainer.save_best() is False and not os.path.exists(path)   # no game finished yet
        trainer.logger.running_reward = 20.0
        assert trainer.save_best() is True
        first = load_checkpoint(path)
        assert first["best_running_reward"] == 20.0 and "optimizer" not in first
        with torch.no_grad():   # the weights move on; a lower or equal running reward keeps the file
            for p in trainer.global_net.parameters():
                p.add_(1.0)
        for worse in (19.5, 20.0):
            trainer.logger.running_reward = worse
            assert trainer.save_best() is False
        kept = load_checkpoint(path)
        assert kept["best_running_reward"] == 20.0
        assert all(torch.equal(kept["model"][k], first["model"][k]) for k in first["model"])
        trainer.logger.running_reward = 30.0
        assert trainer.save_best() is True
        better = load_checkpoint(path)
        assert better["best_running_reward"] == 30.0
        assert torch.equal(better["model"]["q_head.bias"], first["model"]["q_head.bias"] + 1.0)
    finally:
        trainer.logger.close()
    # a resumed run (a new trainer on the same folder) continues from the file's figure
    again = cartpole_trainer(tmp_path)
    try:
        assert again.best_reward == 30.0
        again.logger.running_reward = 25.0
        assert again.save_best() is False
    finally:
        again.logger.close()


KILLED_WRITER = textwrap.dedent("""
    import sys
    import Utils.checkpoint as checkpoint
    from Agent.training import build_trainer
    from Utils.config import Config

    def stalled_save(state, fh):   # writes part of the file, then waits to be killed
        fh.write(b"PK" + bytes(100_000))
        fh.flush()
        print("writing", flush=True)
        sys.stdin.read()

    cfg = Config(env_name="CartPole-v1", n_workers=1, models_dir={models!r})
    trainer = build_trainer(cfg, {run!r}, {logs!r})
    trainer.logger.running_reward = 50.0
    checkpoint.torch.save = stalled_save
    trainer.save_best()
""")


def test_a_kill_while_writing_best_keeps_the_previous_file(tmp_path):
    trainer = cartpole_trainer(tmp_path)
    trainer.logger.running_reward = 10.0
    assert trainer.save_best()
    trainer.logger.close()
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER.format(models=str(tmp_path / "M"),
                                           run=trainer.run_dir, logs=str(tmp_path / "L" / "run2")))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"   # the new file is half written
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    best = load_checkpoint(os.path.join(trainer.run_dir, BEST_NAME))
    assert best["best_running_reward"] == 10.0


def test_best_plays_and_exports(tmp_path, main_cli):
    trainer = cartpole_trainer(tmp_path)
    trainer.logger.running_reward = 12.0
    assert trainer.save_best()
    trainer.logger.close()
    best = os.path.join(trainer.run_dir, BEST_NAME)
    played = main_cli(["--env_name", "CartPole-v1", "--weights", best, "--episodes", "1",
                       "--no_video"], tmp_path)
    assert played.returncode == 0, played.stderr
    assert "Game 1/1: score" in played.stdout
    out = tmp_path / "exported.pth"
    exported = main_cli(["--env_name", "CartPole-v1", "--weights", best, "--export", str(out)], tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert torch.equal(load_checkpoint(str(out))["model"]["q_head.weight"],
                       load_checkpoint(best)["model"]["q_head.weight"])
