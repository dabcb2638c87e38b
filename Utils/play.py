"""Play back trained weights: full games (no episodic life), raw scores, video of the first game.

The first game is recorded from the emulator's RGB screen (one frame per agent
step) as an MP4 (15 fps for Atari's 4-frame action repeat, so real time) and an
animated GIF (every second frame, to keep it small) under ``video_dir``. On a terminal
a tqdm bar on stderr follows each game (frames and score so far) and is cleared before
the game's line; elsewhere (a file, a pipe) only the lines are written.
"""
from __future__ import annotations

import os
import sys
import time

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import torch
from tqdm import tqdm

from Utils.atari_wrappers import StickyActions, box_bounds, is_atari, make_env
from Utils.checkpoint import CheckpointError
from Utils.evaluation import FRAMES_PER_GAME
from Utils.network_spec import NetworkSpec


def check_env_name(state: dict, env_name: str) -> None:
    """Refuse weights trained on another environment."""
    if state.get("env_name") != env_name:
        raise CheckpointError(f"these weights were trained on {state.get('env_name')}, "
                              f"not {env_name}")


def build_policy(state: dict, env_name: str, build_network) -> torch.nn.Module:
    """The network stored in a checkpoint, checked against ``env_name``; ``build_network``: its
    algorithm's (:class:`Agent.registry.Algorithm`'s ``build_network``)."""
    check_env_name(state, env_name)
    try:
        net = build_network(NetworkSpec.of(state["obs_shape"], int(state["n_actions"]),
                                           state["config"], action_bounds(state)))
    except ValueError as err:
        raise CheckpointError(f"cannot build the checkpoint's network: {err}") from None
    if net.kind != state.get("network_kind"):
        raise CheckpointError(f"checkpoint network kind {state.get('network_kind')} does not "
                              f"match {net.kind} for {env_name}")
    try:
        net.load_state_dict(state["model"])
    except RuntimeError:
        raise CheckpointError("the file's weights do not fit the network it describes "
                              f"({net.kind}, {state['n_actions']} actions)") from None
    net.eval()
    return net


def action_bounds(state: dict) -> tuple[list, list] | None:
    """The Box bounds a continuous checkpoint was trained with (None: discrete actions)."""
    if "action_low" not in state:
        return None
    return list(state["action_low"]), list(state["action_high"])


def choose_action(policy, greedy: bool, generator: torch.Generator, bounds):
    """An action from a network's policy output: logits (discrete) or ``(mean, std)`` (Box;
    greedy is the mean; the action is clipped into the box)."""
    if bounds is None:
        if greedy:
            return int(policy.argmax())
        return int(torch.multinomial(torch.softmax(policy[0], -1), 1, generator=generator))
    mean, std = policy
    action = mean[0] if greedy else mean[0] + std[0] * torch.randn(mean.shape[1:], generator=generator)
    return np.clip(action.numpy(), bounds[0], bounds[1]).astype(np.float32)


class VideoRecorder:
    """Writes RGB frames to ``<stem>.mp4`` as they come and ``<stem>.gif`` at the end."""

    def __init__(self, stem: str, fps: float = 15.0, gif_every: int = 2):
        os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
        self.mp4_path, self.gif_path = stem + ".mp4", stem + ".gif"
        self.fps, self.gif_every = fps, gif_every
        self.mp4 = imageio.get_writer(self.mp4_path, fps=fps, codec="libx264", quality=7,
                                      macro_block_size=2, ffmpeg_log_level="error")
        self.gif_frames: list[np.ndarray] = []
        self.n_frames = 0

    def add(self, frame: np.ndarray) -> None:
        self.mp4.append_data(frame)
        if self.n_frames % self.gif_every == 0:
            self.gif_frames.append(frame)
        self.n_frames += 1

    def close(self) -> tuple[str, str]:
        self.mp4.close()
        imageio.mimsave(self.gif_path, self.gif_frames, duration=1000 * self.gif_every / self.fps, loop=0)
        return self.mp4_path, self.gif_path


def display_available() -> bool:
    """True where a window can be opened (an X or Wayland display, or an SDL video driver)."""
    return any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"))


