"""The MQTT sink against a real mosquitto (Debian's) on 127.0.0.1 with TLS, passwords and the ACL.

The broker asks for a client certificate (``require_certificate true``), as deploy/mqtt/ does.
A fleet-side subscriber (user ``fleet``, persistent session) records what is delivered; every
check is by ``event_id``: nothing lost, duplicates allowed (QoS 1) but counted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stopsign.edge.sinks.mqtt import MqttConfigError, MqttSettings, MqttSink, load_credentials, parse_mqtt_url
from stopsign.edge.sinks.mqtt_broker import PASSWORDS, FleetSubscriber, LocalBroker, free_port
from tests.edge.helpers import requires_gstreamer

REPO = Path(__file__).resolve().parents[3]
requires_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="Debian's mosquitto is not installed (apt install mosquitto; ./run.sh test does)",
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtts://broker.example:8884/cars/car1", (True, "broker.example", 8884, "cars/car1")),
        ("mqtts://10.0.0.5/cars/car1/", (True, "10.0.0.5", 8883, "cars/car1")),
        ("mqtt://127.0.0.1/fleet", (False, "127.0.0.1", 1883, "fleet")),
        ("mqtts://[::1]:8883/a/b/c", (True, "::1", 8883, "a/b/c")),
    ],
)
def test_parse_mqtt_url(url: str, expected: tuple) -> None:
    target = parse_mqtt_url(url)
    assert (target.tls, target.host, target.port, target.prefix) == expected
    assert target.events_topic == f"{expected[3]}/events"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://broker/cars/car1", "scheme"),
        ("mqtts://broker:99999/cars/car1", "port"),
        ("mqtts://broker:8883", "no topic prefix"),
        ("mqtts://broker/cars/+", "'+'"),
        ("mqtts://car1:secret@broker/cars/car1", "--mqtt-credentials"),
        ("mqtts:///cars/car1", "no broker host"),
    ],
)
def test_bad_mqtt_url_is_named(url: str, says: str) -> None:
    with pytest.raises(MqttConfigError, match="--mqtt") as info:
        parse_mqtt_url(url)
    assert says in str(info.value)


def test_credentials_from_file_or_environment(tmp_path: Path) -> None:
    file = tmp_path / "cred"
    file.write_text("# car 1\nusername=car1\npassword = s3cret=x\n")
    file.chmod(0o600)
    creds = load_credentials(str(file), {})
    assert (creds.username, creds.password, creds.origin) == ("car1", "s3cret=x", str(file))
    env = {"STOPSIGN_MQTT_USERNAME": "car2", "STOPSIGN_MQTT_PASSWORD": "pw"}
    assert load_credentials(None, env).username == "car2"
    assert load_credentials(None, {}) is None
    with pytest.raises(MqttConfigError, match="STOPSIGN_MQTT_USERNAME"):
        load_credentials(None, {"STOPSIGN_MQTT_PASSWORD": "pw"})
    file.write_text("user=car1\n")
    with pytest.raises(MqttConfigError, match=r"cred:1: expected username="):
        load_credentials(str(file), {})
    with pytest.raises(MqttConfigError, match="cannot read"):
        load_credentials(str(tmp_path / "missing"), {})


def test_missing_tls_files_are_named(tmp_path: Path) -> None:
    settings = MqttSettings(url="mqtts://127.0.0.1/cars/car1", ca=str(tmp_path / "ca.crt"))
    with pytest.raises(MqttConfigError, match=r"--mqtt-ca .*ca.crt: no such file"):
        settings.check({})
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    with pytest.raises(MqttConfigError, match="not a PEM CA certificate"):
        settings.check({})
    with pytest.raises(MqttConfigError, match="--mqtt-key needs --mqtt-cert"):
        MqttSettings(url="mqtts://127.0.0.1/c", key=str(tmp_path / "ca.crt")).check({})


def test_plain_mqtt_off_this_machine_warns_and_tls_files_need_mqtts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "stopsign.edge.sinks")
    MqttSink(MqttSettings(url="mqtt://127.0.0.1/cars/car1"), environ={})
    assert "plain MQTT" not in caplog.text  # a broker on this machine: no warning
    MqttSink(MqttSettings(url="mqtt://10.0.0.5/cars/car1"), environ={})
    assert "mqtt://10.0.0.5/cars/car1 is plain MQTT to another machine" in caplog.text
    with pytest.raises(MqttConfigError, match="--mqtt-ca needs an mqtts:// URL"):
        MqttSettings(url="mqtt://127.0.0.1/cars/car1", ca=__file__).check({})


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("Debian's mosquitto is not installed (apt install mosquitto; ./run.sh test does)")
    local = LocalBroker.create(tmp_path_factory.mktemp("broker"), require_certificate=True)
    local.start()
    yield local
    local.stop(kill=False)


@pytest.fixture
def fleet(broker: LocalBroker, request: pytest.FixtureRequest) -> Iterator[FleetSubscriber]:
    subscriber = FleetSubscriber(broker, client_id=f"fleet-{request.node.name}"[:60])
    subscriber.wait_connected()
    yield subscriber
    subscriber.close()


def car_sink(
    broker: LocalBroker,
    queue: Path,
    user: str = "car1",
    password: str | None = None,
    prefix: str | None = None,
    cert: bool = True,
) -> MqttSink:
    f = broker.folder
    settings = MqttSettings(
        url=f"{broker.url_base}/{prefix or f'cars/{user}'}",
        ca=str(f / "ca.crt"),
        cert=str(f / f"{user}.crt") if cert else None,
        key=str(f / f"{user}.key") if cert else None,
        queue_path=str(queue),
        client_id=f"{user}-{queue.parent.name}"[:60],
    )
    env = {"STOPSIGN_MQTT_USERNAME": user, "STOPSIGN_MQTT_PASSWORD": password or PASSWORDS[user]}
    return MqttSink(settings, environ=env)


def frames_delivered(fleet: FleetSubscriber, topic: str) -> list[int]:
    return [p["frame"] for t, p, _ in fleet.snapshot() if t == topic and p.get("event") == "stop_sign_ahead"]


@requires_mosquitto
def test_events_and_health_arrive_with_ids(
    broker: LocalBroker, fleet: FleetSubscriber, tmp_path: Path
) -> None:
    sink = car_sink(broker, tmp_path / "q.sqlite")
    sink.open()
    try:
        event = {"event": "stop_sign_ahead", "frame": 7, "track_id": 1}
        sink.on_event(event)
        sink.on_event({"event": "heartbeat", "frame": 7, "fps": 15.0})
        assert fleet.wait_for(lambda m: len(m) >= 2, 5), fleet.snapshot()
    finally:
        sink.close()
    by_topic = {t: p for t, p, _ in fleet.snapshot()}
    assert by_topic["cars/car1/events"]["track_id"] == 1
    assert by_topic["cars/car1/health"]["fps"] == 15.0
    assert len({p["event_id"] for p in by_topic.values()}) == 2
    assert "event_id" not in event  # the other sinks' dict is left alone
    assert sink.queue_depth == 0


@requires_mosquitto
@pytest.mark.parametrize(
    ("case", "warning", "broker_says"),
    [
        (
            "wrong_password",
            "refused the connection: Not authorized (user 'car1' from $STOPSIGN_MQTT_USERNAME)",
            "not authorised",
        ),
        ("no_certificate", "closed the connection before accepting it", "peer did not return a certificate"),
    ],
)
def test_car_is_refused(
    broker: LocalBroker,
    fleet: FleetSubscriber,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
    warning: str,
    broker_says: str,
) -> None:
    caplog.set_level(logging.WARNING, "stopsign.edge.sinks")
    if case == "wrong_password":
        sink = car_sink(broker, tmp_path / "q.sqlite", password="not-the-password")
    else:
        sink = car_sink(broker, tmp_path / "q.sqlite", cert=False)
    sink.open()
    try:
        sink.on_event({"event": "stop_sign_ahead", "frame": 1})
        deadline = time.monotonic() + 5
        while warning not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert warning in caplog.text
        assert not sink.connected.is_set()
        assert fleet.snapshot() == []
        assert sink.queue_depth == 1  # kept on disk for when the car is let in
        assert broker_says in broker.log_tail(200)
    finally:
        sink.close()


@requires_mosquitto
def test_car_cannot_publish_outside_its_prefix(
    broker: LocalBroker, fleet: FleetSubscriber, tmp_path: Path
) -> None:
    outside = car_sink(broker, tmp_path / "outside" / "q.sqlite", prefix="cars/car2")
    inside = car_sink(broker, tmp_path / "inside" / "q.sqlite")
    for sink in (outside, inside):
        sink.open()
    try:
        outside.on_event({"event": "stop_sign_ahead", "frame": 1})
        time.sleep(0.3)  # the forged message goes first: had it passed, it would arrive first
        inside.on_event({"event": "stop_sign_ahead", "frame": 2})
        assert fleet.wait_for(lambda m: len(m) >= 1, 5)
        time.sleep(0.3)
    finally:
        outside.close()
        inside.close()
    assert [(t, p["frame"]) for t, p, _ in fleet.snapshot()] == [("cars/car1/events", 2)]
    assert outside.stats["acked"] == 1  # MQTT 3.1.1 acknowledges a denied publish: it is just not delivered


def _publish_steadily(sink: MqttSink, frames: range, period_s: float) -> None:
    for frame in frames:
        sink.on_event({"event": "stop_sign_ahead", "frame": frame})
        time.sleep(period_s)


@requires_mosquitto
def test_nothing_lost_across_a_broker_restart(
    broker: LocalBroker, fleet: FleetSubscriber, tmp_path: Path
) -> None:
    fleet.wait_saved()
    sink = car_sink(broker, tmp_path / "q.sqlite")
    sink.open()
    try:
        writer = threading.Thread(target=_publish_steadily, args=(sink, range(300), 0.01))
        writer.start()
        time.sleep(0.5)
        broker.stop(kill=True)  # SIGKILL: a crash, not a clean shutdown
        time.sleep(1.5)
        queued = sink.queue_depth
        broker.start()
        writer.join()
        assert fleet.wait_for(
            lambda m: set(frames_delivered(fleet, "cars/car1/events")) >= set(range(300)), 10
        )
    finally:
        sink.close()
    frames = frames_delivered(fleet, "cars/car1/events")
    ids = fleet.event_ids()
    duplicates = sum(n - 1 for n in ids.values())
    assert queued > 0, "the outage queued nothing: the broker was not down while events came"
    assert set(frames) == set(range(300)), f"lost: {sorted(set(range(300)) - set(frames))}"
    assert len(ids) == 300 and duplicates == len(frames) - 300
    first_seen = list(dict.fromkeys(frames))
    assert first_seen == sorted(first_seen), "delivered out of order"


@requires_mosquitto
def test_nothing_lost_across_an_edge_restart(
    broker: LocalBroker, fleet: FleetSubscriber, tmp_path: Path
) -> None:
    queue = tmp_path / "q.sqlite"
    fleet.wait_saved()
    broker.stop(kill=True)
    try:
        first = car_sink(broker, queue)
        first.open()
        for frame in range(50):
            first.on_event({"event": "stop_sign_ahead", "frame": frame})
        first.close()  # edge-detect stops mid-outage; the 50 events are on disk
        second = car_sink(broker, queue)
        second.open()
        assert second.queue_depth == 50
        for frame in range(50, 60):
            second.on_event({"event": "stop_sign_ahead", "frame": frame})
    finally:
        broker.start()
    try:
        assert fleet.wait_for(lambda m: len(set(frames_delivered(fleet, "cars/car1/events"))) >= 60, 10)
    finally:
        second.close()
    frames = frames_delivered(fleet, "cars/car1/events")
    assert list(dict.fromkeys(frames)) == list(range(60))
    assert second.queue_depth == 0


@requires_mosquitto
def test_full_queue_reports_and_drops_health_only(tmp_path: Path) -> None:
    reports: list[tuple[str, dict]] = []
    settings = MqttSettings(url=f"mqtt://127.0.0.1:{free_port()}/cars/car1", queue_path=str(tmp_path / "q.sqlite"),
                            queue_max=5)  # fmt: skip
    sink = MqttSink(settings, report=lambda kind, fields: reports.append((kind, fields)), environ={})
    sink.open()
    try:
        for n in range(4):
            sink.on_event({"event": "heartbeat", "n": n})
        for n in range(3):
            sink.on_event({"event": "stop_sign_ahead", "frame": n})
        deadline = time.monotonic() + 5
        while sink.queue_depth < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        sink.on_frame(None)  # type: ignore[arg-type]  # the status goes out on the loop's next frame
    finally:
        sink.close()
    assert reports and reports[0][0] == "mqtt_queue_full"
    assert reports[0][1]["dropped_health"] == 2
    from stopsign.edge.sinks.mqtt_queue import RecordQueue

    left = [(r.kind, json.loads(r.payload)) for r in RecordQueue(tmp_path / "q.sqlite").after(0, 10)]
    assert [k for k, _ in left] == ["health", "health", "event", "event", "event"]
    assert [p["n"] for k, p in left if k == "health"] == [2, 3]


@requires_mosquitto
def test_on_event_does_not_wait_for_a_frozen_broker(broker: LocalBroker, tmp_path: Path) -> None:
    sink = car_sink(broker, tmp_path / "q.sqlite")
    sink.open()
    assert sink.connected.wait(5)
    os.kill(broker.process.pid, 19)  # SIGSTOP: the socket stays open, nothing is read
    try:
        start = time.monotonic()
        for frame in range(2000):
            sink.on_event({"event": "stop_sign_ahead", "frame": frame})
        spent = time.monotonic() - start
    finally:
        os.kill(broker.process.pid, 18)  # SIGCONT
        sink.close()
    assert spent < 1.0, f"2000 on_event calls took {spent:.2f} s with the broker frozen"


@requires_mosquitto
@requires_gstreamer
def test_edge_detect_sends_every_event_of_a_drive(
    broker: LocalBroker, fleet: FleetSubscriber, tmp_path: Path
) -> None:
    f = broker.folder
    creds = tmp_path / "cred"
    creds.write_text(f"username=car2\npassword={PASSWORDS['car2']}\n")
    creds.chmod(0o600)
    events = tmp_path / "events.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "stopsign.edge.cli.detect", "--source", f"drive://{REPO}/samples/drives/day_approach",
         "--no-health", "--events", str(events), "--mqtt", f"{broker.url_base}/cars/car2", "--mqtt-ca", str(f / "ca.crt"),
         "--mqtt-cert", str(f / "car2.crt"), "--mqtt-key", str(f / "car2.key"), "--mqtt-credentials", str(creds),
         "--mqtt-queue", str(tmp_path / "q.sqlite")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    written = [json.loads(line) for line in events.read_text().splitlines()]
    assert fleet.wait_for(lambda m: len(m) >= len(written), 5)
    delivered = [{k: v for k, v in p.items() if k != "event_id"} for _, p, _ in fleet.snapshot()]
    assert sorted(map(json.dumps, delivered)) == sorted(map(json.dumps, written))
    kinds = {p["event"]: t for t, p, _ in fleet.snapshot()}
    assert kinds["stop_sign_ahead"] == "cars/car2/events" and kinds["heartbeat"] == "cars/car2/health"


@requires_mosquitto
def test_deploy_example_config_runs_and_its_acl_is_the_tested_one(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """deploy/mqtt/mosquitto.conf, with this test's files and a port on 127.0.0.1, runs in the real
    mosquitto and lets car1 publish; deploy/mqtt/acl holds the rules the other tests run."""
    from stopsign.edge.sinks.mqtt_broker import ACL

    deploy = REPO / "deploy" / "mqtt"

    def rules(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]

    assert rules((deploy / "acl").read_text()) == rules(ACL)
    f, port = broker.folder, free_port()
    text = (deploy / "mosquitto.conf").read_text()
    for old, new in [
        ("listener 8883", f"listener {port} 127.0.0.1"),
        ("/etc/mosquitto/certs/", f"{f}/"),
        ("/etc/mosquitto/passwd", f"{f}/passwd"),
        ("/etc/mosquitto/acl", str(deploy / "acl")),
        ("/var/lib/mosquitto/", f"{tmp_path}/"),
        (
            "log_dest syslog",
            f"log_dest file {tmp_path / 'mosquitto.log'}\n" + ("user root" if os.geteuid() == 0 else ""),
        ),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    (tmp_path / "mosquitto.conf").write_text(text)
    example = LocalBroker(tmp_path, port, require_certificate=True)
    example.start()
    try:
        sink = MqttSink(
            MqttSettings(url=f"{example.url_base}/cars/car1", ca=str(f / "ca.crt"), cert=str(f / "car1.crt"),
                         key=str(f / "car1.key"), queue_path=str(tmp_path / "q.sqlite")),
            environ={"STOPSIGN_MQTT_USERNAME": "car1", "STOPSIGN_MQTT_PASSWORD": PASSWORDS["car1"]},
        )  # fmt: skip
        sink.open()
        try:
            sink.on_event({"event": "stop_sign_ahead", "frame": 1})
            deadline = time.monotonic() + 5
            while sink.stats["acked"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            sink.close()
        assert sink.stats["acked"] == 1 and sink.queue_depth == 0, example.log_tail()
    finally:
        example.stop(kill=False)
