"""Scores as published tables report them: summary statistics and human-normalized scores.

The evaluation protocol of the DQN, A3C and ACER papers plays each game from a random number
of no-op starts (up to 30) for at most 108,000 emulator frames (30 minutes) and reports the
mean score; Machado et al. (2018) add sticky actions (p = 0.25). A score is normalized as
``(score - random) / (human - random)`` with the random and human scores below (Mnih et al.
2015 and the A3C paper's tables).
"""
from __future__ import annotations

import math
import statistics

from Utils.checkpoint import game_name

# game -> (random play, human) scores, from the DQN (Mnih et al. 2015) and A3C papers' tables
RANDOM_HUMAN = {
    "Pong": (-20.7, 14.6),
    "Breakout": (1.7, 30.5),
    "SpaceInvaders": (148.0, 1668.7),
    "Assault": (222.4, 742.0),
}
FRAMES_PER_GAME = 108_000   # 30 minutes at 60 frames per second


def human_normalized(env_name: str, score: float) -> float | None:
    """``(score - random) / (human - random)`` for a game in :data:`RANDOM_HUMAN`, else None."""
    pair = RANDOM_HUMAN.get(game_name(env_name))
    if pair is None:
        return None
    random_score, human_score = pair
    return (score - random_score) / (human_score - random_score)


def summarize(scores: list[float]) -> dict[str, float]:
    """Mean, population std, median, min and max of a list of scores."""
    if not scores:
        raise ValueError("no scores to summarize")
    mean = sum(scores) / len(scores)
    return {"n": len(scores), "mean": mean,
            "std": math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores)),
            "median": statistics.median(scores), "min": min(scores), "max": max(scores)}


def cut_off_note(truncated, atari: bool = True) -> str:
    """``2 of 10 games cut off at the frame cap: not full-game scores`` for the games a mean
    includes that the frame cap (Atari) or the time limit ended; "" when none was."""
    cut = sum(bool(t) for t in truncated)
    if not cut:
        return ""
    if atari:
        return f"{cut} of {len(truncated)} games cut off at the frame cap: not full-game scores"
    return f"{cut} of {len(truncated)} games cut off at the time limit"


def summary_line(env_name: str, scores: list[float], truncated=None) -> str:
    """One line with the summary statistics and, for a known game, the human-normalized mean,
    saying how many of the games were cut off at the frame cap (``truncated``: one flag per
    game, by default ``scores.truncated`` of a :class:`Utils.play.Scores`)."""
    s = summarize(scores)
    line = (f"{s['n']} games: mean {s['mean']:.2f} +- {s['std']:.2f} (std), median "
            f"{s['median']:.1f}, min {s['min']:.1f}, max {s['max']:.1f}")
    cut = cut_off_note(getattr(scores, "truncated", ()) if truncated is None else truncated)
    normalized = human_normalized(env_name, s["mean"])
    if normalized is not None:
        random_score, human_score = RANDOM_HUMAN[game_name(env_name)]
        line += (f"; human-normalized mean {100 * normalized:.1f}% ({cut + '; ' if cut else ''}"
                 f"random {random_score:g}, human {human_score:g})")
    elif cut:
        line += f" ({cut})"
    return line