class Window:
    """Shows RGB frames in a pygame window, scaled up, at about ``fps`` frames per second."""

    def __init__(self, title: str, scale: int = 3, fps: float = 30.0):
        import pygame
        self.pygame, self.title, self.scale, self.delay = pygame, title, scale, 1.0 / fps
        self.screen, self.last = None, 0.0
        pygame.init()

    def show(self, frame: np.ndarray) -> None:
        pg = self.pygame
        if self.screen is None:
            h, w = frame.shape[:2]
            self.screen = pg.display.set_mode((w * self.scale, h * self.scale))
            pg.display.set_caption(self.title)
        surface = pg.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1)))
        self.screen.blit(pg.transform.scale(surface, self.screen.get_size()), (0, 0))
        pg.display.flip()
        pg.event.pump()
        time.sleep(max(0.0, self.delay - (time.time() - self.last)))
        self.last = time.time()

    def close(self) -> None:
        self.pygame.quit()


class Scores(list):
    """The raw scores of the games played, with ``truncated`` (one flag per game: the frame
    cap or the environment's time limit ended it) and, with sticky actions, the counts of
    :class:`Utils.atari_wrappers.StickyActions` (``sticky_counts``)."""

    def __init__(self):
        super().__init__()
        self.truncated: list[bool] = []
        self.sticky_counts: dict[str, int] | None = None


def game_line(episode: int, episodes: int, scores: Scores, frames: int, atari: bool) -> str:
    """``Game 3/10: score 21.0 | mean so far 20.33`` (and a note when the game was cut off, and
    how many of the games in the mean were)."""
    line = f"Game {episode + 1}/{episodes}: score {scores[-1]:.1f}"
    if scores.truncated[-1]:
        line += f" (truncated after {frames:,} {'frames' if atari else 'steps'})"
    if episodes > 1:
        line += f" | mean so far {np.mean(scores):.2f}"
        if any(scores.truncated):
            line += f" ({sum(scores.truncated)} of {len(scores)} cut off)"
    return line


def video_line(recorder: "VideoRecorder", frames: int, frames_per_step: int) -> str:
    """``Video of game 1 (100 agent steps = 400 emulator frames; 101 video frames at 15 fps): ...``:
    the game's length in agent steps (and, for Atari, the emulator frames the frame cap counts)
    and the video's own frames (the first screen, then one per step drawn)."""
    steps = frames // frames_per_step
    length = (f"{steps:,} agent steps = {frames:,} emulator frames" if frames_per_step > 1
              else f"{steps:,} steps")
    return (f"Video of game 1 ({length}; {recorder.n_frames:,} video frames at {recorder.fps:g} fps): "
            f"{recorder.mp4_path}, {recorder.gif_path}")


def game_bar(episode: int, episodes: int, game: "Game", env) -> tqdm:
    """A live bar on stderr for one game: ``Game 1/3:  37%|###  | 40000/108000 emulator frames
    [00:41<01:10, 970.51frames/s, score 12, 10000 agent steps]`` for Atari, against the frame
    cap (none with ``--max_frames 0``); steps against the environment's time limit (if it has
    one) elsewhere. It is cleared when closed (``leave=False``)."""
    if game.frames_per_step > 1:
        total, unit = game.step_cap * game.frames_per_step or None, "emulator frames"
    else:
        total, unit = getattr(getattr(env, "spec", None), "max_episode_steps", None), "steps"
    # a game can pass the total by a step or two (FIRE after a life lost at the cap): tqdm then
    # draws the last update without the total, and the bar is closed
    bar_format = ("{l_bar}{bar}| {n_fmt}/{total_fmt} " + unit + " [{elapsed}<{remaining}, "
                  if total else "{desc}: {n_fmt} " + unit + " [{elapsed}, ") + "{rate_fmt}{postfix}]"
    start = "score 0" + (", 0 agent steps" if game.frames_per_step > 1 else "")
    return tqdm(total=total, desc=f"Game {episode + 1}/{episodes}", unit=unit.split()[-1],
                bar_format=bar_format, postfix=start, file=sys.stderr, leave=False,
                dynamic_ncols=True)


