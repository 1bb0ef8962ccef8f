"""deploy/jetson/edge-detect.service: verified by systemd itself, and checked against its settings.

`systemd-analyze verify` checks that the commands of ExecStart= and ExecStartPre= exist and are
executable. The unit names /opt/stopsign-edge/venv/bin/..., which exists only after install.sh
ran on a Jetson, so the tests stage a root folder holding the unit, systemd's own units (for the
targets it orders against) and stub executables at those paths. The stubs exist only to satisfy
the verifier's path check; nothing runs them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

SYSTEMD_HINT = "apt-get install systemd (Debian's package has systemd-analyze)"
UNIT = "edge-detect.service"
STUBS = ("edge-export", "edge-detect")


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for each assignment of a unit file, in order; keys may repeat."""
    entries = []
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            section = stripped.strip("[]")
            continue
        key, _, value = stripped.partition("=")
        entries.append((section, key, value))
    return entries


def stage_root(root: Path, unit_text: str, stubs: tuple[str, ...] = STUBS) -> Path:
    """A root for `systemd-analyze verify --root`: the unit, systemd's units, stub commands."""
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system" / UNIT).write_text(unit_text)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    bin_dir = root / "opt/stopsign-edge/venv/bin"
    bin_dir.mkdir(parents=True)
    for name in stubs:
        stub = bin_dir / name
        # Only for the verifier's "command exists and is executable" check.
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


def verify(systemd_analyze: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze, "verify", "--man=no", f"--root={root}", UNIT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture()
def systemd_analyze(require_tool: Callable[[str, str], str]) -> str:
    path = require_tool("systemd-analyze", SYSTEMD_HINT)
    if not Path("/usr/lib/systemd/system").is_dir():
        pytest.skip("no /usr/lib/systemd/system to stage the unit's targets from")
    return path


def test_unit_verifies_clean(systemd_analyze: str, jetson_dir: Path, tmp_path: Path) -> None:
    root = stage_root(tmp_path / "root", (jetson_dir / UNIT).read_text())
    result = verify(systemd_analyze, root)
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are warnings with exit code 0: none are allowed either.
    assert result.stderr == "" and result.stdout == ""


@pytest.mark.parametrize(
    ("change", "stubs", "message"),
    [
        (lambda text: text, ("edge-detect",), "/opt/stopsign-edge/venv/bin/edge-export is not executable"),
        (lambda text: text.replace("WatchdogSec=5", "WatchdogSecs=5"), STUBS, "Unknown key"),
        (lambda text: text.replace("Type=notify", "Type=notifyy"), STUBS, "Failed to parse service type"),
    ],
    ids=["missing-command", "misspelt-key", "bad-value"],
)
def test_verifier_catches_broken_units(
    systemd_analyze: str,
    jetson_dir: Path,
    tmp_path: Path,
    change: Callable[[str], str],
    stubs: tuple[str, ...],
    message: str,
) -> None:
    root = stage_root(tmp_path / "root", change((jetson_dir / UNIT).read_text()), stubs)
    result = verify(systemd_analyze, root)
    assert message in result.stderr


def test_hardening_exposure_is_low(systemd_analyze: str, jetson_dir: Path, tmp_path: Path) -> None:
    """systemd's own exposure score (0 = locked down, 10 = fully exposed) stays at 4.5 or below."""
    root = stage_root(tmp_path / "root", (jetson_dir / UNIT).read_text())
    result = subprocess.run(
        [
            systemd_analyze,
            "security",
            "--offline=yes",
            f"--root={root}",
            "--threshold=45",
            "--no-pager",
            UNIT,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Type", "notify"),
        ("WatchdogSec", "5"),
        ("Restart", "on-failure"),
        ("RestartSec", "2"),
        ("User", "stopsign"),
        ("SupplementaryGroups", "video"),
        ("EnvironmentFile", "/etc/stopsign-edge/edge-detect.env"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/stopsign-edge"),
        ("StandardOutput", "journal"),
        ("DevicePolicy", "closed"),
        ("WantedBy", "multi-user.target"),
    ],
)
def test_unit_settings(jetson_dir: Path, key: str, expected: str) -> None:
    values = [value for _, k, value in unit_entries((jetson_dir / UNIT).read_text()) if k == key]
    assert values == [expected]


def test_unit_commands_and_devices(jetson_dir: Path) -> None:
    entries = unit_entries((jetson_dir / UNIT).read_text())
    settings = {key: value for _, key, value in entries}
    assert settings["ExecStartPre"].startswith("/opt/stopsign-edge/venv/bin/edge-export engine ${ONNX}")
    assert "--if-stale" in settings["ExecStartPre"] and "--out ${ENGINE}" in settings["ExecStartPre"]
    assert settings["ExecStart"].startswith(
        "/opt/stopsign-edge/venv/bin/edge-detect --camera ${CAMERA} --model ${ENGINE} --budget-ms ${BUDGET_MS}"
    )
    devices = [value for _, key, value in entries if key == "DeviceAllow"]
    assert "char-video4linux rw" in devices
    assert any(value.startswith("char-nvhost") for value in devices)


def test_every_variable_of_the_unit_is_in_the_env_example(jetson_dir: Path) -> None:
    unit_text = (jetson_dir / UNIT).read_text()
    commands = " ".join(value for _, key, value in unit_entries(unit_text) if key.startswith("Exec"))
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", commands))
    example = (jetson_dir / "edge-detect.env.example").read_text()
    defined = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert used == defined
