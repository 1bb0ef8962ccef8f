"""``sensor_msgs`` images to BGR frames and back.

Decoded straight into the (H, W, 3) uint8 BGR frame the loop takes: JPEG/PNG through
``cv2.imdecode``; raw ``Image`` encodings through one ``cv2.cvtColor`` on a view of the message
buffer (no intermediate copy). Errors are :class:`ImageDecodeError` with the reason; the caller
adds the topic and stamp.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# encoding -> (channels of the stored layout, the cvtColor code to BGR, or None: already BGR)
RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "bgr8": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "mono8": (1, cv2.COLOR_GRAY2BGR),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
    # ROS's yuv422 is UYVY byte order; yuv422_yuy2 (and the V4L2 name yuyv) is YUYV.
    "yuv422": (2, cv2.COLOR_YUV2BGR_UYVY),
    "uyvy": (2, cv2.COLOR_YUV2BGR_UYVY),
    "yuv422_yuy2": (2, cv2.COLOR_YUV2BGR_YUYV),
    "yuyv": (2, cv2.COLOR_YUV2BGR_YUYV),
    # OpenCV names Bayer patterns by the second row's first two pixels: RGGB is its BayerBG.
    "bayer_rggb8": (1, cv2.COLOR_BayerBG2BGR),
    "bayer_bggr8": (1, cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg8": (1, cv2.COLOR_BayerGR2BGR),
    "bayer_grbg8": (1, cv2.COLOR_BayerGB2BGR),
}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


class ImageDecodeError(ValueError):
    """A message's image cannot be decoded; the message says why (encoding, size, data)."""


def decode_compressed(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg or png; ``format`` as image_transport writes it,
    e.g. ``"bgr8; jpeg compressed bgr8"``) -> BGR image."""
    fmt = str(msg.format).lower()
    if not any(name in fmt for name in COMPRESSED_FORMATS):
        raise ImageDecodeError(f"unknown compressed format {msg.format!r} (known: jpeg, png)")
    data = np.asarray(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageDecodeError(f"empty {msg.format!r} image data")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageDecodeError(f"{len(data)} bytes of {msg.format!r} data do not decode")
    return image


def decode_raw(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/Image`` in one of ``RAW_ENCODINGS`` -> BGR image."""
    encoding = str(msg.encoding).lower()
    if encoding not in RAW_ENCODINGS:
        raise ImageDecodeError(f"unknown encoding {msg.encoding!r} (known: {', '.join(RAW_ENCODINGS)})")
    channels, code = RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"{encoding} image of size {width}x{height}")
    if step < width * channels or data.size < step * height:
        raise ImageDecodeError(
            f"{encoding} {width}x{height}: step {step}, {data.size} bytes of data, "
            f"need {width * channels} x {height}"
        )
    rows = data[: step * height].reshape(height, step)[:, : width * channels]
    plane = rows.reshape(height, width, channels) if channels > 1 else rows
    if code is None:
        return np.ascontiguousarray(plane)
    return cv2.cvtColor(plane, code)


def decode_image(msgtype: str, msg: Any) -> np.ndarray:
    """Either image type -> (H, W, 3) uint8 BGR."""
    if msgtype.endswith("CompressedImage"):
        return decode_compressed(msg)
    return decode_raw(msg)


def encode_compressed(image: np.ndarray, fmt: str = "jpeg", jpeg_quality: int = 90) -> tuple[str, bytes]:
    """BGR image -> (``format`` field, bytes) of a CompressedImage: ``jpeg`` or ``png`` (lossless)."""
    if fmt == "jpeg":
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    elif fmt == "png":
        ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        raise ValueError(f"image format must be jpeg or png, got {fmt!r}")
    if not ok:
        raise ImageDecodeError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return fmt, data.tobytes()
