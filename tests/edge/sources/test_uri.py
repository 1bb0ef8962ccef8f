"""Source strings -> SourceURI, and the GStreamer launch lines built for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from stopsign.edge.sources.launch import CameraOptions, candidates_for, csi_candidates, v4l2_candidates
from stopsign.edge.sources.uri import SourceURIError, parse_source_uri


@pytest.mark.parametrize(
    ("text", "kind", "target"),
    [
        ("/dev/video0", "v4l2", "/dev/video0"),
        ("v4l2:///dev/video2", "v4l2", "/dev/video2"),
        ("1", "v4l2", "/dev/video1"),
        ("csi://0", "csi", "0"),
        ("file://drive.mp4", "file", "drive.mp4"),
        ("file:///data/drive.mp4", "file", "/data/drive.mp4"),
        ("drive://drives/d1", "drive", "drives/d1"),
        ("rtsp://cam.local:554/stream", "rtsp", "rtsp://cam.local:554/stream"),
        ("test://", "test", ""),
        ("gst://videotestsrc ! videoconvert", "gst", "videotestsrc ! videoconvert"),
    ],
)
def test_parse_known_forms(text: str, kind: str, target: str) -> None:
    uri = parse_source_uri(text)
    assert (uri.kind, uri.target) == (kind, target)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty source"),
        ("ftp://x", "unknown source scheme"),
        ("v4l2://video0", "v4l2:///dev/videoN"),
        ("csi://front", "sensor number"),
        ("test://?colour=red", "unknown test:// options"),
        ("test://?fps=fast", "fps must be an integer"),
        ("test://?size=640", "640x480"),
        ("gst://  ", "no launch line"),
        ("no/such/place.mp4", "no such file or folder"),
    ],
)
def test_parse_errors_quote_the_input(text: str, message: str) -> None:
    with pytest.raises(SourceURIError, match=message):
        parse_source_uri(text)


def test_folder_is_images_or_drive(tmp_path: Path) -> None:
    (tmp_path / "stills").mkdir()
    (tmp_path / "drive").mkdir()
    (tmp_path / "drive" / "frames.jsonl").write_text("")
    assert parse_source_uri(str(tmp_path / "stills")).kind == "images"
    assert parse_source_uri(str(tmp_path / "drive")).kind == "drive"


def test_test_options_reach_the_launch_line() -> None:
    uri = parse_source_uri("test://?pattern=snow&fps=60&size=320x240&num-buffers=7&live=0")
    (candidate,) = candidates_for(uri, CameraOptions(), frozenset())
    assert "pattern=snow" in candidate.line and "is-live=false" in candidate.line
    assert "num-buffers=7" in candidate.line and "width=320,height=240,framerate=60/1" in candidate.line


@pytest.mark.parametrize(
    ("elements", "jpeg_decoder"),
    [
        (frozenset(), "jpegdec"),
        (frozenset({"nvv4l2decoder", "nvvidconv"}), "nvv4l2decoder mjpeg=1 ! nvvidconv"),
        (frozenset({"nvjpegdec", "nvvidconv"}), "nvjpegdec ! nvvidconv"),
        (frozenset({"nvjpegdec"}), "jpegdec"),  # no nvvidconv: the NVMM output could not be converted
    ],
)
def test_v4l2_tries_mjpg_then_yuyv_then_anything(elements: frozenset[str], jpeg_decoder: str) -> None:
    camera = CameraOptions(size=(1280, 720), fps=30)
    mjpg, yuyv, anything = v4l2_candidates("/dev/video0", camera, elements)
    assert mjpg.line.startswith(
        "v4l2src device=/dev/video0 ! image/jpeg,width=1280,height=720,framerate=30/1"
    )
    assert jpeg_decoder in mjpg.line
    assert "video/x-raw,format=YUY2,width=1280,height=720,framerate=30/1" in yuyv.line
    assert anything.line == "v4l2src device=/dev/video0"


def test_csi_needs_jetson_elements() -> None:
    with pytest.raises(SourceURIError, match="nvarguscamerasrc"):
        csi_candidates("0", CameraOptions(), frozenset())
    (candidate,) = csi_candidates(
        "1", CameraOptions((1920, 1080), 30), frozenset({"nvarguscamerasrc", "nvvidconv"})
    )
    assert candidate.line.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1920")


def test_file_uses_nvvidconv_only_on_jetson(tmp_path: Path) -> None:
    video = tmp_path / "a b.mp4"
    video.write_bytes(b"x")
    uri = parse_source_uri(f"file://{video}")
    (plain,) = candidates_for(uri, CameraOptions(), frozenset())
    (jetson,) = candidates_for(uri, CameraOptions(), frozenset({"nvvidconv"}))
    assert plain.line == f"filesrc location='{video}' ! decodebin"
    assert jetson.line.endswith("decodebin ! nvvidconv ! video/x-raw,format=BGRx")
