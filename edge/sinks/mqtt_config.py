"""What the MQTT sink is told: the ``--mqtt`` URL, TLS files, credentials and queue bound.

Every check here runs before the detector starts, so a bad URL, a missing CA file or an
unreadable credentials file is an error that names the flag and the file, not a failure later.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from stopsign.edge.sinks.base import log

# Periodic or rate-limited status: QoS 0, first to go when the queue is full.
HEALTH_KINDS = frozenset({"heartbeat", "over_budget", "frame_rejected"})
USERNAME_ENV, PASSWORD_ENV = "STOPSIGN_MQTT_USERNAME", "STOPSIGN_MQTT_PASSWORD"
DEFAULT_QUEUE = "~/.cache/stopsign-edge/mqtt-queue.sqlite"


class MqttConfigError(ValueError):
    """A bad ``--mqtt*`` setting; the message names the flag, file or value."""


@dataclass(frozen=True)
class MqttTarget:
    """A parsed ``--mqtt`` URL: ``tls`` for ``mqtts``; ``prefix`` without slashes at either end."""

    tls: bool
    host: str
    port: int
    prefix: str

    @property
    def events_topic(self) -> str:
        return f"{self.prefix}/events"

    @property
    def health_topic(self) -> str:
        return f"{self.prefix}/health"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_mqtt_url(url: str) -> MqttTarget:
    """``mqtts://HOST[:PORT]/PREFIX`` (port 8883) or ``mqtt://...`` (port 1883) -> :class:`MqttTarget`."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise MqttConfigError(
            f"--mqtt {url!r}: the scheme must be mqtts:// (TLS) or mqtt://, not {parts.scheme!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise MqttConfigError(f"--mqtt {url!r}: the port must be a number in 1-65535") from None
    if not parts.hostname:
        raise MqttConfigError(f"--mqtt {url!r}: no broker host (expected {parts.scheme}://HOST:PORT/PREFIX)")
    prefix = parts.path.strip("/")
    if not prefix:
        raise MqttConfigError(f"--mqtt {url!r}: no topic prefix (expected {parts.scheme}://HOST:PORT/PREFIX)")
    if any(c in prefix for c in "+#\0") or "//" in prefix:
        raise MqttConfigError(f"--mqtt {url!r}: the prefix {prefix!r} must not hold '+', '#' or empty levels")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise MqttConfigError(
            f"--mqtt {url!r}: no user, query or fragment in the URL (credentials: --mqtt-credentials FILE "
            f"or {USERNAME_ENV}/{PASSWORD_ENV})"
        )
    tls = parts.scheme == "mqtts"
    return MqttTarget(tls, parts.hostname, port or (8883 if tls else 1883), prefix)


@dataclass(frozen=True)
class Credentials:
    """A username and password, and where they came from (for messages; never the password)."""

    username: str
    password: str | None
    origin: str


def load_credentials(path: str | None, environ: Mapping[str, str] = os.environ) -> Credentials | None:
    """From ``path`` (``username=NAME`` and ``password=SECRET`` lines, ``#`` comments) if given,
    else from the environment; None when neither has a username."""
    if path is None:
        user = environ.get(USERNAME_ENV)
        if not user:
            if environ.get(PASSWORD_ENV):
                raise MqttConfigError(f"{PASSWORD_ENV} is set but {USERNAME_ENV} is not")
            return None
        return Credentials(user, environ.get(PASSWORD_ENV), f"${USERNAME_ENV}")
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise MqttConfigError(f"--mqtt-credentials {file}: cannot read it ({exc.strerror})") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or key.strip() not in ("username", "password"):
            raise MqttConfigError(
                f"--mqtt-credentials {file}:{number}: expected username=... or password=..."
            )
        values[key.strip()] = value.strip()
    if not values.get("username"):
        raise MqttConfigError(f"--mqtt-credentials {file}: no username= line")
    if file.stat().st_mode & 0o077:
        log.warning("mqtt: %s is readable by other users; chmod 600 it", file)
    return Credentials(values["username"], values.get("password"), str(file))


@dataclass
class MqttSettings:
    """What the MQTT sink is told. ``queue_path``: the store and forward SQLite file;
    ``queue_max``: its bound in records; ``reconnect_max_s``: longest wait between reconnects."""

    url: str
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    credentials: str | None = None
    queue_path: str = DEFAULT_QUEUE
    queue_max: int = 10_000
    client_id: str | None = None
    reconnect_max_s: float = 0.5
    inflight: int = 100

    def check(self, environ: Mapping[str, str] = os.environ) -> tuple[MqttTarget, Credentials | None]:
        """Every error a user should see before the run starts (bad URL, missing files, credentials)."""
        target = parse_mqtt_url(self.url)
        require_paho()
        for flag, value in (("--mqtt-ca", self.ca), ("--mqtt-cert", self.cert), ("--mqtt-key", self.key)):
            if value is not None and not Path(value).expanduser().is_file():
                raise MqttConfigError(f"{flag} {value}: no such file")
            if value is not None and not target.tls:
                raise MqttConfigError(f"{flag} needs an mqtts:// URL (TLS), got {self.url}")
        if self.key and not self.cert:
            raise MqttConfigError("--mqtt-key needs --mqtt-cert (the client certificate)")
        if self.queue_max < 1:
            raise MqttConfigError(f"--mqtt-queue-max {self.queue_max}: must be >= 1")
        if self.ca or self.cert:
            self.tls_context()  # a CA or certificate file that is not PEM fails here, by name
        return target, load_credentials(self.credentials, environ)

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.ca:
            try:
                context.load_verify_locations(cafile=str(Path(self.ca).expanduser()))
            except (OSError, ssl.SSLError) as exc:
                raise MqttConfigError(f"--mqtt-ca {self.ca}: not a PEM CA certificate ({exc})") from None
        if self.cert:
            key = str(Path(self.key).expanduser()) if self.key else None
            try:
                context.load_cert_chain(str(Path(self.cert).expanduser()), key)
            except (OSError, ssl.SSLError) as exc:
                raise MqttConfigError(
                    f"--mqtt-cert {self.cert} / --mqtt-key {self.key}: cannot load the client certificate ({exc})"
                ) from None
        return context


def require_paho() -> None:
    """paho-mqtt 2.x is an optional dependency: say how to get it rather than fail at connect time."""
    try:
        import paho.mqtt
    except ImportError:
        raise MqttConfigError("--mqtt needs paho-mqtt 2.x: pip install 'stopsign-edge[mqtt]'") from None
    major = str(getattr(paho.mqtt, "__version__", "0")).split(".")[0]
    if not major.isdigit() or int(major) < 2:
        raise MqttConfigError(
            f"--mqtt needs paho-mqtt 2.x, found {paho.mqtt.__version__}: pip install 'paho-mqtt>=2,<3'"
        )
