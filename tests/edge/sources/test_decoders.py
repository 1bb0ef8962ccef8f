"""Hardware video decoders: which one the source prefers for the registry present, and what it reports.

No hardware decoder runs on this machine (no GPU, no VA-API device): the choice is tested over
made-up registries, the ranking mechanism with two software decoders, and the report on a real file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stopsign.edge.cli.detect import decoder_choice, main
from stopsign.edge.sources.launch import preferred_decoders
from tests.edge.helpers import requires_gstreamer

REPO = Path(__file__).resolve().parents[3]
DRIVE = REPO / "samples" / "drives" / "day_approach"


@pytest.mark.parametrize(
    ("registered", "expected"),
    [
        (set(), []),
        ({"avdec_h264", "jpegdec"}, []),
        ({"nvv4l2decoder", "nvvidconv", "nvjpegdec"}, ["nvv4l2decoder"]),
        ({"vah264dec", "vah265dec"}, ["vah264dec", "vah265dec"]),
        ({"vaapih264dec"}, ["vaapih264dec"]),
        ({"vaapih264dec", "vah264dec"}, ["vah264dec", "vaapih264dec"]),  # the newer va plugin first
        ({"vah265dec", "nvv4l2decoder"}, ["nvv4l2decoder", "vah265dec"]),
    ],
)
def test_the_registered_hardware_decoders_are_preferred_in_order(
    registered: set[str], expected: list[str]
) -> None:
    assert preferred_decoders(registered) == expected


class _Source:
    def __init__(self, decoder: str | None) -> None:
        self.decoder = decoder


@pytest.mark.parametrize(
    ("decoder", "text"),
    [
        (None, None),
        ("avdec_h264", "avdec_h264 (software)"),
        ("nvv4l2decoder", "nvv4l2decoder (hardware: NVIDIA Jetson)"),
        ("vah264dec", "vah264dec (hardware: VA-API (Intel, AMD))"),
    ],
)
def test_the_choice_names_hardware_or_software(decoder: str | None, text: str | None) -> None:
    assert decoder_choice(_Source(decoder)) == text  # type: ignore[arg-type]


@requires_gstreamer
def test_a_recorded_drive_reports_its_software_decoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    code = main(
        [
            "--source",
            f"drive://{DRIVE}",
            "--max-frames",
            "3",
            "--backend",
            "onnxruntime",
            "--events",
            str(events),
        ]
    )
    assert code == 0
    started = next(e for e in map(json.loads, events.read_text().splitlines()) if e["event"] == "started")
    assert started["source_decoder"] == "avdec_mpeg4 (software)"  # the sample drives are MPEG-4 Part 2
    assert "decoder avdec_mpeg4" in started["source_mode"]
    assert "edge-detect source: " in capsys.readouterr().err


RANKED = """
import sys
from stopsign.edge.sources.base import SourceOptions
from stopsign.edge.sources.factory import open_source
from stopsign.edge.sources.gst_loader import prefer_decoders
if sys.argv[2] != "-":
    prefer_decoders([sys.argv[2]])
source = open_source(f"file://{sys.argv[1]}", SourceOptions(), lambda kind, fields: None)
print(source.decoder)
source.close()
"""


@requires_gstreamer
@pytest.mark.parametrize(("prefer", "expected"), [("-", "jpegdec"), ("avdec_mjpeg", "avdec_mjpeg")])
def test_a_preferred_decoder_is_the_one_decodebin_takes(tmp_path: Path, prefer: str, expected: str) -> None:
    """jpegdec outranks avdec_mjpeg by default; ranked first, avdec_mjpeg decodes: the mechanism
    that puts nvv4l2decoder or vah264dec in front of the software decoders."""
    video = tmp_path / "mjpeg.avi"
    subprocess.run(
        ["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=10", "!", "video/x-raw,width=160,height=120",
         "!", "jpegenc", "!", "avimux", "!", "filesink", f"location={video}"],
        check=True, timeout=60,
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", RANKED, str(video), prefer], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == expected
