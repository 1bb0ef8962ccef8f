"""Every bad input we tried, and what the user sees: the table in docs/reliability.md.

    .venv/bin/python bench/bad_inputs.py            # prints the Markdown table
    .venv/bin/python bench/bad_inputs.py --json out.json

Each case builds its bad file in a scratch folder, runs the real command (``edge-detect``,
``edge-export``, ...) as a user would, in its own process, and records the exit code and the
lines of stderr that speak to the user. ``tests/test_bad_inputs.py`` runs the same cases and
checks each against its expectation (exit code, a message that names the file or value).
Cases that need to mount a file system (a full disk, a read-only folder) run only as root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from stopsign.edge.model.spec import ONNX_METADATA_KEY

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "edge" / "assets" / "stopsign.onnx"
DRIVE = REPO / "samples" / "drives" / "day_approach"
VIDEO = DRIVE / "video.mp4"
NOISE = ("effective config", "backend auto:", "tracker:", "[health]")


@dataclass(frozen=True)
class Case:
    """``build(scratch)`` makes the bad input and returns the command's arguments.

    ``code``: the exit code expected; ``says``: substrings the user must see (stderr + stdout),
    ``{scratch}`` replaced by the scratch folder. ``around(scratch)``: a context the command runs
    in (a local broker), entered before ``build``.
    """

    name: str
    what: str
    build: Callable[[Path], list[str]]
    code: int
    says: tuple[str, ...]
    needs_mount: bool = False
    around: Callable[[Path], AbstractContextManager[None]] | None = None


def _detect(*args: str) -> list[str]:
    return ["-m", "stopsign.edge.cli.detect", *args, "--no-health", "--max-frames", "20"]


def _copy_model(scratch: Path) -> Path:
    model = scratch / "model.onnx"
    shutil.copy(MODEL, model)
    shutil.copy(MODEL.with_suffix(".json"), model.with_suffix(".json"))
    return model


def truncated_onnx(scratch: Path) -> list[str]:
    model = scratch / "truncated.onnx"
    model.write_bytes(MODEL.read_bytes()[:100_000])
    return _detect("--model", str(model), "--source", str(VIDEO))


def text_as_onnx(scratch: Path) -> list[str]:
    model = scratch / "notes.onnx"
    model.write_text("these are my notes, not a model\n")
    return _detect("--model", str(model), "--source", str(VIDEO))


def garbage_engine(scratch: Path) -> list[str]:
    engine = scratch / "model.engine"
    engine.write_bytes(os.urandom(4096))
    return _detect("--model", str(engine), "--source", str(VIDEO))


def _onnx_with_spec(scratch: Path, change: Callable[[dict], None] | None) -> Path:
    """The shipped ONNX with its embedded spec changed by ``change`` (None: spec removed)."""
    import onnx

    model = onnx.load(str(MODEL))
    props = {p.key: p.value for p in model.metadata_props}
    del model.metadata_props[:]
    if change is not None:
        spec = json.loads(props.pop(ONNX_METADATA_KEY))
        change(spec)
        props[ONNX_METADATA_KEY] = json.dumps(spec)
    else:
        props.pop(ONNX_METADATA_KEY)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    out = scratch / "model.onnx"
    onnx.save(model, str(out))
    return out


def spec_bad_value(scratch: Path) -> list[str]:
    model = _onnx_with_spec(scratch, lambda spec: spec.update(operating_threshold=1.7))
    return _detect("--model", str(model), "--source", str(VIDEO))


def spec_missing_field(scratch: Path) -> list[str]:
    model = _onnx_with_spec(scratch, lambda spec: spec.pop("class_names"))
    return _detect("--model", str(model), "--source", str(VIDEO))


def spec_absent(scratch: Path) -> list[str]:
    model = _onnx_with_spec(scratch, None)
    return _detect("--model", str(model), "--source", str(VIDEO))


def checkpoint_spec_torn(scratch: Path) -> list[str]:
    ckpt = _checkpoint(scratch)
    text = (ckpt / "spec.json").read_text()
    (ckpt / "spec.json").write_text(text[: len(text) // 2])
    return ["-m", "stopsign.export.cli", "onnx", "--weights", str(ckpt), "--out", str(scratch / "m.onnx")]


def _checkpoint(scratch: Path) -> Path:
    ckpt = scratch / "ckpt"
    subprocess.run([sys.executable, "-m", "stopsign.train.cli", "import-onnx", str(MODEL), "--out", str(ckpt)],
                   check=True, capture_output=True)  # fmt: skip
    return ckpt


def truncated_checkpoint(scratch: Path) -> list[str]:
    ckpt = _checkpoint(scratch)
    weights = ckpt / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:50_000])
    return ["-m", "stopsign.export.cli", "onnx", "--weights", str(ckpt), "--out", str(scratch / "m.onnx")]


def truncated_video(scratch: Path) -> list[str]:
    video = scratch / "truncated.mp4"
    video.write_bytes(VIDEO.read_bytes()[:20_000])
    return _detect("--source", str(video))


def random_video(scratch: Path) -> list[str]:
    video = scratch / "random.mp4"
    video.write_bytes(os.urandom(50_000))
    return _detect("--source", str(video))


def torn_drive(scratch: Path) -> list[str]:
    drive = scratch / "drive"
    shutil.copytree(DRIVE, drive)
    lines = (drive / "frames.jsonl").read_text().splitlines()
    lines[10] = lines[10][: len(lines[10]) // 2]  # a line torn in the middle (power lost mid-write)
    (drive / "frames.jsonl").write_text("\n".join(lines) + "\n")
    return _detect("--source", f"drive://{drive}")


def _bag(
    scratch: Path, name: str, frames: int = 8, raw: bool = False, damage: Callable | None = None
) -> Path:
    """A rosbag2 MCAP of the sample drive's first frames, written by rosbags' own writer (not the
    project's), on ``/camera/image_raw`` (bgr8) or ``/camera/image_raw/compressed`` (JPEG).
    ``damage(i, msg)`` may change message i before it is written."""
    import cv2
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    t = store.types
    capture = cv2.VideoCapture(str(VIDEO))
    path = scratch / name
    kind = "sensor_msgs/msg/Image" if raw else "sensor_msgs/msg/CompressedImage"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        topic = "/camera/image_raw" if raw else "/camera/image_raw/compressed"
        connection = writer.add_connection(topic, kind, typestore=store)
        for i in range(frames):
            ok, image = capture.read()
            assert ok, VIDEO
            stamp = 1_700_000_000_000_000_000 + i * 66_666_667
            sec, nanosec = divmod(stamp, 1_000_000_000)
            header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                             frame_id="camera")  # fmt: skip
            if raw:
                msg = t[kind](header=header, height=image.shape[0], width=image.shape[1], encoding="bgr8",
                              is_bigendian=0, step=image.shape[1] * 3, data=image.reshape(-1))  # fmt: skip
            else:
                msg = t[kind](header=header, format="jpeg", data=cv2.imencode(".jpg", image)[1].reshape(-1))
            if damage is not None:
                damage(i, msg)
            writer.write(connection, stamp, store.serialize_cdr(msg, kind))
    capture.release()
    return path


def bag_truncated(scratch: Path) -> list[str]:
    whole = _bag(scratch, "whole")
    data = (whole / "whole.mcap").read_bytes()
    (scratch / "cut.mcap").write_bytes(data[: len(data) * 2 // 3])
    return _detect("--source", str(scratch / "cut.mcap"))


def bag_garbage(scratch: Path) -> list[str]:
    (scratch / "random.mcap").write_bytes(os.urandom(50_000))
    return _detect("--source", str(scratch / "random.mcap"))


def bag_empty(scratch: Path) -> list[str]:
    return _detect("--source", f"bag://{_bag(scratch, 'empty', frames=0)}")


def bag_missing_topic(scratch: Path) -> list[str]:
    return _detect("--source", f"bag://{_bag(scratch, 'run')}?topic=/front/image_raw")


def bag_unknown_encoding(scratch: Path) -> list[str]:
    def depth_image(i: int, msg: object) -> None:
        if i == 3:
            msg.encoding = "16UC1"  # type: ignore[attr-defined]

    return _detect("--source", f"bag://{_bag(scratch, 'run', raw=True, damage=depth_image)}")


def bag_undecodable_image(scratch: Path) -> list[str]:
    def garbage(i: int, msg: object) -> None:
        if i == 3:
            msg.data = msg.data[: len(msg.data) // 20]  # type: ignore[attr-defined]

    return _detect("--source", f"bag://{_bag(scratch, 'run', damage=garbage)}")


def bag_out_of_order(scratch: Path) -> list[str]:
    def step_back(i: int, msg: object) -> None:
        if i == 4:
            msg.header.stamp.sec -= 1  # type: ignore[attr-defined]

    return _detect("--source", f"bag://{_bag(scratch, 'run', damage=step_back)}")


def detections_full_disk(scratch: Path) -> list[str]:
    return _detect("--source", str(VIDEO), "--detections", "/dev/full")


def events_full_disk(scratch: Path) -> list[str]:
    return _detect("--source", str(VIDEO), "--events", "/dev/full")


def save_full_disk(scratch: Path) -> list[str]:
    return _detect("--source", str(VIDEO), "--save", str(scratch / "small" / "annotated.mp4"))


def save_read_only(scratch: Path) -> list[str]:
    return _detect("--source", str(VIDEO), "--save", str(scratch / "readonly" / "annotated.mp4"))


def events_read_only(scratch: Path) -> list[str]:
    return _detect("--source", str(VIDEO), "--events", str(scratch / "readonly" / "events.jsonl"))


def bad_threshold(scratch: Path) -> list[str]:
    return _detect("--source", str(VIDEO), "--conf", "1.5")


def mqtt_bad_url(scratch: Path) -> list[str]:
    return _detect("--source", str(VIDEO), "--mqtt", "mqtts://127.0.0.1:88x3/cars/car1")


def mqtt_missing_ca(scratch: Path) -> list[str]:
    return _detect("--source", str(VIDEO), "--mqtt", "mqtts://127.0.0.1:8883/cars/car1",
                   "--mqtt-ca", str(scratch / "fleet-ca.crt"))  # fmt: skip


@contextlib.contextmanager
def local_broker(scratch: Path) -> Iterator[None]:
    """A real mosquitto on 127.0.0.1 (TLS, passwords, ACL: deploy/mqtt/); its folder is scratch/broker."""
    from stopsign.edge.sinks.mqtt_broker import LocalBroker

    broker = LocalBroker.create(scratch / "broker")
    broker.start()
    (scratch / "broker.port").write_text(str(broker.port))
    try:
        yield
    finally:
        broker.stop(kill=False)


def mqtt_wrong_password(scratch: Path) -> list[str]:
    credentials = scratch / "credentials"
    credentials.write_text("username=car1\npassword=not-the-password\n")
    credentials.chmod(0o600)
    port = (scratch / "broker.port").read_text()
    return _detect("--source", str(VIDEO), "--mqtt", f"mqtts://127.0.0.1:{port}/cars/car1",
                   "--mqtt-ca", str(scratch / "broker" / "ca.crt"), "--mqtt-credentials", str(credentials),
                   "--mqtt-queue", str(scratch / "queue.sqlite"))  # fmt: skip


def can_unknown_interface(scratch: Path) -> list[str]:
    return _detect("--source", str(VIDEO), "--can", "pcann:PCAN_USBBUS1")


def can_dbc_lacking_signals(scratch: Path) -> list[str]:
    text = (REPO / "deploy" / "can" / "stopsign.dbc").read_text()
    dbc = scratch / "user.dbc"
    kept = [line for line in text.splitlines() if not line.startswith((" SG_ TrackId ", " SG_ Fps "))]
    dbc.write_text("\n".join(kept) + "\n")
    return _detect("--source", str(VIDEO), "--can", "virtual:ch0", "--can-dbc", str(dbc))


def can_missing_interface(scratch: Path) -> list[str]:
    # No can9 here (and no SocketCAN at all on a kernel without the can module): warn, retry, go on.
    return _detect("--source", str(VIDEO), "--can", "socketcan:can9")


CASES = (
    Case("truncated_onnx", "ONNX file cut short", truncated_onnx, 1, ("truncated.onnx", "cannot load it")),
    Case("text_as_onnx", "a text file named .onnx", text_as_onnx, 1, ("notes.onnx", "cannot load it")),
    Case("garbage_engine", "random bytes named .engine (no TensorRT here)", garbage_engine, 1,
         ("model.engine", "TensorRT")),
    Case("spec_bad_value", "ONNX whose model spec says operating_threshold 1.7", spec_bad_value, 1,
         ("model.onnx", "operating_threshold")),
    Case("spec_missing_field", "ONNX whose model spec lacks class_names", spec_missing_field, 1,
         ("model.onnx", "class_names")),
    Case("spec_absent", "ONNX without a model spec (not exported by edge-export)", spec_absent, 1,
         ("model.onnx",)),
    Case("checkpoint_spec_torn", "checkpoint spec.json cut mid-write", checkpoint_spec_torn, 1, ("spec.json", "not valid JSON")),
    Case("truncated_checkpoint", "checkpoint weights.safetensors cut short", truncated_checkpoint, 1,
         ("weights.safetensors", "corrupt")),
    Case("truncated_video", "MP4 cut after 20 kB", truncated_video, 1, ("truncated.mp4", "no playable streams")),
    Case("random_video", "random bytes named .mp4", random_video, 1, ("random.mp4", "Could not determine type")),
    Case("torn_drive", "recorded drive: frames.jsonl line torn", torn_drive, 1, ("frames.jsonl:11",)),
    Case("detections_full_disk", "--detections on a full disk (/dev/full)", detections_full_disk, 0,
         ("sink detections failed", "No space left on device")),
    Case("events_full_disk", "--events on a full disk (/dev/full)", events_full_disk, 0,
         ("sink events failed", "No space left on device")),
    Case("save_full_disk", "--save on a 64 KiB file system", save_full_disk, 0,
         ("sink video failed", "No space left on device"), needs_mount=True),
    Case("save_read_only", "--save into a read-only folder", save_read_only, 0,
         ("sink video failed", "annotated.mp4"), needs_mount=True),
    Case("events_read_only", "--events into a read-only folder", events_read_only, 0,
         ("sink events failed", "Read-only file system", "events.jsonl"), needs_mount=True),
    Case("bad_threshold", "--conf 1.5", bad_threshold, 2, ("conf",)),
    Case("mqtt_bad_url", "--mqtt URL with a port that is not a number", mqtt_bad_url, 2, ("--mqtt", "port")),
    Case("mqtt_missing_ca", "--mqtt-ca file that does not exist", mqtt_missing_ca, 2,
         ("--mqtt-ca", "fleet-ca.crt", "no such file")),
    Case("mqtt_wrong_password", "MQTT broker (real mosquitto) refuses the password", mqtt_wrong_password, 0,
         ("refused the connection: Not authorized", "user 'car1'", "credentials"), around=local_broker),
    Case("can_unknown_interface", "--can pcann:PCAN_USBBUS1 (no such python-can interface)",
         can_unknown_interface, 2, ("pcann", "unknown CAN interface")),
    Case("can_dbc_lacking_signals", "--can-dbc: a DBC without TrackId and Fps", can_dbc_lacking_signals, 2,
         ("user.dbc", "StopSignEvent has no signal TrackId", "DetectorStatus has no signal Fps")),
    Case("can_missing_interface", "--can socketcan:can9 (no such interface)", can_missing_interface, 0,
         ("cannot open socketcan:can9", "detection goes on", '"sink_error"')),
    Case("bag_truncated", "ROS 2 bag (.mcap) cut to 2/3 (recorder killed)", bag_truncated, 1,
         ("cut.mcap: not a readable ROS bag", "cut short", "mcap recover")),
    Case("bag_garbage", "random bytes named .mcap", bag_garbage, 1, ("random.mcap: not a readable ROS bag",)),
    Case("bag_empty", "rosbag2 with its image topic but no messages", bag_empty, 1,
         ("empty: no messages on /camera/image_raw/compressed",)),
    Case("bag_missing_topic", "bag://...?topic= a topic the bag lacks", bag_missing_topic, 1,
         ("no topic /front/image_raw", "image topics: ['/camera/image_raw/compressed']")),
    Case("bag_unknown_encoding", "bag: one Image in encoding 16UC1 (depth)", bag_unknown_encoding, 0,
         ("frame_rejected", "/camera/image_raw at stamp 1700000000200000001: unknown encoding '16UC1'")),
    Case("bag_undecodable_image", "bag: one CompressedImage cut to 5% of its JPEG", bag_undecodable_image, 0,
         ("frame_rejected", "/camera/image_raw/compressed at stamp 1700000000200000001", "do not decode")),
    Case("bag_out_of_order", "bag: a header stamp 1 s before the previous frame's", bag_out_of_order, 0,
         ("frame_rejected", "at stamp 1699999999266666668: stamp not after the previous")),
)  # fmt: skip


def can_mount() -> bool:
    return sys.platform == "linux" and os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def scratch_folder(mounts: bool) -> Iterator[Path]:
    """A scratch folder; with ``mounts`` also ``small/`` (64 KiB tmpfs) and ``readonly/`` (ro tmpfs)."""
    scratch = Path(tempfile.mkdtemp(prefix="bad_inputs_"))
    mounted: list[Path] = []
    try:
        if mounts:
            for name, options in (("small", "size=64k"), ("readonly", "ro,size=64k")):
                target = scratch / name
                target.mkdir()
                subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True)
                mounted.append(target)
        yield scratch
    finally:
        for target in mounted:
            subprocess.run(["umount", str(target)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)


def run_case(case: Case, timeout_s: float = 120) -> dict:
    """Run one case; returns its exit code and what the user saw (stderr lines + status events)."""
    with scratch_folder(case.needs_mount) as scratch, _around(case, scratch):
        argv = case.build(scratch)
        done = subprocess.run(
            [sys.executable, *argv], capture_output=True, text=True, timeout=timeout_s, cwd=REPO
        )
        seen = [
            line for line in done.stderr.splitlines() if line.strip() and not any(n in line for n in NOISE)
        ]
        for kind in ('"sink_error"', '"frame_rejected"', '"source_error"'):
            seen += [line for line in done.stdout.splitlines() if kind in line][:1]
        text = "\n".join(seen).replace(str(scratch), "{scratch}")
    return {"case": case.name, "what": case.what, "code": done.returncode, "seen": text}


def _around(case: Case, scratch: Path) -> AbstractContextManager[None]:
    return case.around(scratch) if case.around is not None else contextlib.nullcontext()


def markdown(rows: Sequence[dict]) -> str:
    out = ["| bad input | exit | what the user sees |", "|---|---|---|"]
    for row in rows:
        seen = row["seen"].replace("|", "\\|").replace("\n", "<br>")
        out.append(f"| {row['what']} | {row['code']} | {seen[:400]} |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    args = parser.parse_args(argv)
    chosen = [c for c in CASES if not args.cases or c.name in args.cases]
    rows = []
    for case in chosen:
        if case.needs_mount and not can_mount():
            rows.append(
                {"case": case.name, "what": case.what, "code": None, "seen": "(not run: needs root to mount)"}
            )
            continue
        rows.append(run_case(case))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
