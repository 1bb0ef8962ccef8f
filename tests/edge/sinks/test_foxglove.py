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
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    assert channel["encoding"] == "protobuf" and channel["schemaEncoding"] == "protobuf"
    files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(channel["schema"]))
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))


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
def test_client_decodes_image_and_annotations(tmp_path: Path) -> None:
    source = f"gst://filesrc location={DRIVE / 'video.mp4'} ! decodebin ! identity sync=true"
    process = subprocess.Popen(
        [sys.executable, "-m", "stopsign.edge.cli.detect", "--source", source, "--no-live",
         "--foxglove", "127.0.0.1:0", "--events", str(tmp_path / "events.jsonl")],
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
    assert decoded.shape == (360, 640, 3)
    annotation_class = message_class(channels["/stopsign/annotations"])
    with_boxes = [a for a in map(annotation_class.FromString, payloads["/stopsign/annotations"]) if a.points]
    assert with_boxes, "no box in the first five published frames' annotations"
    box = with_boxes[0].points[0]
    assert len(box.points) == 4 and box.type == 2  # LINE_LOOP through the corners
    assert all(0 <= p.x <= 640 and 0 <= p.y <= 360 for p in box.points)
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

    sink = FoxgloveSink(FoxgloveConfig(port=0, fps=20.0, jpeg_quality=95, backlog=4), ["stop_sign"])
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