def find_wrapper(env, wrapper_type):
    """The first wrapper of ``wrapper_type`` in ``env``'s stack, or None."""
    e = env
    while isinstance(e, gym.Wrapper):
        if isinstance(e, wrapper_type):
            return e
        e = e.env
    return None


def play(state: dict, env_name: str, episodes: int, seed: int,
         greedy: bool = False, verbose: bool = True, video_dir: str | None = None,
         render: bool = False, noop_max: int = 30, sticky: float = 0.0,
         max_frames: int = FRAMES_PER_GAME, fire_on_new_life: bool = False, *,
         build_network) -> Scores:
    """Play ``episodes`` full games with the checkpoint's policy; return the raw scores.
    ``build_network``: the checkpoint's algorithm's network builder (its registry record's).

    With ``video_dir``, the first game is saved there as MP4 and GIF; with ``render``,
    every game is shown in a window (when a display is available). Atari games start with
    1 to ``noop_max`` no-op frames (0: none), repeat the previous frame's action with
    probability ``sticky``, and end truncated after ``max_frames`` emulator frames
    (4 per agent step; 0: no cap). ``fire_on_new_life`` takes NOOP, FIRE and action 2 after
    each lost life, as training did (games that start with FIRE). Game ``i`` resets the
    environment with ``seed + i``; the policy samples from a generator seeded with ``seed``.
    """
    check_env_name(state, env_name)
    render = prepare_display(render)
    # Batch-1 inference gains nothing from intra-op threads, and spinning threads
    # compete with the video encoder (and any training run), many times slower per forward.
    torch.set_num_threads(1)
    atari = is_atari(env_name)
    options = ({"noop_max": noop_max, "sticky": sticky, "seed": seed,
                "fire_on_new_life": fire_on_new_life} if atari else {})
    env, video_dir, render = open_env(state, env_name, options, video_dir, render, seed)
    try:
        check_spaces(state, env_name, env)
        game = Game(env, build_policy(state, env_name, build_network), action_bounds(state), greedy,
                    torch.Generator().manual_seed(seed), atari, max_frames)
        window = Window(env_name) if render else None
        scores = Scores()
        for episode in range(episodes):
            recorder = new_recorder(video_dir, env_name) if episode == 0 else None
            bar = game_bar(episode, episodes, game, env) if verbose and sys.stderr.isatty() else None
            try:
                score, truncated, frames = game.play(seed + episode, recorder, window, bar)
            finally:
                if bar is not None:  # cleared: the game's line takes its place
                    bar.close()
            scores.append(score)
            scores.truncated.append(truncated)
            if verbose:
                if recorder is not None:
                    print(video_line(recorder, frames, game.frames_per_step))
                print(game_line(episode, episodes, scores, frames, atari), flush=True)
        scores.sticky_counts = sticky_counts(env)
        if window is not None:
            window.close()
    finally:
        env.close()
    return scores


def prepare_display(render: bool) -> bool:
    """Whether a window can be shown; set up off-screen rendering where there is no display."""
    display = display_available()
    if render and not display:
        print("warning: --render: no display available; playing without a window")
        render = False
    if not display:  # MuJoCo renders off-screen through EGL where there is no display
        os.environ.setdefault("MUJOCO_GL", "egl")
    if not render:  # frames are drawn off-screen: SDL (pygame) needs no display and says nothing
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    return render


def open_env(state: dict, env_name: str, options: dict, video_dir, render: bool, seed: int):
    """The play environment, rendering frames when a video or a window needs them (without,
    if the renderer cannot start); returns it with the video folder and window still wanted."""
    frame_stack = int(state["config"].get("frame_stack", 4))
    if not (video_dir or render):
        return make_env(env_name, training=False, frame_stack=frame_stack, **options), None, False
    env = make_env(env_name, training=False, frame_stack=frame_stack, render_mode="rgb_array",
                   **options)
    try:
        env.reset(seed=seed)
        env.render()
        return env, video_dir, render
    except Exception as err:  # e.g. a renderer's optional dependency is missing
        print(f"warning: cannot render {env_name} ({type(err).__name__}: {err}); "
              "playing without video or window")
        env.close()
        return make_env(env_name, training=False, frame_stack=frame_stack, **options), None, False


