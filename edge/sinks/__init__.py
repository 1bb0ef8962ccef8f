"""Outputs of a run, one module each, behind one interface (:class:`Sink`, in ``base``).

- ``base``: the contract (:class:`FrameResult`, :class:`Sink`) and :class:`GuardedSink`, which
  contains a failing output and retries it;
- ``jsonl``: detections, events and the per-frame stage log as JSON lines;
- ``draw``: the overlay drawn by the outputs that show pictures;
- ``video``: the annotated video file; ``window``: a desktop window; ``udp``: JSON datagrams;
- ``can`` (with ``can_dbc`` and ``can_status``): CAN frames defined by a DBC; python-can and
  cantools are an extra, so it is imported by the CLI only for ``--can``, never from here;
- ``mqtt`` (with ``mqtt_config``, ``mqtt_queue``; ``mqtt_broker``: a local mosquitto for the tests
  and benches): events and health to a broker over TLS through an on-disk queue; paho-mqtt is an
  extra, so it too is imported by the CLI only for ``--mqtt``;
- ``bag``: a ROS 2 bag (MCAP) of detections, Foxglove annotations and events; rosbags is an
  extra, so it is imported by the CLI only for ``--bag-out``, never from here;
- ``view``: the live web page (aiohttp, ``view_page.html``); ``foxglove``: Foxglove WebSocket
  (foxglove-sdk, imported only there); ``live``: what those two share (one-slot frame buffer,
  listen addresses, tracks and tiles to draw).

Sinks never import backends (a contract CI checks): they see frames, results and events only.
"""

from __future__ import annotations

from stopsign.edge.sinks.base import FrameResult, GuardedSink, Sink
from stopsign.edge.sinks.draw import annotate
from stopsign.edge.sinks.jsonl import DetectionsSink, EventSink, FrameLogSink, JsonLinesFile
from stopsign.edge.sinks.udp import UdpSink, parse_host_port
from stopsign.edge.sinks.video import VideoSink
from stopsign.edge.sinks.view import ViewConfig, ViewSink
from stopsign.edge.sinks.window import ShowSink, gui_available

__all__ = [
    "DetectionsSink",
    "EventSink",
    "FrameLogSink",
    "FrameResult",
    "GuardedSink",
    "JsonLinesFile",
    "ShowSink",
    "Sink",
    "UdpSink",
    "VideoSink",
    "ViewConfig",
    "ViewSink",
    "annotate",
    "gui_available",
    "parse_host_port",
]
