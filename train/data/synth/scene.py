"""Compose one synthetic frame: background, warped signs on poles, occluders, then photometric effects."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from stopsign.train.data.synth import effects
from stopsign.train.data.synth.backgrounds import BackgroundPool
from stopsign.train.data.synth.distractors import DISTRACTOR_KINDS
from stopsign.train.data.synth.signs import CONFUSER_KINDS, Sprite

MIN_SIGN = 12  # px: smallest stop sign drawn (the detector's useful limit at 416)


# Every confuser the generator can place: signs that look like a stop sign, then red street objects
# the shipped model fired on. ``SIGN_CONFUSERS`` alone is what the first shipped model's stage 1 used.
SIGN_CONFUSERS = CONFUSER_KINDS
ALL_CONFUSERS = CONFUSER_KINDS + DISTRACTOR_KINDS
# Mounted on a pole (drawn below the sprite 70 % of the time); the rest stand on the ground, hang on
# walls or are trees.
POLE_KINDS = frozenset(
    {"stop_sign", "do_not_enter", "yield", "red_rim_round", "yellow_diamond", "octagon_back", "traffic_light"}
)


@dataclass
class SceneConfig:
    """Probabilities of each ingredient (per image unless noted)."""

    size: int = 416
    p_stop: float = 0.6  # image has >= 1 stop sign
    p_second_stop: float = 0.15
    p_confusers_with_stop: float = 0.5
    p_confusers_without_stop: float = 0.85  # else a plain negative
    p_occlusion: float = 0.2  # per sign
    p_motion_blur: float = 0.2
    p_low_light: float = 0.2
    p_glare_at_night: float = 0.6
    p_rain: float = 0.12
    p_noise: float = 0.5
    max_tilt: float = 0.35  # fraction by which one side of the sign shrinks (yaw/pitch)
    confuser_kinds: tuple[str, ...] = ALL_CONFUSERS


@dataclass
class Scene:
    """``image`` (size, size, 3) uint8 BGR; ``stop_xyxy`` (n, 4) float32 pixels; confusers with boxes."""

    image: np.ndarray
    stop_xyxy: np.ndarray
    confusers: list[tuple[str, list[float]]] = field(default_factory=list)

    @property
    def role(self) -> str:
        return "stop" if len(self.stop_xyxy) else ("confuser" if self.confusers else "negative")


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _overlaps(box: np.ndarray, boxes: list[np.ndarray], margin: float = 2.0) -> bool:
    for b in boxes:
        if (
            box[0] < b[2] + margin
            and b[0] < box[2] + margin
            and box[1] < b[3] + margin
            and b[1] < box[3] + margin
        ):
            return True
    return False


def place_sprite(
    img: np.ndarray,
    sprite: Sprite,
    rng: np.random.Generator,
    extent: float,
    centre: tuple[float, float],
    tilt: float,
) -> np.ndarray:
    """Warp ``sprite`` into ``img`` in place; returns its tight (4,) xyxy box in pixels (from the outline).

    ``extent`` is the sign's larger side in pixels; ``tilt`` in [-max, max] foreshortens it (yaw, or
    pitch half of the time) and adds a small roll.
    """
    sh, sw = sprite.bgr.shape[:2]
    src = np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], np.float32)
    k = extent / max(sw, sh)
    half = np.array([sw * k / 2, sh * k / 2], np.float32)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * half
    if rng.random() < 0.5:  # yaw: one vertical edge nearer the camera
        corners[:, 0] *= 1 - abs(tilt) * 0.6
        corners[[1, 2] if tilt > 0 else [0, 3], 1] *= 1 + abs(tilt) * 0.3
    else:  # pitch: sign seen from below
        corners[:, 1] *= 1 - abs(tilt) * 0.5
        corners[[2, 3], 0] *= 1 + abs(tilt) * 0.2
    roll = rng.normal(0, 0.06)
    rot = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]], np.float32)
    dst = corners @ rot.T + np.array(centre, np.float32)
    homography = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    outline = cv2.perspectiveTransform(sprite.outline[None], homography)[0]
    h, w = img.shape[:2]
    x0, y0 = np.floor(dst.min(0)).astype(int)
    x1, y1 = np.ceil(dst.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 > x0 and y1 > y0:
        shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
        local = shift @ homography
        size = (x1 - x0, y1 - y0)
        colour = cv2.warpPerspective(sprite.bgr, local, size, flags=cv2.INTER_LINEAR)
        alpha = cv2.warpPerspective(sprite.alpha, local, size, flags=cv2.INTER_LINEAR)[..., None]
        # Per-sign lighting: faded paint, shade or sun.
        light = rng.uniform(0.55, 1.15) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
        roi = img[y0:y1, x0:x1].astype(np.float32)
        img[y0:y1, x0:x1] = np.clip(roi + alpha * (colour * light - roi), 0, 255).astype(np.uint8)
    box = np.concatenate([outline.min(0), outline.max(0)]).astype(np.float32)
    box[[0, 2]] = box[[0, 2]].clip(0, w)
    box[[1, 3]] = box[[1, 3]].clip(0, h)
    return box


def _pole(img: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> None:
    h = img.shape[0]
    cx = int((box[0] + box[2]) / 2)
    width = max(1, int((box[2] - box[0]) * 0.07))
    grey = float(rng.uniform(70, 170))
    cv2.line(img, (cx, int(box[3])), (cx + int(rng.normal(0, 3)), h), (grey, grey, grey), width)


def _occlude(img: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> None:
    """Cover up to ~35 % of the box from one side with a branch/vehicle-coloured block."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    frac = rng.uniform(0.15, 0.35)
    colour = rng.uniform([10, 40, 10], [90, 120, 90]) if rng.random() < 0.5 else rng.uniform(10, 200, 3)
    side = int(rng.integers(4))
    rect = {
        0: (x0 - 2, y0 - 2, x0 + bw * frac, y1 + 2),
        1: (x1 - bw * frac, y0 - 2, x1 + 2, y1 + 2),
        2: (x0 - 2, y1 - bh * frac, x1 + 2, y1 + 2),
        3: (x0 - 2, y0 - 2, x1 + 2, y0 + bh * frac),
    }[side]
    cv2.rectangle(img, (int(rect[0]), int(rect[1])), (int(rect[2]), int(rect[3])), colour.tolist(), -1)


