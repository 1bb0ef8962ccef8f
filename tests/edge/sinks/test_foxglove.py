"""``edge-detect --foxglove``: a real Foxglove WebSocket client (``websockets`` speaking the
``foxglove.sdk.v1`` subprotocol, the new name of ``foxglove.websocket.v1``) subscribes to the
image and annotation channels of the CLI running on a sample drive and decodes one message of
each with the protobuf schema the server advertised; the loopback rule; a client that stops
reading.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from stopsign.edge.cli.detect_config import ConfigError, DetectConfig
from tests.edge.helpers import requires_gstreamer

pytest.importorskip("foxglove")
websockets = pytest.importorskip("websockets")

ROOT = Path(__file__).resolve().parents[3]
DRIVE = ROOT / "samples" / "drives" / "day_approach"
SUBPROTOCOL = "foxglove.sdk.v1"
MESSAGE_DATA = 0x01  # server binary opcode: subscription id u32, log time u64, payload


def message_class(channel: dict[str, Any]) -> Any:
    """The protobuf class of an advertised channel, built from the schema it carries (base64
    FileDescriptorSet): the client knows nothing of Foxglove's types in advance."""
    assert channel["encoding"] == "protobuf" and channel["schemaEncoding"] == "protobuf"
    return class_from_schema(base64.b64decode(channel["schema"]), channel["schemaName"])


def class_from_schema(descriptor_set: bytes, name: str) -> Any:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


def decoded(message: Any) -> Any:
    """An SDK message as a client reads it: its protobuf bytes, parsed with its own schema."""
    schema = message.get_schema()
    return class_from_schema(schema.data, schema.name).FromString(message.encode())


async def first_messages(
    url: str, topics: dict[str, str], timeout_s: float, count: int = 5
) -> tuple[dict[str, dict[str, Any]], dict[str, list[bytes]]]:
    """Subscribe to ``topics`` (topic -> expected schema name): the advertised channels by topic,
    and the first ``count`` payloads of each subscribed topic."""
    async with websockets.connect(url, subprotocols=[SUBPROTOCOL], max_size=None) as ws:
        channels: dict[str, dict[str, Any]] = {}
        while not set(topics) <= set(channels):
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
            if message["op"] == "advertise":
                channels.update({c["topic"]: c for c in message["channels"]})
        for topic, schema in topics.items():
            assert channels[topic]["schemaName"] == schema
        subscriptions = {index: topic for index, topic in enumerate(topics, 1)}
        await ws.send(
            json.dumps(
                {
                    "op": "subscribe",
                    "subscriptions": [
                        {"id": index, "channelId": channels[topic]["id"]}
                        for index, topic in subscriptions.items()
                    ],
                }
            )
        )
        payloads: dict[str, list[bytes]] = {topic: [] for topic in topics}
        deadline = time.monotonic() + timeout_s
        while min(len(p) for p in payloads.values()) < count:
            message = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
            if isinstance(message, bytes) and message[0] == MESSAGE_DATA:
                subscription, _log_time = struct.unpack_from("<IQ", message, 1)
                payloads[subscriptions[subscription]].append(message[13:])
        return channels, payloads


