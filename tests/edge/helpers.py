"""Shared test helpers for the edge runtime (markers that need a probe of the environment)."""

from __future__ import annotations

import importlib.util

import pytest


def _gi_available() -> bool:
    if importlib.util.find_spec("gi") is None:
        return False
    from stopsign.edge.sources.gst_loader import gst_available

    return gst_available()


requires_gstreamer = pytest.mark.skipif(
    not _gi_available(), reason="GStreamer through PyGObject is not installed (pip install 'PyGObject<3.51')"
)


def _rtsp_server_available() -> bool:
    if not _gi_available():
        return False
    import gi

    try:
        gi.require_version("GstRtspServer", "1.0")
    except ValueError:
        return False
    return True


requires_rtsp_server = pytest.mark.skipif(
    not _rtsp_server_available(),
    reason="GStreamer's RTSP server typelib is not installed (apt install gir1.2-gst-rtsp-server-1.0)",
)
