"""``open_source``: a source string -> an opened :class:`Source` (GStreamer first, OpenCV fallback)."""

from __future__ import annotations

import dataclasses
import logging

from stopsign.edge.sources.base import Source, SourceOpenError, SourceOptions, StatusReport
from stopsign.edge.sources.drive import load_drive
from stopsign.edge.sources.images import ImageFolderSource
from stopsign.edge.sources.launch import candidates_for, preferred_decoders
from stopsign.edge.sources.opencv import OpenCvSource
from stopsign.edge.sources.uri import LIVE_KINDS, SourceURI, parse_source_uri

log = logging.getLogger(__name__)

# What OpenCV's own capture can read when PyGObject is missing.
_OPENCV_KINDS = ("v4l2", "file", "drive", "rtsp")


def make_source(uri: SourceURI | str, options: SourceOptions, report: StatusReport) -> Source:
    """Build (not open) the source for ``uri``."""
    if isinstance(uri, str):
        uri = parse_source_uri(uri)
    if uri.kind == "images":
        return ImageFolderSource(uri.target)
    if uri.kind == "bag":  # read by rosbags (the 'ros' extra), imported only for a bag
        from stopsign.edge.sources.bag import BagOptions, BagSource

        return BagSource(uri.target, BagOptions.from_query(uri.options), report)
    drive = load_drive(uri.target) if uri.kind == "drive" else None
    timestamps = drive.timestamps if drive is not None else None
    from stopsign.edge.sources.gst import GstSource
    from stopsign.edge.sources.gst_loader import GstUnavailableError, prefer_decoders, registered_elements

    try:
        elements = registered_elements()
    except GstUnavailableError as exc:
        if uri.kind not in _OPENCV_KINDS:
            raise SourceOpenError(f"{uri.text}: needs GStreamer: {exc}") from None
        log.warning("%s; falling back to OpenCV capture for %s", exc, uri.text)
        target: str | int = uri.target
        if drive is not None:
            target = str(drive.video)
        live = uri.kind in LIVE_KINDS
        if live:  # a camera has no end: a failed read is a fault, then a reconnect
            options = dataclasses.replace(options, endless=True)
        return OpenCvSource(target, live=live, timestamps=timestamps, options=options, report=report)
    candidates = candidates_for(uri, options.camera, elements, drive.video if drive else None)
    hardware = preferred_decoders(elements)
    if hardware:
        prefer_decoders(hardware)
        log.info("hardware video decoders preferred: %s", ", ".join(hardware))
    if uri.kind in LIVE_KINDS:
        # A camera has no end: end-of-stream means its link or server went away (reconnect).
        options = dataclasses.replace(options, endless=True)
    return GstSource(uri.text, uri.target or uri.text, candidates, options, report, timestamps)


def open_source(uri: SourceURI | str, options: SourceOptions, report: StatusReport) -> Source:
    """Build and open the source for ``uri``; raises ``SourceOpenError`` with the reason."""
    source = make_source(uri, options, report)
    source.open()
    return source
