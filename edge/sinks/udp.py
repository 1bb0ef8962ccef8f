"""Events and detections as JSON datagrams (``--udp host:port``)."""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from typing import Any

from stopsign.edge.sinks.base import FrameResult, Sink


def parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--udp must be host:port, got {text!r}")
    return host.strip("[]"), int(port)


class UdpSink(Sink):
    """Events and per-frame detections as JSON datagrams to ``host:port``.

    The socket is connected, so an unreachable peer surfaces (ICMP port unreachable) as an
    error on a later send: reported and retried like any sink failure.
    """

    name = "udp"

    def __init__(self, address: str, class_names: Sequence[str]) -> None:
        self.host, self.port = parse_host_port(address)
        self._names = list(class_names)
        self._socket: socket.socket | None = None

    def open(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.connect((self.host, self.port))
        self._socket = sock

    def _send(self, record: dict[str, Any]) -> None:
        if self._socket is None:
            self.open()
        assert self._socket is not None
        self._socket.send(json.dumps(record, separators=(",", ":")).encode())

    def on_event(self, event: dict[str, Any]) -> None:
        self._send(event)

    def on_frame(self, result: FrameResult) -> None:
        if result.detections is not None and len(result.detections):
            self._send(
                {
                    "event": "detections",
                    "frame": result.frame.index,
                    "pts_ns": result.frame.pts_ns,
                    "detections": result.detections.to_records(self._names),
                }
            )

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