@pytest.mark.gstreamer
@requires_gstreamer
@pytest.mark.parametrize(("width_args", "size"), [((), (640, 360)), (("--view-width", "320"), (320, 180))])
def test_client_decodes_image_and_annotations(
    width_args: tuple[str, ...], size: tuple[int, int], tmp_path: Path
) -> None:
    """The drive's 640x360 frames as published: full size by default (640 px), halved with
    ``--view-width 320`` (boxes in the published image's pixels)."""
    width, height = size
    source = f"gst://filesrc location={DRIVE / 'video.mp4'} ! decodebin ! identity sync=true"
    process = subprocess.Popen(
        [sys.executable, "-m", "stopsign.edge.cli.detect", "--source", source, "--no-live",
         "--foxglove", "127.0.0.1:0", "--events", str(tmp_path / "events.jsonl"), *width_args],
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert process.stderr is not None
    lines: list[str] = []
    try:
        url = None
        while url is None:
            line = process.stderr.readline()
            assert line, "edge-detect ended before its Foxglove server listened:\n" + "".join(lines)
            lines.append(line)
            match = re.search(r"edge-detect foxglove: (ws://\S+)", line)
            url = match.group(1) if match else None
        topics = {
            "/stopsign/image/compressed": "foxglove.CompressedImage",
            "/stopsign/annotations": "foxglove.ImageAnnotations",
        }
        channels, payloads = asyncio.run(first_messages(url, topics, timeout_s=30))
    finally:
        process.terminate()
        process.wait(timeout=20)
    image = message_class(channels["/stopsign/image/compressed"]).FromString(
        payloads["/stopsign/image/compressed"][0]
    )
    assert image.format == "jpeg" and image.frame_id == "camera"
    decoded = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (height, width, 3)
    annotation_class = message_class(channels["/stopsign/annotations"])
    with_boxes = [a for a in map(annotation_class.FromString, payloads["/stopsign/annotations"]) if a.points]
    assert with_boxes, "no box in the first five published frames' annotations"
    box = with_boxes[0].points[0]
    assert len(box.points) == 4 and box.type == 2  # LINE_LOOP through the corners
    assert all(0 <= p.x <= width and 0 <= p.y <= height for p in box.points)
    assert box.timestamp.seconds > 1.7e9  # wall-clock time, the same as its image's
    # The health and event channels are advertised as JSON.
    assert channels["/stopsign/health"]["encoding"] == "json"
    assert channels["/stopsign/events"]["encoding"] == "json"


@pytest.mark.parametrize("address", ["0.0.0.0:8765", "[::]:8765", "192.168.1.20:8765"])
def test_foxglove_binds_loopback_only(address: str) -> None:
    with pytest.raises(ConfigError, match="no authentication"):
        DetectConfig(source="test://", foxglove=address).validate()


def test_stalled_client_does_not_hold_the_publisher() -> None:
    """A subscriber that stops reading: publishing goes on at the capped rate, events flow."""
    from stopsign.edge.runtime.health import FrameTimings
    from stopsign.edge.sinks import FrameResult
    from stopsign.edge.sinks.foxglove import FoxgloveConfig, FoxgloveSink
    from stopsign.edge.vision.detections import Detections
    from stopsign.edge.vision.frame import Frame

    # Full-size 720p noise at quality 95: messages large enough to fill the stalled socket.
    sink = FoxgloveSink(
        FoxgloveConfig(port=0, fps=20.0, jpeg_quality=95, backlog=4, max_width=0), ["stop_sign"]
    )
    sink.open()
    noise = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    dets = Detections(np.array([[40, 30, 90, 80]], np.float32), np.array([0.9], np.float32), np.array([0]))

    async def subscribe_then_stall() -> None:
        import socket

        async with websockets.connect(
            f"ws://127.0.0.1:{sink.port}",
            subprotocols=[SUBPROTOCOL],
            max_size=None,
            max_queue=1,
            close_timeout=0.5,
        ) as ws:
            ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            channels: dict[str, Any] = {}
            while "/stopsign/image/compressed" not in channels:
                message = json.loads(await ws.recv())
                if message["op"] == "advertise":
                    channels.update({c["topic"]: c for c in message["channels"]})
            channel = channels["/stopsign/image/compressed"]["id"]
            await ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 1, "channelId": channel}]}))
            ws.transport.pause_reading()  # from here on nothing is read
            costs = []
            for index in range(60):  # 2 s at 30 fps
                result = FrameResult(Frame(index, index, index, noise), dets, FrameTimings())
                t0 = time.perf_counter()
                sink.on_frame(result)
                sink.on_event({"event": "heartbeat", "fps": 30.0})
                costs.append(time.perf_counter() - t0)
                await asyncio.sleep(1 / 30)
            # A reference drop and a deque append. The 95th percentile allows for the GIL's 5 ms
            # switch interval (the publisher holds it between its C calls) and for this thread
            # being descheduled on two busy cores; a wait for the client would take seconds.
            ordered = sorted(costs)
            assert ordered[len(costs) // 2] < 0.0005 and ordered[int(len(costs) * 0.95)] < 0.01, costs

    try:
        asyncio.run(subscribe_then_stall())
        published = sink.published_frames
    finally:
        sink.close()
    assert published >= 12, f"{published} frames published in 2 s at 20 fps with a stalled subscriber"


@pytest.mark.parametrize(("max_width", "frame", "sent"), [(640, (720, 1280), (360, 640)), (0, (720, 1280), (720, 1280)),
                                                         (640, (270, 480), (270, 480))])  # fmt: skip
def test_frames_and_their_annotations_are_scaled_to_the_width(
    max_width: int, frame: tuple[int, int], sent: tuple[int, int]
) -> None:
    """What a Foxglove client gets: the frame scaled to ``max_width``, the boxes, labels and tiles
    scaled with it (a box drawn on the frame's pixels would miss the sign in the scaled image)."""
    from stopsign.edge.runtime.health import FrameTimings
    from stopsign.edge.sinks import FrameResult
    from stopsign.edge.sinks.foxglove import FoxgloveConfig, FoxgloveSink
    from stopsign.edge.sinks.live import Snapshot, TrackOverlay
    from stopsign.edge.vision.detections import Detections
    from stopsign.edge.vision.frame import Frame

    class Recorder:
        def __init__(self) -> None:
            self.logged: list[Any] = []

        def log(self, message: Any, log_time: int) -> None:
            self.logged.append(message)

    sink = FoxgloveSink(FoxgloveConfig(port=0, max_width=max_width), ["stop_sign"])
    sink._channels = {"image": Recorder(), "annotations": Recorder()}
    sink.on_event({"event": "tiles", "tiles": ["0,100,320,160"]})
    dets = Detections(
        np.array([[400, 200, 480, 280]], np.float32), np.array([0.9], np.float32), np.array([0])
    )
    track = TrackOverlay(7, (400.0, 200.0, 480.0, 280.0), 0.9, True, 12.0)
    image = np.full((*frame, 3), 90, np.uint8)
    sink._publish_frame(Snapshot(1, FrameResult(Frame(0, 0, 0, image), dets, FrameTimings()), (track,)))
    jpeg = decoded(sink._channels["image"].logged[0]).data
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2] == sent
    scale = sent[1] / frame[1]
    annotations = decoded(sink._channels["annotations"].logged[0])
    detection, confirmed, tile = ([v for p in a.points for v in (p.x, p.y)] for a in annotations.points)
    box = [400, 200, 480, 200, 480, 280, 400, 280]
    assert detection == pytest.approx([v * scale for v in box])
    assert confirmed == pytest.approx([v * scale for v in box])
    assert tile == pytest.approx([v * scale for v in (0, 100, 320, 100, 320, 260, 0, 260)])
    label = annotations.texts[0].position
    assert (label.x, label.y) == pytest.approx((400 * scale, 200 * scale - 4))  # 4 px above, as shown


def test_a_bad_foxglove_width_is_named() -> None:
    from stopsign.edge.sinks.foxglove import FoxgloveConfig, FoxgloveConfigError

    with pytest.raises(
        FoxgloveConfigError, match="foxglove width must be 0 \\(full size\\) or 160-7680 px, got 100"
    ):
        FoxgloveConfig(max_width=100)
