"""A real local mosquitto for the MQTT tests and benches: TLS, a password file and the ACL of
``deploy/mqtt/``, on 127.0.0.1 only, plus a fleet-side subscriber that records what arrives.

    broker = LocalBroker.create(folder, require_certificate=True)
    broker.start(); ...; broker.stop(kill=True); broker.start()   # same port, same persistence

Certificates are made with the ``openssl`` CLI (a throwaway CA, a server certificate for
127.0.0.1/localhost, a client certificate per car); passwords with ``mosquitto_passwd -b``.
Users: ``car1`` and ``car2`` (cars, ACL ``pattern write cars/%u/#``) and ``fleet`` (reads
``cars/#``). The broker keeps its state on disk (``persistence``, saved every second), so the
fleet's subscription survives a broker killed and started again, as a real broker's does.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PASSWORDS = {"car1": "car1-secret", "car2": "car2-secret", "fleet": "fleet-secret"}
ACL = """\
# The fleet's back office reads every car.
user fleet
topic read cars/#

# Any other user is a car: it may publish only under cars/<its username>/.
pattern write cars/%u/#
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the broker binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(folder: Path, clients: tuple[str, ...] = ("car1", "car2", "fleet")) -> None:
    """``ca.crt``/``ca.key``, ``server.crt``/``server.key`` (127.0.0.1, localhost) and
    ``<client>.crt``/``<client>.key`` in ``folder``; EC P-256 keys, valid 30 days."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
             "-subj", "/CN=stopsign-test-ca", cwd=folder)  # fmt: skip
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", *clients):
        _openssl(
            "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder
        )
        extra = ("-extfile", "server.ext") if name == "server" else ()
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "30", *extra, cwd=folder)  # fmt: skip


@dataclass
class LocalBroker:
    """A mosquitto process on 127.0.0.1:``port`` configured from files in ``folder``."""

    folder: Path
    port: int
    require_certificate: bool
    process: subprocess.Popen[bytes] | None = None
    log_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_file = self.folder / "mosquitto.log"

    @classmethod
    def create(cls, folder: Path, require_certificate: bool = False, port: int | None = None) -> LocalBroker:
        """Write the PKI, password file, ACL and ``mosquitto.conf`` into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        make_pki(folder)
        passwd = folder / "passwd"
        passwd.touch(mode=0o600)
        for user, password in PASSWORDS.items():
            subprocess.run(
                ["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True
            )
        (folder / "acl").write_text(ACL)
        (folder / "data").mkdir(exist_ok=True)
        broker = cls(folder, port or free_port(), require_certificate)
        (folder / "mosquitto.conf").write_text(broker.config_text())
        return broker

    def config_text(self) -> str:
        f = self.folder
        return "\n".join(
            [
                "per_listener_settings false",
                "user root"
                if _is_root()
                else "",  # as root it would switch to 'mosquitto', who cannot read f
                f"listener {self.port} 127.0.0.1",
                f"cafile {f / 'ca.crt'}",
                f"certfile {f / 'server.crt'}",
                f"keyfile {f / 'server.key'}",
                "tls_version tlsv1.2",
                f"require_certificate {'true' if self.require_certificate else 'false'}",
                "allow_anonymous false",
                f"password_file {f / 'passwd'}",
                f"acl_file {f / 'acl'}",
                "persistence true",
                f"persistence_location {f / 'data'}/",
                "autosave_interval 1",
                "max_queued_messages 0",
                "log_type error",
                "log_type warning",
                "log_type notice",
                f"log_dest file {self.log_file}",
                "",
            ]
        )

    @property
    def url_base(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start mosquitto and wait until its port accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(
                    f"mosquitto exited with {self.process.returncode}: {err} {self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s} s")

    def stop(self, kill: bool = True) -> None:
        """SIGKILL (a crash, a power cut: nothing saved since the last autosave) or SIGTERM."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text().splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


class FleetSubscriber:
    """The back office: user ``fleet`` subscribed to ``cars/#`` at QoS 1 with a persistent session,
    recording every message (topic, decoded JSON payload) it receives, duplicates included."""

    def __init__(self, broker: LocalBroker, client_id: str = "fleet-collector") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict[str, Any], float]] = []  # topic, payload, monotonic s
        self._lock = threading.Lock()
        self.connected = threading.Event()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False
        )
        f = broker.folder
        client.tls_set(
            ca_certs=str(f / "ca.crt"), certfile=str(f / "fleet.crt"), keyfile=str(f / "fleet.key")
        )
        client.username_pw_set("fleet", PASSWORDS["fleet"])
        client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *_: self.connected.clear()
        client.on_message = self._on_message
        self.client = client
        self.client.connect_async("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe("cars/#", qos=1)
            self.connected.set()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        payload = json.loads(message.payload)
        with self._lock:
            self.messages.append((message.topic, payload, time.monotonic()))

    def wait_connected(self, timeout_s: float = 10.0) -> None:
        if not self.connected.wait(timeout_s):
            raise TimeoutError("the fleet subscriber did not connect")
        time.sleep(0.2)  # the SUBACK follows the CONNACK

    def wait_saved(self) -> None:
        """Wait past the broker's autosave (1 s), so a SIGKILL after this keeps the subscription."""
        time.sleep(1.2)

    def snapshot(self) -> list[tuple[str, dict[str, Any], float]]:
        with self._lock:
            return list(self.messages)

    def event_ids(self, topic_suffix: str = "/events") -> Counter[str]:
        """How many times each ``event_id`` arrived on topics ending with ``topic_suffix``."""
        return Counter(p.get("event_id", "") for t, p, _ in self.snapshot() if t.endswith(topic_suffix))

    def wait_for(self, predicate: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            time.sleep(0.02)
        return predicate(self.snapshot())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
