"""Training augmentations on BGR uint8 images with pixel-space labels, driven by an explicit RNG.

Labels here are (n, 5) float32 rows ``cls x1 y1 x2 y2`` in pixels of the image they go with.
Every function takes a ``numpy.random.Generator`` so a sample is a pure function of its seed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from stopsign.train.data.corruptions import CORRUPTIONS, MAX_SEVERITY

PAD_VALUE = 114


def hsv_jitter(
    image: np.ndarray, h_gain: float, s_gain: float, v_gain: float, rng: np.random.Generator
) -> None:
    """Random hue/saturation/value gains in [1 - gain, 1 + gain], applied in place through LUTs."""
    if not (h_gain or s_gain or v_gain):
        return
    gains = rng.uniform(-1, 1, 3) * np.array([h_gain, s_gain, v_gain]) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_hue = ((x * gains[0]) % 180).astype(np.uint8)  # OpenCV hue is 0..179
    lut_sat = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    merged = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(merged, cv2.COLOR_HSV2BGR, dst=image)


def affine_matrix(
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    degrees: float,
    translate: float,
    scale: float,
    shear: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """3x3 matrix: centre the input, rotate+scale, shear, then move to a jittered output centre.

    ``in_size``/``out_size`` are (h, w). Scale gain in [1 - scale, 1 + scale]; translation is
    a fraction of the output size around its centre.
    """
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -in_size[1] / 2, -in_size[0] / 2
    rotate = np.eye(3)
    angle, gain = rng.uniform(-degrees, degrees), rng.uniform(1 - scale, 1 + scale)
    rotate[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=gain)
    shear_m = np.eye(3)
    shear_m[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
    shear_m[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    move = np.eye(3)
    move[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_size[1]
    move[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_size[0]
    return move @ shear_m @ rotate @ centre


def transform_boxes(xyxy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(n, 4) boxes -> the axis-aligned boxes around their four transformed corners."""
    n = len(xyxy)
    if n == 0:
        return xyxy.reshape(0, 4).astype(np.float32)
    corners = np.ones((n * 4, 3))
    corners[:, :2] = xyxy[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)
    moved = (corners @ matrix.T)[:, :2].reshape(n, 8)
    xs, ys = moved[:, 0::2], moved[:, 1::2]
    return np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1).astype(np.float32)


def box_candidates(
    before: np.ndarray,
    after: np.ndarray,
    gain: float = 1.0,
    min_side: float = 2.0,
    min_area_ratio: float = 0.1,
    max_aspect: float = 20.0,
) -> np.ndarray:
    """Boxes worth keeping after a transform: > ``min_side`` px, > 10% of their area times the
    warp's area ``gain`` (the rest was cropped away), and not slivers. Returns a (n,) bool mask."""
    w0, h0 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w1, h1 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    eps = 1e-16
    aspect = np.maximum(w1 / (h1 + eps), h1 / (w1 + eps))
    area_ratio = w1 * h1 / (w0 * h0 * gain + eps)
    return (w1 > min_side) & (h1 > min_side) & (area_ratio > min_area_ratio) & (aspect < max_aspect)