def render_scene(
    rng: np.random.Generator,
    pool: BackgroundPool,
    library: dict[str, list[Sprite]],
    noise: effects.NoiseTile,
    cfg: SceneConfig,
) -> Scene:
    """One synthetic frame with its stop-sign boxes (occluded signs keep their full box)."""
    size = cfg.size
    img = pool.draw(rng).copy()
    kinds: list[str] = []
    if rng.random() < cfg.p_stop:
        kinds += ["stop_sign"] * (2 if rng.random() < cfg.p_second_stop else 1)
        if rng.random() < cfg.p_confusers_with_stop:
            kinds += list(rng.choice(cfg.confuser_kinds, int(rng.integers(1, 3))))
    elif rng.random() < cfg.p_confusers_without_stop:
        kinds += list(rng.choice(cfg.confuser_kinds, int(rng.integers(1, 4))))
    stops: list[np.ndarray] = []
    placed: list[np.ndarray] = []
    confusers: list[tuple[str, list[float]]] = []
    for kind in kinds:
        variants = library[str(kind)]
        sprite = variants[int(rng.integers(len(variants)))]
        extent = _log_uniform(rng, MIN_SIGN, size / 2)
        for _ in range(10):  # a few tries to find a free spot
            margin = extent * 0.6
            centre = (float(rng.uniform(margin, size - margin)), float(rng.uniform(margin, size - margin)))
            probe = np.array([centre[0] - margin, centre[1] - margin, centre[0] + margin, centre[1] + margin])
            if not _overlaps(probe, placed):
                break
        else:
            continue
        tilt = float(rng.uniform(-cfg.max_tilt, cfg.max_tilt))
        box = place_sprite(img, sprite, rng, extent, centre, tilt)
        placed.append(box)
        if kind in POLE_KINDS and rng.random() < 0.7:
            _pole(img, box, rng)
        if rng.random() < cfg.p_occlusion:
            _occlude(img, box, rng)
        if kind == "stop_sign":
            stops.append(box)
        else:
            confusers.append((str(kind), [round(float(v) / size, 6) for v in box]))
    if rng.random() < cfg.p_motion_blur:
        img = effects.motion_blur(img, rng)
    if rng.random() < cfg.p_low_light:
        img = effects.low_light(img, rng)
        if rng.random() < cfg.p_glare_at_night:
            img = effects.glare(img, rng)
    if rng.random() < cfg.p_rain:
        img = effects.rain(img, rng)
    if rng.random() < cfg.p_noise:
        img = noise.apply(img, rng, float(rng.uniform(2, 10)))
    return Scene(img, np.array(stops, np.float32).reshape(-1, 4), confusers)
