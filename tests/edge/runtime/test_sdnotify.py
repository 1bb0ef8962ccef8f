"""sd_notify over a real unix datagram socket, as systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from stopsign.edge.runtime.sdnotify import SdNotifier


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({}, "none"),
        ({"NOTIFY_SOCKET": "/run/x"}, None),
        ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "4000000"}, 2.0),
        ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, None),
        ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "lots"}, None),
    ],
)
def test_from_env(env: dict[str, str], interval: float | str | None) -> None:
    notifier = SdNotifier.from_env(env)
    if interval == "none":
        assert notifier is None
        return
    assert notifier is not None and notifier.watchdog_interval_s == interval
    notifier.close()


def test_ready_and_watchdog_reach_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    notifier = SdNotifier.from_env(
        {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert notifier is not None and notifier.watchdog_interval_s == 1.0
    assert notifier.notify("READY=1") and notifier.notify("WATCHDOG=1")
    assert [server.recv(64), server.recv(64)] == [b"READY=1", b"WATCHDOG=1"]
    server.close()
    assert notifier.notify("WATCHDOG=1") is False  # systemd gone: reported, not raised
    notifier.close()