def random_affine(
    image: np.ndarray,
    labels: np.ndarray,
    out_size: tuple[int, int],
    rng: np.random.Generator,
    degrees: float = 0.0,
    translate: float = 0.1,
    scale: float = 0.5,
    shear: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` to ``out_size`` (h, w) with a random affine; boxes follow, clipped and filtered."""
    matrix = affine_matrix(image.shape[:2], out_size, degrees, translate, scale, shear, rng)
    warped = cv2.warpAffine(image, matrix[:2], dsize=(out_size[1], out_size[0]), borderValue=(PAD_VALUE,) * 3)
    if len(labels) == 0:
        return warped, labels.reshape(0, 5)
    boxes = transform_boxes(labels[:, 1:5], matrix)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, out_size[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, out_size[0])
    area_gain = float(abs(np.linalg.det(matrix[:2, :2])))  # how much the warp scales areas
    keep = box_candidates(labels[:, 1:5], boxes, gain=area_gain)
    out = np.concatenate([labels[keep, :1], boxes[keep]], axis=1).astype(np.float32)
    return warped, out


def mosaic(
    images: list[np.ndarray], labels: list[np.ndarray], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Four images around a random centre of a 2*size canvas (top-left, top-right, bottom-left,
    bottom-right). Returns the (2s, 2s, 3) canvas and its labels in canvas pixels, clipped."""
    if len(images) != 4 or len(labels) != 4:
        raise ValueError(f"mosaic needs 4 images and 4 label arrays, got {len(images)} and {len(labels)}")
    canvas = np.full((2 * size, 2 * size, 3), PAD_VALUE, np.uint8)
    xc, yc = (int(v) for v in rng.uniform(size / 2, 3 * size / 2, 2))
    out_labels = []
    for k, (image, boxes) in enumerate(zip(images, labels)):
        h, w = image.shape[:2]
        # Canvas region (x1a..x2a, y1a..y2a) and the matching image region (x1b..x2b, y1b..y2b).
        if k == 0:
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b = w - (x2a - x1a), h - (y2a - y1a)
        elif k == 1:
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * size), yc
            x1b, y1b = 0, h - (y2a - y1a)
        elif k == 2:
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(2 * size, yc + h)
            x1b, y1b = w - (x2a - x1a), 0
        else:
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * size), min(2 * size, yc + h)
            x1b, y1b = 0, 0
        x2b, y2b = x1b + (x2a - x1a), y1b + (y2a - y1a)
        canvas[y1a:y2a, x1a:x2a] = image[y1b:y2b, x1b:x2b]
        if len(boxes):
            shifted = boxes.copy()
            shifted[:, [1, 3]] += x1a - x1b
            shifted[:, [2, 4]] += y1a - y1b
            out_labels.append(shifted)
    merged = np.concatenate(out_labels, 0) if out_labels else np.zeros((0, 5), np.float32)
    merged[:, 1:5] = merged[:, 1:5].clip(0, 2 * size)
    return canvas, merged.astype(np.float32)


def flip(image: np.ndarray, labels: np.ndarray, horizontal: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the image and its pixel boxes left-right (``horizontal``) or top-bottom."""
    labels = labels.copy()
    if horizontal:
        w = image.shape[1]
        labels[:, [1, 3]] = w - labels[:, [3, 1]]
        return np.ascontiguousarray(image[:, ::-1]), labels
    h = image.shape[0]
    labels[:, [2, 4]] = h - labels[:, [4, 2]]
    return np.ascontiguousarray(image[::-1]), labels


def camera_corruption(
    image: np.ndarray,
    probability: float,
    severity_range: tuple[float, float],
    rng: np.random.Generator,
    names: tuple[str, ...] = tuple(CORRUPTIONS),
) -> tuple[np.ndarray, str | None]:
    """With ``probability``, one camera corruption (``stopsign.train.data.corruptions``: fog,
    exposure, glare, blur, rain, dirt, compression...) picked uniformly from ``names``, at a
    severity drawn uniformly from ``severity_range`` (0-5, fractions allowed). Boxes are unchanged
    (the corruptions are photometric or blur in place). Returns (image, the corruption's name or
    None). With ``probability`` 0 nothing is drawn from ``rng``, so older seeds stay repeatable."""
    low, high = severity_range
    if not 0 <= low <= high <= MAX_SEVERITY:
        raise ValueError(
            f"corruption severity range must satisfy 0 <= low <= high <= {MAX_SEVERITY}, got {severity_range}"
        )
    if probability <= 0 or rng.random() >= probability:
        return image, None
    name = names[int(rng.integers(len(names)))]
    severity = float(rng.uniform(low, high))
    return CORRUPTIONS[name](image, severity, rng), name
