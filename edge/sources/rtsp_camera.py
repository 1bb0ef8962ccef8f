"""A real RTSP network camera on loopback, serving a recorded drive: for fault tests and benches.

    python -m stopsign.edge.sources.rtsp_camera --video samples/drives/day_approach/video.mp4 \\
        --port 8554 --path /drive

GStreamer's own RTSP server (``gir1.2-gst-rtsp-server-1.0``) encodes H.264 live and sends it as
RTP, exactly as an IP camera does. It behaves like a camera looking at the world, not like a
file player: the frame it sends is the one at the wall-clock position since ``--epoch`` (the
video loops), so a client that reconnects after a gap sees the scene moved on by the gap, and a
restarted server process with the same epoch carries on where the old one would be. Each frame
gets faint sensor noise (a real sensor never sends two identical frames; the edge pipeline
rejects identical ones as a frozen driver). ``--hold-frame N`` shows frame N forever: a car
waiting at a stop sign.

``--encoded`` serves the file's own H.264 stream as it is, without decoding or re-encoding: a
camera that encodes on a chip of its own, so that the server costs the machine under test almost
nothing (benches that measure the detector's decode use it; the stream plays once, in real time).

``--garbage`` serves no RTSP at all: every connection gets random bytes, as from a device that
lost its mind or a wrong service on the port.

Run it as its own process so that a test can kill it (SIGKILL: the camera's power is cut),
pause it (SIGSTOP: the socket stays open, no data flows) and start it again.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

NOISE_LEVEL = 2  # +-grey levels of sensor noise per pixel
KEYFRAME_INTERVAL = 15  # frames: a reconnecting client waits at most this long for a decodable frame


def load_frames(video: Path, hold_frame: int | None, max_frames: int) -> tuple[list[np.ndarray], float]:
    """The video's frames (BGR) and frame rate; only frame ``hold_frame`` when that is given."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise SystemExit(f"rtsp_camera: cannot read {video}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 15.0
    frames: list[np.ndarray] = []
    index = 0
    while len(frames) < max_frames:
        ok, image = capture.read()
        if not ok:
            break
        if hold_frame is None or index == hold_frame:
            frames.append(image)
            if hold_frame is not None:
                break
        index += 1
    capture.release()
    if not frames:
        raise SystemExit(f"rtsp_camera: {video} has no frame {hold_frame if hold_frame is not None else 0}")
    return frames, fps


class _Feeder:
    """Pushes frames into one client's ``appsrc`` at the camera's rate until the media goes away."""

    def __init__(self, appsrc, frames: list[np.ndarray], fps: float, epoch: float, gst) -> None:
        self.appsrc, self.frames, self.fps, self.epoch, self.gst = appsrc, frames, fps, epoch, gst
        self.rng = np.random.default_rng()
        self.stop = threading.Event()
        self.frame_ns = int(1e9 / fps)
        self.sent = 0
        threading.Thread(target=self._run, name="rtsp-camera-feed", daemon=True).start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            position = int((time.time() - self.epoch) * self.fps) % len(self.frames)
            image = self.frames[position]
            noise = self.rng.integers(-NOISE_LEVEL, NOISE_LEVEL + 1, image.shape, dtype=np.int16)
            noisy = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
            buffer = self.gst.Buffer.new_wrapped(noisy.tobytes())
            buffer.pts = buffer.dts = self.sent * self.frame_ns
            buffer.duration = self.frame_ns
            if self.appsrc.emit("push-buffer", buffer) != self.gst.FlowReturn.OK:
                return  # the client went away (flushing) or the pipeline stopped
            self.sent += 1
            next_at += 1.0 / self.fps
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def serve_rtsp(
    frames: list[np.ndarray], fps: float, port: int, path: str, epoch: float, encoded: Path | None = None
) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    height, width = frames[0].shape[:2]
    if encoded is not None:
        location = str(encoded.resolve()).replace('"', '\\"')
        launch = (
            f'( filesrc location="{location}" ! parsebin ! rtph264pay name=pay0 pt=96 config-interval=1 )'
        )
    else:
        launch = (
            f"( appsrc name=camera is-live=true format=time do-timestamp=false "
            f"caps=video/x-raw,format=BGR,width={width},height={height},framerate={round(fps)}/1 "
            f"! videoconvert ! video/x-raw,format=I420 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={KEYFRAME_INTERVAL} "
            f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)  # one pipeline per client, as a camera with a session per viewer
    feeders: list[_Feeder] = []

    def on_configure(_factory, media) -> None:
        appsrc = media.get_element().get_by_name_recurse_up("camera")
        feeder = _Feeder(appsrc, frames, fps, epoch, Gst)
        feeders.append(feeder)
        media.connect("unprepared", lambda _media: feeder.stop.set())

    if encoded is None:
        factory.connect("media-configure", on_configure)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"rtsp_camera: cannot listen on 127.0.0.1:{port}")
    loop = GLib.MainLoop()

    def stop(*_args) -> bool:
        for feeder in feeders:
            feeder.stop.set()
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, stop)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, stop)
    print(f"rtsp_camera: serving rtsp://127.0.0.1:{port}{path} ({width}x{height}@{fps:g})", flush=True)
    loop.run()


def serve_garbage(port: int) -> None:
    """Answer every connection with random bytes until the peer hangs up."""
    listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
    print(f"rtsp_camera: serving garbage on 127.0.0.1:{port}", flush=True)

    def answer(connection: socket.socket) -> None:
        with connection:
            try:
                while True:
                    connection.sendall(os.urandom(1024))
                    time.sleep(0.05)
            except OSError:
                return

    while True:
        connection, _ = listener.accept()
        threading.Thread(target=answer, args=(connection,), daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stopsign.edge.sources.rtsp_camera", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--video", type=Path, help="the video to serve (e.g. a drive's video.mp4)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/drive", help="mount point (default /drive)")
    parser.add_argument("--epoch", type=float, default=None,
                        help="wall-clock time (s) of the video's first frame (default: now)")  # fmt: skip
    parser.add_argument("--hold-frame", type=int, default=None, help="serve only this frame, forever")
    parser.add_argument("--max-frames", type=int, default=900, help="frames kept in memory (default 900)")
    parser.add_argument("--garbage", action="store_true", help="answer every connection with random bytes")
    parser.add_argument(
        "--encoded", action="store_true", help="serve the video's H.264 stream as it is (no re-encoding)"
    )
    args = parser.parse_args(argv)
    if args.garbage:
        serve_garbage(args.port)
        return 0
    if args.video is None:
        parser.error("--video is required (unless --garbage)")
    frames, fps = load_frames(args.video, args.hold_frame, 1 if args.encoded else args.max_frames)
    epoch = time.time() if args.epoch is None else args.epoch
    serve_rtsp(frames, fps, args.port, args.path, epoch, args.video if args.encoded else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
