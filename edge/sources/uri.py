"""Parse a ``--source`` / ``--camera`` string into a :class:`SourceURI`.

Accepted forms: ``/dev/videoN``, ``v4l2:///dev/videoN``, a bare camera number ``N``, ``csi://N``,
``file://path`` (or a path to a video file), ``drive://folder`` (a recorded drive), ``rtsp://...``,
``test://?pattern=ball&fps=30&size=640x480&num-buffers=N&live=1``, ``gst://<launch line>``, a
folder of still images, and a ROS bag: ``bag://PATH?topic=/camera/image_raw/compressed&info=
/camera/camera_info&realtime=1``, or a plain path to a ``.mcap`` / ROS 1 ``.bag`` file or a rosbag2
folder (one with ``metadata.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

KINDS = ("v4l2", "csi", "file", "drive", "rtsp", "test", "gst", "images", "bag")
LIVE_KINDS = ("v4l2", "csi", "rtsp")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
TEST_OPTIONS = ("pattern", "fps", "size", "num-buffers", "live")
BAG_OPTIONS = ("topic", "info", "realtime")
BAG_SUFFIXES = (".mcap", ".bag")


class SourceURIError(ValueError):
    """A source string cannot be understood; the message quotes it."""


@dataclass(frozen=True)
class SourceURI:
    """A parsed source.

    Attributes:
        kind: one of ``KINDS``.
        target: device path (v4l2), sensor id (csi), file or folder path (file, drive, images),
            URL (rtsp), launch line (gst); empty for test.
        options: ``test://`` or ``bag://`` query options (strings), validated.
        text: the string as given.
    """

    kind: str
    target: str
    text: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_camera(self) -> bool:
        return self.kind in ("v4l2", "csi")


def parse_size(text: str, what: str = "size") -> tuple[int, int]:
    """``"640x480"`` -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SourceURIError(f"{what} must look like 640x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise SourceURIError(f"{what} must be positive, got {text!r}")
    return w, h


def _test_options(query: str, text: str) -> dict[str, str]:
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = sorted(set(options) - set(TEST_OPTIONS))
    if unknown:
        raise SourceURIError(f"{text!r}: unknown test:// options {unknown}; known: {list(TEST_OPTIONS)}")
    for key in ("fps", "num-buffers"):
        if key in options and not options[key].lstrip("-").isdigit():
            raise SourceURIError(f"{text!r}: {key} must be an integer, got {options[key]!r}")
    if "fps" in options and int(options["fps"]) <= 0:
        raise SourceURIError(f"{text!r}: fps must be > 0")
    if "size" in options:
        parse_size(options["size"], f"{text!r} size")
    if "live" in options and options["live"] not in ("0", "1", "true", "false"):
        raise SourceURIError(f"{text!r}: live must be 0/1/true/false, got {options['live']!r}")
    return options


def _bag_options(query: str, text: str) -> dict[str, str]:
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = sorted(set(options) - set(BAG_OPTIONS))
    if unknown:
        raise SourceURIError(f"{text!r}: unknown bag:// options {unknown}; known: {list(BAG_OPTIONS)}")
    if "realtime" in options and options["realtime"] not in ("0", "1", "true", "false"):
        raise SourceURIError(f"{text!r}: realtime must be 0/1/true/false, got {options['realtime']!r}")
    for key in ("topic", "info"):
        if key in options and not options[key].startswith("/"):
            raise SourceURIError(
                f"{text!r}: {key} must be a topic name starting with '/', got {options[key]!r}"
            )
    return options


def is_bag_path(path: Path) -> bool:
    """A ``.mcap`` or ROS 1 ``.bag`` file, or a rosbag2 folder (it holds ``metadata.yaml``)."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.suffix.lower() in BAG_SUFFIXES


def parse_source_uri(text: str) -> SourceURI:
    """Parse ``text``; raises :class:`SourceURIError` naming the string when it is not understood."""
    text = text.strip()
    if not text:
        raise SourceURIError("empty source; give e.g. /dev/video0, file://drive.mp4 or test://")
    if text.isdigit():
        return SourceURI("v4l2", f"/dev/video{text}", text)
    if text.startswith("/dev/video"):
        return SourceURI("v4l2", text, text)
    scheme, sep, rest = text.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme == "v4l2":
            if not rest.startswith("/dev/"):
                raise SourceURIError(f"{text!r}: expected v4l2:///dev/videoN")
            return SourceURI("v4l2", rest, text)
        if scheme == "csi":
            if not rest.isdigit():
                raise SourceURIError(f"{text!r}: expected csi://N with a sensor number")
            return SourceURI("csi", rest, text)
        if scheme in ("file", "drive"):
            if not rest:
                raise SourceURIError(f"{text!r}: no path after {scheme}://")
            return SourceURI(scheme, rest, text)
        if scheme in ("rtsp", "rtsps"):
            return SourceURI("rtsp", text, text)
        if scheme == "test":
            return SourceURI("test", "", text, _test_options(rest.lstrip("?"), text))
        if scheme == "bag":
            target, _, query = rest.partition("?")
            if not target:
                raise SourceURIError(f"{text!r}: no path after bag://")
            return SourceURI("bag", target, text, _bag_options(query, text))
        if scheme == "gst":
            if not rest.strip():
                raise SourceURIError(f"{text!r}: no launch line after gst://")
            return SourceURI("gst", rest.strip(), text)
        raise SourceURIError(
            f"{text!r}: unknown source scheme {scheme!r}; use /dev/videoN, v4l2://, csi://, file://, "
            "drive://, rtsp://, test://, gst:// or bag://"
        )
    path = Path(text)
    if is_bag_path(path) and path.exists():
        return SourceURI("bag", text, text)
    if path.is_dir():
        if (path / "frames.jsonl").is_file():
            return SourceURI("drive", text, text)
        return SourceURI("images", text, text)
    if path.is_file():
        return SourceURI("file", text, text)
    raise SourceURIError(
        f"{text!r}: no such file or folder, and not a source URI (/dev/videoN, file://, test://, ...)"
    )


def list_images(folder: str | Path) -> list[Path]:
    """Still images in ``folder`` (not recursive), sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
