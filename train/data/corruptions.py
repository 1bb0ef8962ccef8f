"""What a car's camera sees on a bad day: seeded image corruptions at severities 0-5.

Every corruption is a pure function ``(image, severity, rng) -> image``:

* ``image``: BGR uint8 (h, w, 3), never modified; the result has the same shape and dtype.
* ``severity``: 0 (the image itself, a copy) to 5 (worst). Integers are the benchmark's levels
  (``bench/corruptions.py``, after ImageNet-C); fractional values interpolate each corruption's
  parameter table, so training (``train/augment.py``) can draw severities from a continuous range.
* ``rng``: ``numpy.random.Generator``. Each function draws the same random numbers whatever the
  severity, so one seed gives one scene (sun position, rain drops, dirt blobs) that only gets
  worse as the severity grows.

Sizes (blur lengths, glare radius, dirt blobs) are fractions of the image's longer side, so a
severity means the same on a 400-px photo and a 1360-px car frame.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

MAX_SEVERITY = 5
Corruption = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]

# sRGB-ish transfer as a plain 2.2 gamma: exposure and glare add light in linear units.
_TO_LINEAR = ((np.arange(256, dtype=np.float32) / 255.0) ** 2.2).astype(np.float32)


def _check(image: np.ndarray, severity: float) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"corruption: image must be uint8 (h, w, 3) BGR, got {got}")
    if not 0 <= float(severity) <= MAX_SEVERITY:
        raise ValueError(f"corruption: severity must be in [0, {MAX_SEVERITY}], got {severity!r}")


def _level(table: tuple[float, ...], severity: float) -> float:
    """The parameter for ``severity`` from a 6-entry table (severity 0..5), linearly interpolated."""
    return float(np.interp(float(severity), np.arange(len(table)), table))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def _linear(image: np.ndarray) -> np.ndarray:
    return _TO_LINEAR[image]


def _from_linear(linear: np.ndarray) -> np.ndarray:
    return _to_uint8(255.0 * np.clip(linear, 0, 1) ** (1 / 2.2))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int = 6) -> np.ndarray:
    """(h, w) float32 low-frequency noise in about [0, 1] (patchy fog, uneven dirt)."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def fog(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Haze or fog: contrast pulled toward a bright airlight, more with depth up the image.

    Koschmieder's law ``I t + A (1 - t)`` with transmission ``t = exp(-beta d)``; the depth ``d``
    grows from the bottom (the road just ahead) to the top (the horizon and sky) and is patchy."""
    _check(image, severity)
    h, w = image.shape[:2]
    patches = _smooth_field(rng, (h, w))
    tint = rng.uniform(-6, 6, 3).astype(np.float32)
    if severity == 0:
        return image.copy()
    beta = _level((0.0, 0.45, 0.9, 1.4, 2.0, 2.8), severity)
    rows = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None]  # 1 at the top of the image
    depth = (0.35 + 0.9 * rows) * (0.75 + 0.5 * patches)
    transmission = np.exp(-beta * depth)[..., None]
    airlight = np.float32(232) + tint
    return _to_uint8(image.astype(np.float32) * transmission + airlight * (1 - transmission))


def overexposure(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Washed out: exposure gain in linear light, highlights clipping to white."""
    _check(image, severity)
    if severity == 0:
        return image.copy()
    gain = _level((1.0, 1.8, 2.8, 4.0, 5.5, 7.5), severity)
    return _from_linear(_linear(image) * gain)


