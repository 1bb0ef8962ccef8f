"""GStreamer launch lines for each source kind (pure functions: testable without GStreamer).

Every line ends where raw video leaves the source part; :data:`APPSINK_TAIL` converts it to BGR
for the ``appsink`` that :class:`~stopsign.edge.sources.gst.GstSource` reads. On a Jetson (when
``nvvidconv`` and friends are registered) decoding and conversion use the hardware elements.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from stopsign.edge.sources.uri import SourceURI, SourceURIError, parse_size

SINK_NAME = "edge_sink"
APPSINK_TAIL = f"videoconvert ! video/x-raw,format=BGR ! appsink name={SINK_NAME}"
# Elements that change the graph on a Jetson.
JETSON_ELEMENTS = ("nvv4l2decoder", "nvjpegdec", "nvvidconv", "nvarguscamerasrc")
# Hardware video decoders, most preferred first, with the platform each stands for. The source
# ranks the registered ones above the software decoders, so decodebin takes them for files and
# RTSP (the stream's codec permitting) and falls back to software otherwise.
HARDWARE_DECODERS = (
    ("nvv4l2decoder", "NVIDIA Jetson"),
    ("vah264dec", "VA-API (Intel, AMD)"),
    ("vah265dec", "VA-API (Intel, AMD)"),
    ("vaapih264dec", "VA-API, gstreamer-vaapi (Intel)"),
    ("vaapih265dec", "VA-API, gstreamer-vaapi (Intel)"),
)
# Every element whose presence changes what a source builds: looked up once in the registry.
KNOWN_ELEMENTS = tuple(dict.fromkeys(JETSON_ELEMENTS + tuple(name for name, _ in HARDWARE_DECODERS)))


def preferred_decoders(elements: Collection[str]) -> list[str]:
    """The registered hardware decoders in order of preference (empty: software decoding)."""
    return [name for name, _ in HARDWARE_DECODERS if name in elements]


@dataclass(frozen=True)
class CameraOptions:
    """Requested camera mode: (width, height) in pixels and frames per second (None: the device's)."""

    size: tuple[int, int] | None = None
    fps: int | None = None


@dataclass(frozen=True)
class LaunchCandidate:
    """One way to open a source: ``description`` names it in logs (e.g. "MJPG 1280x720@30")."""

    description: str
    line: str


def _caps(media: str, camera: CameraOptions, extra: str = "") -> str:
    parts = [media + extra]
    if camera.size:
        parts += [f"width={camera.size[0]}", f"height={camera.size[1]}"]
    if camera.fps:
        parts.append(f"framerate={camera.fps}/1")
    return ",".join(parts)


def _mode(camera: CameraOptions) -> str:
    size = f" {camera.size[0]}x{camera.size[1]}" if camera.size else ""
    fps = f"@{camera.fps}" if camera.fps else ""
    return size + fps


def v4l2_candidates(device: str, camera: CameraOptions, elements: Collection[str]) -> list[LaunchCandidate]:
    """MJPG first (most USB cameras reach full rate only compressed), then raw YUYV, then anything."""
    src = f"v4l2src device={shlex.quote(device)}"
    if "nvv4l2decoder" in elements and "nvvidconv" in elements:
        jpeg_decode = "nvv4l2decoder mjpeg=1 ! nvvidconv ! video/x-raw,format=BGRx"
    elif "nvjpegdec" in elements and "nvvidconv" in elements:
        jpeg_decode = "nvjpegdec ! nvvidconv ! video/x-raw,format=BGRx"
    else:
        jpeg_decode = "jpegdec"
    mode = _mode(camera)
    return [
        LaunchCandidate(f"MJPG{mode}", f"{src} ! {_caps('image/jpeg', camera)} ! {jpeg_decode}"),
        LaunchCandidate(f"YUYV{mode}", f"{src} ! {_caps('video/x-raw', camera, ',format=YUY2')}"),
        LaunchCandidate("device default", src),
    ]


def csi_candidates(sensor: str, camera: CameraOptions, elements: Collection[str]) -> list[LaunchCandidate]:
    if "nvarguscamerasrc" not in elements or "nvvidconv" not in elements:
        raise SourceURIError(
            f"csi://{sensor} needs nvarguscamerasrc and nvvidconv (NVIDIA JetPack's GStreamer plugins), "
            "which are not installed here"
        )
    caps = _caps("video/x-raw(memory:NVMM)", camera)
    line = f"nvarguscamerasrc sensor-id={sensor} ! {caps} ! nvvidconv ! video/x-raw,format=BGRx"
    return [LaunchCandidate(f"CSI sensor {sensor}{_mode(camera)}", line)]


def _decode(elements: Collection[str]) -> str:
    # decodebin picks nvv4l2decoder by rank on a Jetson; its NVMM output needs nvvidconv.
    return "decodebin ! nvvidconv ! video/x-raw,format=BGRx" if "nvvidconv" in elements else "decodebin"


def file_candidates(path: str | Path, elements: Collection[str]) -> list[LaunchCandidate]:
    path = Path(path)
    if not path.is_file():
        raise SourceURIError(f"{path}: no such video file")
    location = shlex.quote(str(path.resolve()))
    return [LaunchCandidate(f"file {path}", f"filesrc location={location} ! {_decode(elements)}")]


def rtsp_candidates(url: str, elements: Collection[str]) -> list[LaunchCandidate]:
    return [LaunchCandidate("rtsp", f"rtspsrc location={shlex.quote(url)} latency=100 ! {_decode(elements)}")]


def test_candidates(options: dict[str, str]) -> list[LaunchCandidate]:
    """videotestsrc; live (paced at ``fps``) unless ``live=0``. Default: moving ball, 640x480@30."""
    pattern = options.get("pattern", "ball")
    fps = int(options.get("fps", "30"))
    width, height = parse_size(options.get("size", "640x480"))
    live = options.get("live", "1") in ("1", "true")
    num = f" num-buffers={int(options['num-buffers'])}" if "num-buffers" in options else ""
    line = (
        f"videotestsrc pattern={pattern} is-live={str(live).lower()}{num} ! "
        f"video/x-raw,width={width},height={height},framerate={fps}/1"
    )
    return [LaunchCandidate(f"test {pattern} {width}x{height}@{fps}", line)]


def candidates_for(
    uri: SourceURI, camera: CameraOptions, elements: Collection[str], video_path: Path | None = None
) -> list[LaunchCandidate]:
    """Launch lines to try in order for ``uri`` (``video_path``: the drive's video for drive://)."""
    if uri.kind == "v4l2":
        return v4l2_candidates(uri.target, camera, elements)
    if uri.kind == "csi":
        return csi_candidates(uri.target, camera, elements)
    if uri.kind == "file":
        return file_candidates(uri.target, elements)
    if uri.kind == "drive":
        if video_path is None:
            raise ValueError("drive:// needs the drive's video path")
        return file_candidates(video_path, elements)
    if uri.kind == "rtsp":
        return rtsp_candidates(uri.target, elements)
    if uri.kind == "test":
        return test_candidates(uri.options)
    if uri.kind == "gst":
        return [LaunchCandidate("gst launch line", uri.target)]
    raise SourceURIError(f"{uri.text!r}: a {uri.kind} source is not read through GStreamer")


def full_line(candidate: LaunchCandidate) -> str:
    """The candidate's line with the BGR conversion and the appsink appended."""
    return f"{candidate.line} ! {APPSINK_TAIL}"
