"""deploy/jetson/install.sh: platform checks, dry run and device check, run for real on this host.

The script only changes a system on a JetPack 6 Jetson, as root; here it runs in --dry-run
(every check, every step printed), in --check, and without --dry-run where it must refuse.
Fake platform files (STOPSIGN_SYSROOT) stand in for a Jetson's /etc/nv_tegra_release,
/proc/device-tree/model and /etc/os-release; the script refuses to change anything with them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

JETSON_MODEL = "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\0"
UBUNTU_2204 = 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\nVERSION_ID="22.04"\n'
DEVICE_FACTS = ("TensorRT: ", "CUDA: ", "GStreamer: ", "cameras: ", "nvarguscamerasrc: ")


def run_install(
    jetson_dir: Path, *args: str, sysroot: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run install.sh with `args`; with `sysroot`, platform files are read from that folder."""
    env = {k: v for k, v in os.environ.items() if k != "STOPSIGN_SYSROOT"}
    if sysroot is not None:
        env["STOPSIGN_SYSROOT"] = str(sysroot)
    return subprocess.run(
        ["bash", str(jetson_dir / "install.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def make_sysroot(root: Path, release: str | None, model: str | None, os_release: str | None) -> Path:
    """A folder with the platform files install.sh reads; None leaves a file out."""
    files = {
        "etc/nv_tegra_release": release,
        "proc/device-tree/model": model,
        "etc/os-release": os_release,
    }
    for relative, text in files.items():
        if text is not None:
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return root


def host_is_jetson() -> bool:
    model = Path("/proc/device-tree/model")
    return Path("/etc/nv_tegra_release").exists() or (
        model.exists() and "NVIDIA Jetson" in model.read_bytes().decode(errors="replace")
    )


def test_dry_run_on_this_host_prints_every_check_and_step(jetson_dir: Path) -> None:
    result = run_install(jetson_dir, "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for section in (
        "== platform",
        "== apt packages",
        "== service user",
        "== virtual environment",
        "== settings",
        "== model",
        "== TensorRT engine",
        "== systemd service",
        "== device check",
    ):
        assert section in out
    for fact in DEVICE_FACTS:
        assert f"\n  {fact}" in out
    assert "[run]" not in out, "a dry run must not run anything"
    assert "--system-site-packages /opt/stopsign-edge/venv" in out
    assert "edge-export engine /opt/stopsign-edge/model/stopsign.onnx --precision fp16 --if-stale" in out
    if not host_is_jetson():
        assert "[fail] not a Jetson" in out
        assert "check(s) would stop a real install on this host" in out


def test_dry_run_is_idempotent(jetson_dir: Path) -> None:
    first = run_install(jetson_dir, "--dry-run")
    second = run_install(jetson_dir, "--dry-run")
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout


def test_real_run_on_this_host_refuses_with_clear_message(jetson_dir: Path) -> None:
    if host_is_jetson():
        pytest.skip("this host is a Jetson: the refusal is for other hosts")
    result = run_install(jetson_dir)
    assert result.returncode == 1
    assert "install.sh: error: not a Jetson" in result.stderr
    assert "JetPack 6" in result.stderr and "--dry-run" in result.stderr
    assert "[run]" not in result.stdout and "== apt packages" not in result.stdout


def test_check_prints_device_facts(jetson_dir: Path) -> None:
    result = run_install(jetson_dir, "--check")
    assert result.returncode == 0, result.stderr
    for fact in DEVICE_FACTS:
        assert f"\n  {fact}" in result.stdout


@pytest.mark.parametrize(
    ("release", "model", "os_release", "dry_run_lines", "refusal"),
    [
        pytest.param(
            None,
            None,
            None,
            ["[fail] not a Jetson", "[fail] JetPack version unknown", "[fail] OS: unknown unknown"],
            "not a Jetson",
            id="not-a-jetson",
        ),
        pytest.param(
            "# R36 (release), REVISION: 4.0, GCID: 0, BOARD: generic, EABI: aarch64\n",
            JETSON_MODEL,
            UBUNTU_2204,
            [
                "[ok] Jetson: NVIDIA Jetson Orin Nano",
                "[ok] L4T R36: JetPack 6",
                "[ok] OS: Ubuntu 22.04",
                "nvidia-l4t-gstreamer",
            ],
            None,
            id="jetpack6",
        ),
        pytest.param(
            "# R35 (release), REVISION: 5.0, GCID: 0, BOARD: t186ref, EABI: aarch64\n",
            "NVIDIA Jetson Xavier NX Developer Kit\0",
            'ID=ubuntu\nVERSION_ID="20.04"\n',
            [
                "[ok] Jetson: NVIDIA Jetson Xavier NX",
                "[fail] L4T R35 is JetPack 5",
                "out of scope",
                "[fail] OS: ubuntu 20.04",
            ],
            "L4T R35 is JetPack 5 (Python 3.8, TensorRT 8.5), which is out of scope",
            id="jetpack5-out-of-scope",
        ),
        pytest.param(
            "# R32 (release), REVISION: 7.4\n",
            "NVIDIA Jetson Nano Developer Kit\0",
            None,
            ["[fail] L4T R32 is not supported"],
            "L4T R32 is not supported",
            id="jetpack4",
        ),
        pytest.param(
            None,
            JETSON_MODEL,
            UBUNTU_2204,
            ["[ok] Jetson: NVIDIA Jetson Orin Nano", "[fail] JetPack version unknown"],
            "JetPack version unknown",
            id="model-without-release-file",
        ),
    ],
)
def test_platform_checks(
    jetson_dir: Path,
    tmp_path: Path,
    release: str | None,
    model: str | None,
    os_release: str | None,
    dry_run_lines: list[str],
    refusal: str | None,
) -> None:
    sysroot = make_sysroot(tmp_path, release, model, os_release)
    dry = run_install(jetson_dir, "--dry-run", sysroot=sysroot)
    assert dry.returncode == 0, dry.stderr
    for line in dry_run_lines:
        assert line in dry.stdout
    real = run_install(jetson_dir, sysroot=sysroot)
    # Never a change with fake platform files: a failed check, or the test-mode refusal.
    assert real.returncode == 1
    assert "[run]" not in real.stdout
    assert (refusal or "STOPSIGN_SYSROOT is set") in real.stderr


@pytest.mark.parametrize(
    ("env_text", "expected"),
    [
        (
            "PRECISION=fp32\nENGINE=/var/lib/stopsign-edge/engines/a.fp32.engine\n",
            "--precision fp32 --if-stale --timing-cache /var/lib/stopsign-edge/engines/timing.cache "
            "--out /var/lib/stopsign-edge/engines/a.fp32.engine",
        ),
        (
            'ONNX="/models/my model.onnx"\nPRECISION=fp16\nENGINE=/e.engine\n',
            r"engine /models/my\ model.onnx --precision fp16",
        ),
        ("# PRECISION=int8 is commented out\nPRECISION=fp16\nENGINE=/e.engine\n", "--precision fp16"),
    ],
    ids=["fp32", "quoted-path-with-space", "comment-ignored"],
)
def test_engine_build_uses_the_settings_file(
    jetson_dir: Path, tmp_path: Path, env_text: str, expected: str
) -> None:
    env_file = tmp_path / "edge-detect.env"
    env_file.write_text(env_text)
    result = run_install(jetson_dir, "--dry-run", "--env-file", str(env_file))
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    assert f"[done] {env_file} exists; kept as it is" in result.stdout


@pytest.mark.parametrize(
    ("args", "returncode", "stream", "text"),
    [
        (["--help"], 0, "stdout", "JetPack 5 (L4T R35, Python 3.8, TensorRT 8.5) is not supported"),
        (["--bogus"], 1, "stderr", "unknown option: --bogus"),
        (["--dry-run", "--prefix", "/srv/se"], 0, "stdout", "--system-site-packages /srv/se/venv"),
        (
            ["--dry-run", "--wheel", "/nonexistent.whl"],
            0,
            "stdout",
            "[fail] wheel not found: /nonexistent.whl",
        ),
        (["--dry-run", "--no-engine", "--no-service"], 0, "stdout", "== device check"),
    ],
    ids=["help", "unknown-option", "prefix", "missing-wheel", "no-engine-no-service"],
)
def test_options(jetson_dir: Path, args: list[str], returncode: int, stream: str, text: str) -> None:
    result = run_install(jetson_dir, *args)
    assert result.returncode == returncode
    assert text in getattr(result, stream)
    if "--no-engine" in args:
        assert "== TensorRT engine" not in result.stdout
        assert "== systemd service" not in result.stdout
