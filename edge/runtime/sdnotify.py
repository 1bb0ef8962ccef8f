"""systemd notification (READY=1, WATCHDOG=1) over ``$NOTIFY_SOCKET``, with plain sockets."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SdNotifier:
    """Sends datagrams to systemd's notify socket.

    Attributes:
        watchdog_interval_s: how often to send WATCHDOG=1 (half of ``$WATCHDOG_USEC``), or None
            when the unit has no ``WatchdogSec``.
    """

    def __init__(self, address: str, watchdog_usec: int | None) -> None:
        # A leading '@' names a Linux abstract socket.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_interval_s = watchdog_usec / 2e6 if watchdog_usec else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SdNotifier | None:
        """The notifier for this process, or None when not started by systemd with Type=notify."""
        address = environ.get("NOTIFY_SOCKET")
        if not address:
            return None
        usec_text = environ.get("WATCHDOG_USEC", "")
        pid_text = environ.get("WATCHDOG_PID", "")
        usec = int(usec_text) if usec_text.isdigit() else None
        if pid_text.isdigit() and int(pid_text) != os.getpid():
            usec = None  # the watchdog is meant for another process
        return cls(address, usec)

    def notify(self, state: str) -> bool:
        """Send ``state`` (e.g. "READY=1"); False (and a log line) when systemd is unreachable."""
        try:
            self._socket.sendto(state.encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify %s failed: %s", state.split("=")[0], exc)
            return False
        return True

    def close(self) -> None:
        self._socket.close()
