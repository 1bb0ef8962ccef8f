"""Record a drive (DESIGN.md format) from any GStreamer source: video, frames.jsonl, meta.json.

One pipeline: ``<source> ! videoconvert ! identity ! <encoder> ! matroskamux streamable=true !
filesink``. A pad probe on the identity element writes each frame's source PTS and monotonic
capture time to ``frames.jsonl`` as the frame enters the encoder, flushed per line and fsynced
once a second. Matroska in streaming mode needs no index at the end, so a recording cut by
SIGKILL or power loss stays readable up to its last complete cluster; ``meta.json`` says
``"finished": false`` until a clean stop, and replay then trims the index to the decodable frames.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from stopsign.edge.model.artifacts import atomic_write_text
from stopsign.edge.sources.gst_loader import load_gst, registered_elements
from stopsign.edge.sources.launch import CameraOptions, candidates_for
from stopsign.edge.sources.uri import parse_source_uri

RECORDER_VERSION = "stopsign.edge.replay.recorder/1"
ENCODERS = (
    ("h264", "x264enc", "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop}"),
    ("mjpeg", "jpegenc", "jpegenc quality=85"),
)


class RecordError(RuntimeError):
    """The recording could not start or stopped on an error; the message names the cause."""


@dataclass
class RecordSummary:
    folder: Path
    frames: int
    codec: str
    finished: bool
    error: str | None = None


def pick_encoder(elements: frozenset[str]) -> tuple[str, str]:
    """(codec name, launch fragment): H.264 where x264enc exists, MJPEG otherwise."""
    for codec, element, fragment in ENCODERS:
        if element in elements:
            return codec, fragment
    raise RecordError("no video encoder: install gstreamer1.0-plugins-ugly (x264enc) or -good (jpegenc)")


class _FrameIndex:
    """Appends one JSON line per frame; flushed per line, fsynced at most once a second.

    A failed write (disk full, file size limit) is kept in ``error`` rather than raised: it happens
    inside a GStreamer streaming thread, and the recorder's loop ends the recording on it. Lines
    already written stay whole: each line goes out in one unbuffered ``write``.
    """

    def __init__(self, path: Path, clock: Callable[[], int]) -> None:
        self.path = path
        self.handle: IO[bytes] = path.open("wb", buffering=0)
        self.count = 0
        self.size: tuple[int, int] | None = None
        self.error: str | None = None
        self._clock = clock
        self._last_sync = clock()
        self._lock = threading.Lock()

    def add(self, pts_ns: int) -> bool:
        """Index one frame with capture time now; False (and ``error`` set) when it could not be written."""
        now = self._clock()
        line = json.dumps({"index": self.count, "pts_ns": pts_ns, "monotonic_ns": now}) + "\n"
        with self._lock:
            if self.error is not None:
                return False
            try:
                if self.handle.write(line.encode()) != len(line):
                    raise OSError(f"short write of line {self.count + 1}")
                if now - self._last_sync > 1_000_000_000:
                    os.fsync(self.handle.fileno())
                    self._last_sync = now
            except OSError as exc:
                self.error = f"{self.path}: cannot write frame {self.count} ({exc}; disk full?)"
                return False
            self.count += 1
            return True

    def close(self) -> None:
        with self._lock:
            try:
                os.fsync(self.handle.fileno())
            except OSError as exc:
                self.error = self.error or f"{self.path}: cannot sync ({exc})"
            finally:
                self.handle.close()


def record(
    camera: str,
    out: str | Path,
    duration_s: float | None = None,
    camera_options: CameraOptions | None = None,
    intrinsics: dict[str, float] | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], int] = time.monotonic_ns,
) -> RecordSummary:
    """Record ``camera`` (a source URI) into the drive folder ``out`` until EOS, ``duration_s`` or ``stop``."""
    gst = load_gst()
    folder = Path(out)
    if folder.exists() and any(folder.iterdir()):
        raise RecordError(f"{folder}: exists and is not empty; recordings never overwrite")
    uri = parse_source_uri(camera)
    elements = registered_elements(
        ("x264enc", "jpegenc", "nvv4l2decoder", "nvjpegdec", "nvvidconv", "nvarguscamerasrc")
    )
    codec, encoder = pick_encoder(elements)
    source_line = candidates_for(uri, camera_options or CameraOptions(), elements)[0].line
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / "video.mkv"
    line = (
        f"{source_line} ! videoconvert ! video/x-raw,format=I420 ! identity name=stamp ! "
        f"{encoder.format(gop=30)} ! matroskamux streamable=true max-cluster-duration=1000000000 ! filesink location={video} sync=false buffer-mode=unbuffered"
    )
    meta: dict[str, Any] = {
        "camera": camera,
        "recorder_version": RECORDER_VERSION,
        "codec": codec,
        "intrinsics": intrinsics,
        "finished": False,
        "started_unix": round(time.time(), 3),
    }
    try:
        pipeline = gst.parse_launch(line)
    except Exception as exc:  # GLib.Error: the message names the element at fault
        raise RecordError(f"{camera}: cannot build the recording pipeline ({exc})") from None
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2) + "\n")
    index = _FrameIndex(folder / "frames.jsonl", clock)

    def on_buffer(pad: Any, info: Any) -> Any:
        buffer = info.get_buffer()
        if index.size is None:
            structure = pad.get_current_caps().get_structure(0)
            index.size = (structure.get_value("width"), structure.get_value("height"))
            rate = structure.get_fraction("framerate")
            meta.update(
                width=index.size[0],
                height=index.size[1],
                fps=rate[1] / rate[2] if rate[0] and rate[2] else None,
            )
            try:
                atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2) + "\n")
            except OSError as exc:
                index.error = f"{folder / 'meta.json'}: cannot write ({exc}; disk full?)"
                return gst.PadProbeReturn.DROP
        if not index.add(int(buffer.pts) if buffer.pts != gst.CLOCK_TIME_NONE else clock()):
            return gst.PadProbeReturn.DROP  # a frame without an index line would shift every later one
        return gst.PadProbeReturn.OK

    pipeline.get_by_name("stamp").get_static_pad("src").add_probe(gst.PadProbeType.BUFFER, on_buffer)
    bus = pipeline.get_bus()
    error: str | None = None
    deadline = None if duration_s is None else time.monotonic() + duration_s
    stop = stop or threading.Event()
    pipeline.set_state(gst.State.PLAYING)
    sent_eos = False
    try:
        while True:
            message = bus.timed_pop_filtered(100 * gst.MSECOND, gst.MessageType.ERROR | gst.MessageType.EOS)
            if message is not None:
                if message.type == gst.MessageType.ERROR:
                    err, _debug = message.parse_error()
                    error = f"{message.src.get_name()}: {err.message}"
                    if "write" in err.message.lower() or "space" in err.message.lower():
                        error += (
                            f" (disk full or file too large? {video} stays readable up to the last frame)"
                        )
                break
            if index.error is not None:
                error = index.error
                break
            if not sent_eos and (stop.is_set() or (deadline is not None and time.monotonic() >= deadline)):
                pipeline.send_event(gst.Event.new_eos())  # lets matroskamux finish its last cluster
                sent_eos = True
    finally:
        pipeline.set_state(gst.State.NULL)
        index.close()
    error = error or index.error
    meta.update(finished=error is None, frames=index.count, error=error)
    try:
        atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2) + "\n")
    except OSError as exc:
        # meta.json keeps "finished": false from the start, so replay still trims to what was written.
        error = f"{error or 'recording ended'}; meta.json not updated ({exc})"
    return RecordSummary(folder, index.count, codec, error is None, error)