def check_spaces(state: dict, env_name: str, env) -> None:
    """Refuse a checkpoint whose observations or actions do not fit the environment."""
    bounds, env_bounds = action_bounds(state), box_bounds(env)
    n_env_actions = len(env_bounds[0]) if env_bounds else getattr(env.action_space, "n", None)
    if tuple(env.observation_space.shape) != tuple(state["obs_shape"]) or \
            n_env_actions != state["n_actions"] or (bounds is None) != (env_bounds is None):
        kind = "continuous" if bounds else "discrete"
        raise CheckpointError(f"checkpoint expects observations {tuple(state['obs_shape'])} and "
                              f"{state['n_actions']} {kind} actions; {env_name} has "
                              f"{env.observation_space.shape} and {env.action_space}")


def new_recorder(video_dir: str | None, env_name: str) -> VideoRecorder | None:
    """A recorder for the first game under ``video_dir`` (None: no video)."""
    if not video_dir:
        return None
    game = env_name.replace("/", "_")
    return VideoRecorder(os.path.join(video_dir, f"{game}_{time.strftime('%Y-%m-%d-%H-%M-%S')}"))


def sticky_counts(env) -> dict[str, int] | None:
    """What the sticky-action wrapper counted, if the environment has one."""
    sticky = find_wrapper(env, StickyActions)
    if sticky is None:
        return None
    return {"frames": sticky.frames, "repeated": sticky.repeated, "differed": sticky.differed}


class Game:
    """Plays one full game at a time with a policy network on a play environment."""

    def __init__(self, env, net, bounds, greedy: bool, generator: torch.Generator, atari: bool,
                 max_frames: int):
        self.env, self.net, self.bounds, self.greedy, self.generator = env, net, bounds, greedy, generator
        self.frames_per_step = 4 if atari else 1   # Atari: the pipeline's frame skip
        self.step_cap = max_frames // 4 if atari and max_frames else 0

    def play(self, seed: int, recorder: VideoRecorder | None, window,
             bar: tqdm | None = None) -> tuple[float, bool, int]:
        """One game from ``env.reset(seed=seed)``: raw score, whether it was cut off (the frame
        cap or the environment's time limit), and its length in frames (steps for non-Atari).
        ``bar`` (:func:`game_bar`) is moved on at every step."""
        obs, _ = self.env.reset(seed=seed)
        self._show(recorder, window)
        hidden = self.net.initial_hidden()  # A3C's LSTM state, zeroed for each game
        steps, score = 0, 0.0
        while True:
            with torch.no_grad():
                policy, hidden = self.net.step(torch.from_numpy(np.asarray(obs)).unsqueeze(0), hidden)
            action = choose_action(policy, self.greedy, self.generator, self.bounds)
            obs, reward, terminated, truncated, info = self.env.step(action)
            # --fire_on_new_life's NOOP, FIRE, 2 after a lost life are steps of the game too
            steps, score = steps + 1 + info.get("extra_steps", 0), score + float(reward)
            if bar is not None:
                self._advance(bar, steps, score)
            self._show(recorder, window)
            capped = bool(self.step_cap) and steps >= self.step_cap and not terminated
            if terminated or truncated or capped:
                if recorder is not None:
                    recorder.close()
                # the statistics wrapper reports a game only when the environment ends it
                score = float(info["episode"]["r"]) if "episode" in info else score
                return score, bool(truncated or capped), steps * self.frames_per_step

    def _advance(self, bar: tqdm, steps: int, score: float) -> None:
        """The bar at ``steps`` (in emulator frames for Atari, the agent steps beside them) and
        the score so far; tqdm redraws it at most every 0.1 s."""
        bar.set_postfix_str(f"score {score:g}" + (f", {steps} agent steps" if self.frames_per_step > 1
                                                   else ""), refresh=False)
        bar.update(steps * self.frames_per_step - bar.n)

    def _show(self, recorder, window) -> None:
        if recorder is not None or window is not None:
            frame = self.env.render()
            if recorder is not None:
                recorder.add(frame)
            if window is not None:
                window.show(frame)