def underexposure(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Too dark, with the sensor noise of the dark: exposure cut in linear light, then shot noise
    (variance proportional to the signal) and read noise, as a camera's gain amplifies them."""
    _check(image, severity)
    normal = rng.standard_normal(image.shape).astype(np.float32)
    if severity == 0:
        return image.copy()
    gain = _level((1.0, 0.45, 0.25, 0.14, 0.08, 0.045), severity)
    read_noise = _level((0.0, 0.002, 0.004, 0.006, 0.008, 0.01), severity)
    signal = _linear(image) * gain
    sigma = np.sqrt(signal * 0.002 * (1 + 4 * (1 - gain)) + read_noise**2)
    return _from_linear(signal + sigma * normal)


def low_contrast(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Flat light: every pixel pulled toward the image's mean grey."""
    _check(image, severity)
    if severity == 0:
        return image.copy()
    keep = _level((1.0, 0.55, 0.4, 0.28, 0.19, 0.12), severity)
    pixels = image.astype(np.float32)
    mean = pixels.mean(axis=(0, 1), keepdims=True)
    return _to_uint8(mean + (pixels - mean) * keep)


def colour_cast(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Wrong white balance: per-channel gains along a random warm/cool and green/magenta axis."""
    _check(image, severity)
    warm, green = rng.uniform(-1, 1, 2)
    norm = max(float(np.hypot(warm, green)), 1e-6)
    warm, green = warm / norm, green / norm
    if severity == 0:
        return image.copy()
    amount = _level((0.0, 0.12, 0.22, 0.32, 0.43, 0.55), severity)
    gains = np.array(  # B, G, R
        [1 - amount * warm, 1 + 0.6 * amount * green, 1 + amount * warm], np.float32
    )
    return _to_uint8(image.astype(np.float32) * gains.clip(0.2, None))


def glare(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Sun glare and a veiling flare: a bright sun bloom in the upper part of the frame plus light
    scattered over the whole lens, added in linear light (a low sun in front of the car)."""
    _check(image, severity)
    h, w = image.shape[:2]
    centre = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.0, 0.45) * h], np.float32)
    tone = rng.uniform(0.9, 1.0, 3).astype(np.float32)  # slightly warm or neutral sunlight
    tone[2] = 1.0
    if severity == 0:
        return image.copy()
    side = float(max(h, w))
    radius = _level((0.0, 0.08, 0.12, 0.16, 0.21, 0.27), severity) * side
    strength = _level((0.0, 0.5, 0.9, 1.4, 2.0, 2.8), severity)
    veil = _level((0.0, 0.04, 0.08, 0.13, 0.19, 0.26), severity)
    ys, xs = np.ogrid[:h, :w]
    distance = np.sqrt((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2, dtype=np.float32)
    bloom = strength * np.exp(-distance / radius) + veil
    return _from_linear(_linear(image) + bloom[..., None] * tone)


def motion_blur(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Camera shake or a slow shutter while driving: a line kernel at a random angle."""
    _check(image, severity)
    angle = rng.uniform(-30, 30)
    if severity == 0:
        return image.copy()
    length = _level((0.0, 0.008, 0.015, 0.025, 0.037, 0.05), severity) * max(image.shape[:2])
    return cv2.filter2D(image, -1, _line_kernel(length, angle), borderType=cv2.BORDER_REFLECT)


def _line_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Normalised kernel of a centred line segment ``length`` px long, splatted bilinearly at
    sub-pixel steps, so even a blur under a pixel long is a blur that grows with ``length``."""
    half = int(np.ceil(length / 2)) + 1
    size = 2 * half + 1
    t = np.linspace(-length / 2, length / 2, max(2, int(np.ceil(length * 4)) + 1))
    xs = half + t * np.cos(np.deg2rad(angle_deg))
    ys = half + t * np.sin(np.deg2rad(angle_deg))
    kernel = np.zeros((size + 1, size + 1), np.float32)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, weight in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        np.add.at(kernel, (y0 + dy, x0 + dx), weight)
    kernel = kernel[:size, :size]
    return kernel / kernel.sum()


def defocus(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Out of focus: a disc (aperture) kernel."""
    _check(image, severity)
    if severity == 0:
        return image.copy()
    radius = _level((0.0, 0.003, 0.006, 0.01, 0.014, 0.019), severity) * max(image.shape[:2])
    half = int(np.ceil(radius + 1))
    ys, xs = np.mgrid[-half : half + 1, -half : half + 1]
    # Soft-edged disc: edge pixels weigh by how far inside the rim they lie, so the blur grows
    # smoothly with the radius even below a pixel.
    kernel = np.clip(radius + 1 - np.sqrt(xs**2 + ys**2), 0, 1).astype(np.float32)
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def rain(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Rain streaks: bright, blurred, slanted lines over a slightly darker, softer scene."""
    _check(image, severity)
    h, w = image.shape[:2]
    most = int(1200 * h * w / (640 * 480)) + 1
    starts = rng.random((most, 2)) * np.array([w, h])
    lengths = rng.uniform(0.02, 0.06, most) * max(h, w)
    angle = np.deg2rad(rng.uniform(-20, 20))
    if severity == 0:
        return image.copy()
    count = round(_level((0.0, 0.15, 0.3, 0.5, 0.75, 1.0), severity) * most)
    brightness = _level((0.0, 0.35, 0.45, 0.55, 0.65, 0.75), severity)
    darken = _level((1.0, 0.95, 0.9, 0.85, 0.8, 0.75), severity)
    ends = starts + lengths[:, None] * np.array([np.sin(angle), np.cos(angle)])
    layer = np.zeros((h, w), np.float32)
    lines = [np.array([s, e], np.int32).reshape(-1, 1, 2) for s, e in zip(starts[:count], ends[:count])]
    cv2.polylines(layer, lines, isClosed=False, color=1.0, thickness=max(1, round(max(h, w) / 640)))
    layer = cv2.GaussianBlur(layer, (0, 0), max(h, w) / 900)[..., None].clip(0, 1) * brightness
    scene = cv2.GaussianBlur(image, (0, 0), 0.3 + 0.2 * severity).astype(np.float32) * darken
    return _to_uint8(scene * (1 - layer) + 220.0 * layer)


def dirty_windscreen(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Smudges and dust on the glass, out of focus: blurred, greyish-brown, light-scattering blobs."""
    _check(image, severity)
    h, w = image.shape[:2]
    most = 24
    centres = rng.random((most, 2)).astype(np.float32)
    radii = rng.uniform(0.04, 0.14, most).astype(np.float32)
    opacity = rng.uniform(0.5, 1.0, most).astype(np.float32)
    dirt = np.array([rng.uniform(120, 170), rng.uniform(140, 180), rng.uniform(150, 190)], np.float32)
    if severity == 0:
        return image.copy()
    count = round(_level((0, 6, 10, 14, 19, 24), severity))
    strength = _level((0.0, 0.35, 0.5, 0.62, 0.75, 0.85), severity)
    film = _level((0.0, 0.03, 0.06, 0.09, 0.12, 0.15), severity)
    # The mask is built on a small grid (blobs are smooth) and resized: cheap on large frames.
    gh, gw = max(8, round(64 * h / max(h, w))), max(8, round(64 * w / max(h, w)))
    ys, xs = np.mgrid[:gh, :gw].astype(np.float32)
    mask = np.zeros((gh, gw), np.float32)
    for (cx, cy), r, a in zip(centres[:count], radii[:count], opacity[:count]):
        mask += a * np.exp(
            -(((xs / gw - cx) * w / max(h, w)) ** 2 + ((ys / gh - cy) * h / max(h, w)) ** 2) / r**2
        )
    mask = cv2.resize(mask.clip(0, 1), (w, h), interpolation=cv2.INTER_LINEAR)[..., None] * strength
    pixels = image.astype(np.float32)
    blurred = cv2.GaussianBlur(pixels, (0, 0), max(h, w) / 200)
    through = pixels * (1 - mask) + blurred * mask
    return _to_uint8((through * (1 - mask) + dirt * mask) * (1 - film) + 255.0 * film)


def jpeg(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """JPEG compression at a low quality (blocking, ringing, chroma loss)."""
    _check(image, severity)
    if severity == 0:
        return image.copy()
    quality = round(_level((100, 30, 20, 14, 9, 5), severity))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"jpeg corruption: OpenCV could not encode a {image.shape} image")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def _dct_matrix(n: int = 8) -> np.ndarray:
    k, i = np.mgrid[:n, :n]
    m = np.sqrt(2 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    m[0] /= np.sqrt(2)
    return m.astype(np.float32)


_DCT8 = _dct_matrix(8)


def _quantise_blocks(plane: np.ndarray, step: float) -> np.ndarray:
    """8x8 DCT of a float plane (sides multiples of 8), flat dead-zone quantisation, inverse."""
    h, w = plane.shape
    blocks = plane.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)
    coeffs = _DCT8 @ blocks @ _DCT8.T
    # Dead zone with a 1/6 rounding offset, as H.264 encoders quantise inter blocks: small
    # coefficients vanish, so flat areas turn into flat blocks.
    levels = np.sign(coeffs) * np.floor(np.abs(coeffs) / step + 1 / 6)
    restored = _DCT8.T @ (levels * step) @ _DCT8
    return restored.transpose(0, 2, 1, 3).reshape(h, w)


def h264_blocks(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """H.264-like artefacts at a low bit rate: 4:2:0 chroma, 8x8 transform blocks with a flat,
    dead-zone quantiser (no deblocking filter, as on a starved stream's worst frames)."""
    _check(image, severity)
    if severity == 0:
        return image.copy()
    step = _level((1.0, 14, 22, 32, 46, 64), severity)
    h, w = image.shape[:2]
    ph, pw = -h % 16, -w % 16  # macroblocks of 16 px: luma 8x8 blocks, chroma at half size
    padded = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    ycc = cv2.cvtColor(padded, cv2.COLOR_BGR2YCrCb).astype(np.float32) - 128
    luma = _quantise_blocks(ycc[..., 0], step)
    size = (padded.shape[1], padded.shape[0])
    chroma = []
    for c in (1, 2):
        half = cv2.resize(ycc[..., c], (size[0] // 2, size[1] // 2), interpolation=cv2.INTER_AREA)
        chroma.append(cv2.resize(_quantise_blocks(half, step * 1.4), size, interpolation=cv2.INTER_LINEAR))
    merged = _to_uint8(np.dstack([luma, *chroma]) + 128)
    return cv2.cvtColor(merged, cv2.COLOR_YCrCb2BGR)[:h, :w].copy()


CORRUPTIONS: dict[str, Corruption] = {
    "fog": fog,
    "overexposure": overexposure,
    "underexposure": underexposure,
    "low_contrast": low_contrast,
    "colour_cast": colour_cast,
    "glare": glare,
    "motion_blur": motion_blur,
    "defocus": defocus,
    "rain": rain,
    "dirty_windscreen": dirty_windscreen,
    "jpeg": jpeg,
    "h264_blocks": h264_blocks,
}


def corrupt(name: str, image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Apply the corruption called ``name`` (a key of ``CORRUPTIONS``)."""
    try:
        fn = CORRUPTIONS[name]
    except KeyError:
        raise ValueError(f"unknown corruption {name!r} (known: {', '.join(CORRUPTIONS)})") from None
    return fn(image, severity, rng)
